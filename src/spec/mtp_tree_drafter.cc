#include "specula/spec/mtp_tree_drafter.h"

#include <algorithm>
#include <cmath>

#include "specula/runtime/generate.h"
#include "specula/spec/pass_costs.h"

namespace specula {
namespace {

struct Node {
  int token = 0;
  int parent = -1;       // index of the parent node; -1: the pending token
  int depth = 1;         // 1: a child of the pending token
  double score = 1.0;    // the drafter's probability of the path ending here
  int step = -1;         // the step row that drafted it, this round
  std::vector<float> h;  // [H_b] once opened: what a step from it consumes (its step's h_out)
};

// The `width` most probable next tokens of one step's head (ties: lower index), as (token id,
// probability at temperature 1; centroid head: among its candidates).
std::vector<std::pair<int, double>> TopChoices(const DraftStepOutput& step, int width) {
  const std::vector<float>& l = step.logits;
  std::vector<int> best;  // indices, best first
  for (int i = 0; i < static_cast<int>(l.size()); ++i) {
    if (!std::isfinite(l[static_cast<size_t>(i)])) continue;  // (a broken head drafts nothing)
    if (static_cast<int>(best.size()) == width &&
        !(l[static_cast<size_t>(i)] > l[static_cast<size_t>(best.back())]))
      continue;
    auto at = std::find_if(best.begin(), best.end(), [&](int j) {
      return l[static_cast<size_t>(i)] > l[static_cast<size_t>(j)];
    });
    best.insert(at, i);
    if (static_cast<int>(best.size()) > width) best.pop_back();
  }
  std::vector<std::pair<int, double>> out;
  if (best.empty()) return out;
  const float mx = l[static_cast<size_t>(best[0])];
  double sum = 0.0;
  for (float x : l) {
    if (std::isfinite(x)) sum += std::exp(static_cast<double>(x - mx));
  }
  for (int i : best) {
    const int id = step.candidates.empty() ? i : step.candidates[static_cast<size_t>(i)];
    out.emplace_back(id, std::exp(static_cast<double>(l[static_cast<size_t>(i)] - mx)) / sum);
  }
  return out;
}

// Node i's rank in the final choice: how many nodes come before it (higher score, or the same score
// and created earlier). A child ranks after its parent, so a node ranked max_tokens - 1 or later
// has no child worth drafting.
int Rank(const std::vector<Node>& nodes, size_t i) {
  int r = 0;
  for (size_t j = 0; j < nodes.size(); ++j) {
    r += nodes[j].score > nodes[i].score || (nodes[j].score == nodes[i].score && j < i);
  }
  return r;
}

// What a request's tree is weighed with: pass costs (measured, or the defaults when sampling, so
// that a seeded sequence drafts the same alone and batched), the rest of the round, and the
// sequence's calibration of path probabilities.
struct TreeCosts {
  RoundInfo round;  // round.costs is never null (RoundToWeigh)
  double scale;
};

// A node of path probability `score` is worth opening when its children's at most scale * score
// expected tokens exceed this: the tokens one more assistant step costs at the rate of the tree so
// far (its max_tokens best nodes).
double StepThreshold(const TreeCosts& c, int max_tokens, const std::vector<Node>& nodes) {
  std::vector<double> scores;
  for (const Node& n : nodes) scores.push_back(n.score);
  std::sort(scores.begin(), scores.end(), std::greater<>());
  scores.resize(std::min(scores.size(), static_cast<size_t>(std::max(0, max_tokens))));
  double tokens = c.round.other_sequences + 1.0;
  for (double s : scores) tokens += c.scale * s;
  const int rows = c.round.other_rows + 1 + static_cast<int>(scores.size());
  return c.round.costs->DraftStep() * tokens / c.round.costs->Pass(rows);
}

// How many of the best nodes (`order`, best first, at most `most`) to verify: the count with the
// most expected tokens per second of the pass (at least one).
size_t BestSize(const TreeCosts& c, const std::vector<Node>& nodes,
                const std::vector<size_t>& order, size_t most) {
  double tokens = c.round.other_sequences + 1.0, best_rate = 0.0;
  size_t best = std::min<size_t>(1, most);
  for (size_t n = 1; n <= most; ++n) {
    tokens += c.scale * nodes[order[n - 1]].score;
    const double rate = tokens / c.round.costs->Pass(c.round.other_rows + 1 + static_cast<int>(n));
    if (rate > best_rate) {
      best_rate = rate;
      best = n;
    }
  }
  return best;
}

}  // namespace

Status TreeOptions::Validate() const {
  if (width < 1 || width > 8)
    return Error("tree width: " + std::to_string(width) + " is outside [1, 8]");
  if (depth < 0 || depth > 64)
    return Error("tree depth: " + std::to_string(depth) + " is outside [0, 64]");
  return OkStatus();
}

void MtpTreeDrafter::Observe(int seq, const Draft&, std::span<const int> path) {
  const auto it = calibration_.find(seq);
  if (it == calibration_.end()) return;
  Calibration& c = it->second;
  constexpr double kDecay = 0.95;
  c.expected = kDecay * c.expected + c.last_expected;
  c.accepted = kDecay * c.accepted + static_cast<double>(path.size());
  c.last_expected = 0.0;
}

Draft MtpTreeDrafter::Propose(const DraftRequest& req, ThreadPool& pool) {
  return std::move(ProposeBatch(std::span<const DraftRequest>(&req, 1), pool).value()[0]);
}

Result<std::vector<Draft>> MtpTreeDrafter::ProposeBatch(std::span<const DraftRequest> reqs,
                                                        ThreadPool& pool) {
  const size_t B = reqs.size();
  std::vector<std::vector<Node>> nodes(B);
  std::vector<std::vector<int>> open(B);  // nodes to step at this depth (-1: the pending token)
  std::vector<int> steps(B, 0);
  std::vector<TreeCosts> costs;
  for (const DraftRequest& r : reqs) {
    costs.push_back({.round = RoundToWeigh(r, defaults_), .scale = calibration_[r.seq].Scale()});
  }
  for (size_t b = 0; b < B; ++b) {
    if (reqs[b].max_tokens > 0) open[b].push_back(-1);
  }
  std::vector<Gemma4Assistant::StepArgs> args;
  std::vector<std::pair<size_t, int>> stepped;  // (request, node) per step row
  for (;;) {
    args.clear();
    stepped.clear();
    for (size_t b = 0; b < B; ++b) {
      steps[b] += !open[b].empty();
      for (int n : open[b]) {
        const bool root = n < 0;
        const Node* node = root ? nullptr : &nodes[b][static_cast<size_t>(n)];
        args.push_back({.token = root ? reqs[b].token : node->token,
                        .h_in = root ? reqs[b].hidden.data() : node->h.data(),
                        .pos = reqs[b].pos,
                        .cache = reqs[b].cache});
        stepped.emplace_back(b, n);
      }
    }
    if (args.empty()) break;
    steps_.resize(args.size());
    std::vector<DraftStepOutput*> outs;
    for (DraftStepOutput& s : steps_) outs.push_back(&s);
    // One assistant forward for every open node of every sequence.
    assistant_.StepBatch(args, pool, *scratch_, std::span(outs.data(), args.size()));
    std::vector<std::vector<int>> fresh(B);
    for (size_t i = 0; i < stepped.size(); ++i) {
      const auto [b, n] = stepped[i];
      const Node* parent = n < 0 ? nullptr : &nodes[b][static_cast<size_t>(n)];
      const double score = parent ? parent->score : 1.0;
      const int depth = parent ? parent->depth + 1 : 1;
      for (const auto& [token, p] : TopChoices(steps_[i], options_.width)) {
        fresh[b].push_back(static_cast<int>(nodes[b].size()));
        nodes[b].push_back({.token = token,
                            .parent = n,
                            .depth = depth,
                            .score = score * p,
                            .step = static_cast<int>(i),
                            .h = {}});
      }
    }
    for (size_t b = 0; b < B; ++b) {
      // Next: the `width` best new nodes that may still have a child among the chosen ones.
      std::vector<int>& f = fresh[b];
      std::stable_sort(f.begin(), f.end(), [&](int x, int y) {
        return nodes[b][static_cast<size_t>(x)].score > nodes[b][static_cast<size_t>(y)].score;
      });
      open[b].clear();
      const double threshold =
          options_.by_cost ? StepThreshold(costs[b], reqs[b].max_tokens, nodes[b]) : 0.0;
      for (int n : f) {
        if (static_cast<int>(open[b].size()) == options_.width) break;
        Node& node = nodes[b][static_cast<size_t>(n)];
        const int deepest =
            options_.depth > 0 ? std::min(options_.depth, reqs[b].max_tokens) : reqs[b].max_tokens;
        if (IsStop(reqs[b].stop_ids, node.token) || node.depth >= deepest) continue;
        if (options_.by_cost && !(costs[b].scale * node.score > threshold)) continue;
        if (Rank(nodes[b], static_cast<size_t>(n)) < reqs[b].max_tokens - 1) {
          node.h = steps_[static_cast<size_t>(node.step)].h_out;
          open[b].push_back(n);
        }
      }
    }
  }
  // Each tree: its best nodes (max_tokens, or by cost), in creation order (a parent before its
  // children).
  std::vector<Draft> drafts(B);
  for (size_t b = 0; b < B; ++b) {
    Draft& d = drafts[b];
    d.own_length = true;
    d.steps = steps[b];
    std::vector<size_t> order(nodes[b].size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::stable_sort(order.begin(), order.end(),
                     [&](size_t x, size_t y) { return nodes[b][x].score > nodes[b][y].score; });
    size_t keep = std::min(order.size(), static_cast<size_t>(std::max(0, reqs[b].max_tokens)));
    if (options_.by_cost) keep = BestSize(costs[b], nodes[b], order, keep);
    std::vector<char> kept(nodes[b].size(), 0);
    double expected = 0.0;
    for (size_t r = 0; r < keep; ++r) {
      kept[order[r]] = 1;
      expected += nodes[b][order[r]].score;
    }
    std::vector<int> index(nodes[b].size(), -1);
    for (size_t i = 0; i < nodes[b].size(); ++i) {
      if (!kept[i]) continue;
      const Node& n = nodes[b][i];
      index[i] = static_cast<int>(d.tokens.size());
      d.tokens.push_back(n.token);
      d.parents.push_back(n.parent < 0 ? -1 : index[static_cast<size_t>(n.parent)]);
    }
    if (options_.by_cost) calibration_[reqs[b].seq].last_expected = expected;
  }
  return drafts;
}

}  // namespace specula
