"""Distills an MTP assistant (drafter) for a Gemma 4 target, and measures it with Specula.

    python3 tools/distill/distill.py --target DIR --corpus PATH [PATH ...] --out DIR
        [--init ASSISTANT_DIR] [--budget-minutes M] [--head auto|centroid|dense] [--threads N]

1. Tokenizes the corpus with the target's tokenizer (`specula tokenize`); with several files the
   last ~10 % of tokens (whole files) is held out, with one file its last 10 %.
2. Teacher data, for a third of the budget (--data-share): windows of corpus text (BOS + 128
   tokens) continued by the target's own greedy output (`specula generate --prompt-ids-file`:
   128 tokens, 16 windows decoded together), then PyTorch forwards of the target over 8 windows
   at a time (gemma4_torch, checked against Specula by tests/distill/parity_test.py): the
   target's next token and top-8 logits at every row, its post-norm hidden states and the K/V of
   the layers an assistant reads.
3. Trains the assistant with the inference conventions: for every position P of a window a
   round starts from the pending token at P and the target's hidden row P-1; each of --steps
   draft steps queries at the constant position P with Q-only attention into the target's keys
   0..P-1 (windowed on sliding layers) and feeds its own post-projection hidden state to the
   next step; step k learns the target's next token after P+k-1 (teacher forcing: the inputs are
   what an accepted draft would have been).
4. Centroid head (--head centroid, or auto for vocabularies of 65,536 ids and more): balanced
   clusters of the trained head rows, centroids trained for top-k cluster recall (reported).
5. Writes DIR/assistant (Hugging Face layout), DIR/assistant.gguf (`specula convert`) and
   DIR/report.json, after measuring with Specula on held-out prompts: acceptance per draft
   position, tokens per target pass, and that speculative output equals plain output.

Everything (data, training, evaluation) fits in --budget-minutes; progress is printed; state is
saved to DIR every few minutes and a second run with the same DIR resumes from it. Bad input (a
target it cannot read, an empty corpus, an --init that does not fit the target) is refused with
one line naming the problem.
"""
import argparse
import json
import math
import os
import subprocess
import sys
import time

# PyTorch's OpenMP workers spin-wait between parallel regions by default. The operations of these
# small models take microseconds, and on a 2-core machine the spinning made a training step 3x
# slower than passive waiting (distillation step: 1.25 s against 0.41 s). It must be set before
# torch loads its OpenMP runtime.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import centroids as cmod  # noqa: E402
import corpus as corpus_mod  # noqa: E402
import gemma4_torch as g  # noqa: E402
import pack  # noqa: E402
import safetensors_io as st  # noqa: E402

ALWAYS_KEPT = [0, 1, 2, 3, 105, 106, 107]
TOPK = 8


class Refusal(Exception):
    """Input the tool will not use; the message is printed as one line."""


def log(msg):
    print(f"[distill {time.strftime('%H:%M:%S')}] {msg}", flush=True)


class Budget:
    """Wall-clock deadline of the whole run, and the share left for each phase."""

    def __init__(self, minutes):
        self.start = time.time()
        self.total = minutes * 60

    def left(self):
        return self.total - (time.time() - self.start)

    def until(self, fraction_of_total_left):
        """Seconds from now until only `fraction_of_total_left` of the budget remains."""
        return self.left() - fraction_of_total_left * self.total


# ------------------------------------------------------------------------------------------------
# Assistant shape


def assistant_config(target, head, hidden=None):
    """A Gemma4AssistantForCausalLM config for `target`: 4 layers (S, S, S, F) whose attention
    geometry is that of the target layers they read."""
    s = target.layers[target.last_kv_owner(False)]
    f = target.layers[target.last_kv_owner(True)]
    hd = hidden or (128 if target.hidden <= 512 else 256)
    heads = 4
    while heads % s.kv_heads or heads % f.kv_heads:
        heads += 1
    text = {
        "model_type": "gemma4_text", "hidden_size": hd, "num_hidden_layers": 4,
        "num_attention_heads": heads, "num_key_value_heads": s.kv_heads,
        "num_global_key_value_heads": f.kv_heads if target.k_eq_v else None,
        "head_dim": s.head_dim, "global_head_dim": f.head_dim,
        "attention_k_eq_v": target.k_eq_v, "intermediate_size": 4 * hd,
        "use_double_wide_mlp": False, "hidden_size_per_layer_input": 0,
        "vocab_size_per_layer_input": 0, "num_kv_shared_layers": 4, "enable_moe_block": False,
        "sliding_window": target.window,
        "layer_types": ["sliding_attention"] * 3 + ["full_attention"],
        "max_position_embeddings": target.max_pos, "final_logit_softcapping": None,
        "vocab_size": target.vocab, "rms_norm_eps": 1e-6,
        "hidden_activation": "gelu_pytorch_tanh", "tie_word_embeddings": True,
        "rope_parameters": target.text.get("rope_parameters") or {
            "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
            "full_attention": {"rope_type": "proportional", "partial_rotary_factor": 0.25,
                               "rope_theta": 1000000.0}}}
    per_cluster = 128
    n_centroids = max(1, target.vocab // per_cluster)
    while target.vocab % n_centroids:
        n_centroids -= 1
    return {"architectures": ["Gemma4AssistantForCausalLM"], "model_type": "gemma4_assistant",
            "backbone_hidden_size": target.hidden, "use_ordered_embeddings": head == "centroid",
            "num_centroids": n_centroids, "centroid_intermediate_top_k": min(32, n_centroids),
            "tie_word_embeddings": True, "text_config": text}


def fresh_tensors(cfg, rows, rng):
    out = {}
    for name, shape in g.Assistant.expected_shapes(cfg, rows).items():
        if len(shape) == 1:
            out[name] = np.ones(shape, np.float32)
        else:
            std = 1 / math.sqrt(shape[1])
            if name.endswith(("o_proj.weight", "down_proj.weight")):
                std /= math.sqrt(8)
            out[name] = rng.normal(0, std, shape).astype(np.float32)
    return out


# ------------------------------------------------------------------------------------------------
# Teacher data


def split_held_out(docs):
    """(train docs, held-out docs): whole last files up to ~10 % of the tokens, or the last 10 %
    of a single file."""
    total = sum(len(d) for d in docs)
    if len(docs) == 1:
        cut = int(len(docs[0]) * 0.9)
        return [docs[0][:cut]], [docs[0][cut:]]
    held, n = [], 0
    for d in reversed(docs[1:]):
        if n >= 0.1 * total:
            break
        held.insert(0, d)
        n += len(d)
    return docs[:len(docs) - len(held)], held


def weights_only_dir(target_dir, work):
    """A view of the target without tokenizer.json (symlinks): `specula generate` with token ids
    then skips parsing the tokenizer, about a second per call for Gemma's 33 MB file."""
    d = os.path.join(work, "target-weights")
    os.makedirs(d, exist_ok=True)
    for fn in os.listdir(target_dir):
        if fn != "tokenizer.json" and not os.path.exists(os.path.join(d, fn)):
            os.symlink(os.path.abspath(os.path.join(target_dir, fn)), os.path.join(d, fn))
    return d


def continuations(specula, target_dir, prompts, n, threads, work):
    """The target's greedy continuations of several prompts, decoded together by one `specula
    generate --prompt-ids-file` (continuous batching: each equals its prompt decoded alone)."""
    path = os.path.join(work, "prompts.txt")
    with open(path, "w") as f:
        f.writelines(",".join(map(str, p)) + "\n" for p in prompts)
    r = subprocess.run([specula, "generate", "-m", target_dir, "--prompt-ids-file", path,
                        "--parallel", str(min(len(prompts), 16)), "-n", str(n), "-t",
                        str(threads)], capture_output=True, text=True)
    if r.returncode != 0:
        raise Refusal(f"specula generate failed: {r.stderr.strip()}")
    return [json.loads(line)["ids"] for line in r.stdout.splitlines()]


def distinct_head_rows(target):
    """Ids whose LM-head rows are distinct, or None: a target trained on a vocabulary subset
    (train_target.py) gives every unused id one shared row, so its top tokens are found among
    the used rows plus one representative of the shared row."""
    vm = pack.shared_row_map(target.w("embed_tokens.weight").detach().numpy())
    if vm.identity():
        return None
    other = np.setdiff1d(np.arange(vm.vocab), vm.kept)[0]
    return torch.from_numpy(np.concatenate([vm.kept, [other]]))


def teacher_windows(target, windows, rows=None, batch=8):
    """Teacher data of token windows (full ids) from the PyTorch target, windows of one length
    `batch` per forward (one window per forward spends as long in Python as in arithmetic).
    `rows`: the head rows to score (distinct_head_rows), else the whole vocabulary."""
    table = target.w("embed_tokens.weight")
    if rows is not None:
        table = table[rows]
    out = [None] * len(windows)
    by_len = {}
    for i, ids in enumerate(windows):
        by_len.setdefault(len(ids), []).append(i)
    groups = [g_[at:at + batch] for g_ in by_len.values() for at in range(0, len(g_), batch)]
    for group in groups:
        with torch.no_grad():
            fw = target(torch.tensor([windows[i] for i in group]), logits=False)
            for b, i in enumerate(group):
                hidden = fw["hidden"][b]
                top_ids, top_vals = [], []
                for at in range(0, hidden.shape[0], 64):  # the head, in chunks of rows
                    lg = hidden[at:at + 64] @ table.t()
                    if target.cfg.softcap > 0:
                        lg = target.cfg.softcap * torch.tanh(lg * (1.0 / target.cfg.softcap))
                    t = torch.topk(lg, TOPK, dim=-1)
                    top_ids.append(t.indices if rows is None else rows[t.indices])
                    top_vals.append(t.values)
                kv = fw["kv"]
                out[i] = {"ids": torch.tensor(windows[i]), "hidden": hidden.half(),
                          "k_s": kv["sliding"][0][b].half(), "v_s": kv["sliding"][1][b].half(),
                          "k_f": kv["full"][0][b].half(), "v_f": kv["full"][1][b].half(),
                          "top_ids": torch.cat(top_ids), "top_vals": torch.cat(top_vals).half()}
    return out


def collect_teacher(a, target, train_docs, seconds, rng, path):
    """Teacher windows until `seconds` pass or --windows are collected; cached in `path`."""
    data = torch.load(path) if os.path.exists(path) else []
    if data:
        log(f"teacher data: {len(data)} windows from {path}")
    stop = time.time() + seconds
    lens = np.array([max(0, len(d) - a.prefix) for d in train_docs], np.float64)
    if lens.sum() == 0:
        raise Refusal(f"--corpus: the training part is shorter than {a.prefix} tokens")
    last = time.time()
    rows = distinct_head_rows(target) if len(data) < a.windows else None
    model_dir = weights_only_dir(a.target, a.out)
    while len(data) < a.windows and time.time() < stop:
        prompts = []
        for _ in range(min(16, a.windows - len(data))):
            d = train_docs[rng.choice(len(train_docs), p=lens / lens.sum())]
            at = int(rng.integers(0, len(d) - a.prefix + 1))
            prompts.append([2] + list(d[at:at + a.prefix]))
        conts = continuations(a.specula, model_dir, prompts, a.generate, a.threads, a.out)
        data += teacher_windows(target, [p + c for p, c in zip(prompts, conts)], rows)
        if time.time() - last > 20:
            log(f"teacher data: {len(data)}/{a.windows} windows, "
                f"{sum(len(w['ids']) for w in data)} tokens")
            last = time.time()
            torch.save(data, path)
    torch.save(data, path)
    log(f"teacher data: {len(data)} windows, {sum(len(w['ids']) for w in data)} tokens")
    return data


# ------------------------------------------------------------------------------------------------
# Training


def batch_tensors(windows, K):
    """Stacks windows (cut to the shortest) and lays out the K-step chains of every query
    position P in [1, T-K]."""
    T = min(len(w["ids"]) for w in windows)
    ids = torch.stack([w["ids"][:T] for w in windows])
    cat = lambda key: torch.stack([w[key][..., :T, :] if key.startswith(("k_", "v_")) else
                                   w[key][:T] for w in windows]).float()
    kv = {"sliding": (cat("k_s"), cat("v_s")), "full": (cat("k_f"), cat("v_f"))}
    hidden = cat("hidden")
    top_ids = torch.stack([w["top_ids"][:T] for w in windows])
    top_vals = torch.stack([w["top_vals"][:T] for w in windows]).float()
    return T, ids, kv, hidden, top_ids, top_vals


def chain_losses(assistant, target, vmap, bias, windows, K, soft_weight=0.5, queries=None,
                 gen=None):
    """Mean loss and per-step greedy accuracy of the K-step draft chains over a batch: rounds at
    every position P in [1, T-K], or at `queries` of them drawn at random (the same for every
    window of the batch)."""
    T, ids, kv, hidden, top_ids, top_vals = batch_tensors(windows, K)
    P = torch.arange(1, T - K + 1)
    if queries and queries < len(P):
        P = torch.sort(P[torch.randperm(len(P), generator=gen)[:queries]]).values
    pos = P[None].expand(len(windows), len(P))
    h = hidden[:, P - 1]  # the target's hidden row before each round's pending token
    losses, correct = [], []
    for k in range(K):
        tok = ids[:, P + k]  # input token of step k+1: the token at P+k
        with torch.no_grad():
            emb = target.embed(tok)
        hd, h = assistant.step(emb, h, pos, kv)
        logits = assistant.dense_logits(hd) + bias
        label_ids = top_ids[:, P + k, 0]  # the target's greedy next token
        labels = torch.from_numpy(vmap.row_of(label_ids.numpy()))
        logp = torch.log_softmax(logits, dim=-1)
        hard = -logp.gather(-1, labels[..., None])[..., 0]
        soft_rows = torch.from_numpy(vmap.row_of(top_ids[:, P + k].numpy()))
        p = torch.softmax(top_vals[:, P + k], dim=-1)
        soft = -(p * logp.gather(-1, soft_rows)).sum(-1)
        losses.append((hard + soft_weight * soft).mean())
        correct.append(float((logits.argmax(-1) == labels).float().mean()))
    return torch.stack(losses).mean(), correct


def head_vocab(docs, teacher, vocab):
    kept = set(ALWAYS_KEPT)
    for d in docs:
        kept.update(int(t) for t in d)
    for w in teacher:
        kept.update(w["top_ids"].flatten().tolist())
        kept.update(w["ids"].tolist())
    return g.VocabMap(vocab, sorted(kept), other=len(kept) < vocab)


def draft_hiddens(assistant, target, windows, K):
    """The post-norm draft hiddens of every chain step, with the target's next token (labels)."""
    hs, ys = [], []
    with torch.no_grad():
        for i in range(0, len(windows), 8):
            T, ids, kv, hidden, top_ids, _ = batch_tensors(windows[i:i + 8], K)
            Q = T - K
            pos = torch.arange(1, Q + 1)[None].expand(ids.shape[0], Q)
            h = hidden[:, :Q]
            for k in range(K):
                hd, h = assistant.step(target.embed(ids[:, 1 + k:Q + 1 + k]), h, pos, kv)
                hs.append(hd.reshape(-1, hd.shape[-1]))
                ys.append(top_ids[:, 1 + k:Q + 1 + k, 0].reshape(-1))
    return torch.cat(hs), torch.cat(ys).numpy()


# ------------------------------------------------------------------------------------------------
# Evaluation with Specula


def evaluate(a, adir, held, seconds, K):
    """Speculative vs plain greedy decoding of held-out prompts with Specula: acceptance per
    draft position, tokens per target pass, identical output."""
    prompts = []
    for d in held:
        for at in range(0, max(1, len(d) - a.prefix), a.prefix * 2):
            prompts.append(([2] + list(d[at:at + a.prefix]))[:a.prefix + 1])
    prompts = prompts[:a.eval_prompts]
    stop = time.time() + seconds
    agg = {"prompts": 0, "drafted": 0, "accepted": 0, "rounds": 0, "generated": 0,
           "target_forwards": 0, "accepted_per_position": [0] * K, "identical": True}
    for prompt in prompts:
        if time.time() > stop and agg["prompts"] > 0:
            break
        args = ["--prompt-ids", ",".join(map(str, prompt)), "-n", str(a.eval_tokens),
                "--json", "-t", str(a.threads)]
        r1 = subprocess.run([a.specula, "generate", "-m", a.target, *args], capture_output=True,
                            text=True)
        r2 = subprocess.run([a.specula, "generate", "-m", a.target, "-md", adir, "--draft-max",
                             str(K), *args], capture_output=True, text=True)
        if r1.returncode or r2.returncode:
            raise Refusal(f"specula generate failed: {(r1.stderr + r2.stderr).strip()}")
        plain, spec = json.loads(r1.stdout), json.loads(r2.stdout)
        s = spec["stats"]
        agg["identical"] &= plain["ids"] == spec["ids"]
        agg["prompts"] += 1
        agg["drafted"] += s["drafted"]
        agg["accepted"] += s["accepted"]
        agg["rounds"] += s["draft_rounds"]
        agg["generated"] += s["generated_tokens"]
        agg["target_forwards"] += s["target_forwards"]
        for i, n in enumerate(s["accepted_per_position"][:K]):
            agg["accepted_per_position"][i] += n
    rounds = max(agg["rounds"], 1)
    agg["acceptance_rate"] = agg["accepted"] / max(agg["drafted"], 1)
    agg["acceptance_per_position"] = [n / rounds for n in agg["accepted_per_position"]]
    agg["tokens_per_target_pass"] = agg["generated"] / max(agg["target_forwards"], 1)
    return agg


# ------------------------------------------------------------------------------------------------


def load_inputs(a):
    """The target, its tokenizer directory and the --init assistant, or a Refusal."""
    try:
        target = g.Target.load(a.target)
    except (g.ConfigError, st.CheckpointError) as e:
        raise Refusal(f"--target: {e}") from e
    if not os.path.isfile(os.path.join(a.target, "tokenizer.json")):
        raise Refusal(f"--target: {a.target} has no tokenizer.json (the corpus is tokenized "
                      "with it)")
    init = None
    if a.init:
        try:
            init = g.Assistant.load(a.init, target.cfg)
        except (g.ConfigError, st.CheckpointError) as e:
            raise Refusal(f"--init: {e}") from e
    return target, init


def run(a):
    budget = Budget(a.budget_minutes)
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    rng = np.random.default_rng(a.seed)
    target, init = load_inputs(a)
    tcfg = target.cfg
    for p in target.parameters():
        p.requires_grad_(False)
    os.makedirs(a.out, exist_ok=True)
    head = a.head
    if head == "auto":
        head = ("centroid" if init.cfg.ordered else "dense") if init else \
            ("centroid" if tcfg.vocab >= 65536 else "dense")

    try:
        docs = corpus_mod.cache_json(os.path.join(a.out, "tokens.json"), lambda: [
            ids[1:] for _, ids in corpus_mod.load_files(a.specula, a.target, a.corpus)])
    except corpus_mod.CorpusError as e:
        raise Refusal(f"--corpus: {e}") from e
    train_docs, held = split_held_out(docs)
    log(f"corpus: {sum(map(len, docs))} tokens in {len(docs)} files; held out "
        f"{sum(map(len, held))}; head {head}, {a.steps} draft steps")

    teacher = collect_teacher(a, target, train_docs, budget.until(1.0 - a.data_share), rng,
                              os.path.join(a.out, "teacher.pt"))
    if len(teacher) < 2:
        raise Refusal("--budget-minutes: too short to collect teacher data")
    n_val = max(1, len(teacher) // 10)
    val, train = teacher[:n_val], teacher[n_val:]

    vmap = head_vocab(docs, teacher, tcfg.vocab)
    cfg_json = init.cfg.raw if init else assistant_config(tcfg, head, a.hidden)
    cfg_json = json.loads(json.dumps(cfg_json))
    if init and head == "centroid" and not init.cfg.ordered:
        cfg_json["use_ordered_embeddings"] = True
        cfg_json.setdefault("num_centroids", assistant_config(tcfg, head)["num_centroids"])
    elif init and head == "dense":
        cfg_json["use_ordered_embeddings"] = False
    acfg = g.AssistantConfig(cfg_json)
    acfg.check_fits(tcfg)
    if init:
        tensors = {n: p.detach().numpy() for n, p in init.w.named().items()
                   if n != "masked_embedding.centroids.weight"}
        full = tensors["model.embed_tokens.weight"]
        other = full[np.setdiff1d(np.arange(tcfg.vocab), vmap.kept)].mean(0, keepdims=True) \
            if vmap.other else np.zeros((0, full.shape[1]), np.float32)
        tensors["model.embed_tokens.weight"] = np.concatenate([full[vmap.kept], other])
    else:
        tensors = fresh_tensors(acfg, vmap.rows, rng)
        tensors.pop("masked_embedding.centroids.weight", None)
        table = target.w("embed_tokens.weight").detach().float().numpy()
        if table.shape[1] == acfg.hidden:
            # As wide as the target: the head starts as the target's own (tied) head, so the
            # assistant first has to learn the target's next hidden state, not a vocabulary.
            other = table[np.setdiff1d(np.arange(tcfg.vocab), vmap.kept)].mean(0, keepdims=True) \
                if vmap.other else np.zeros((0, table.shape[1]), np.float32)
            tensors["model.embed_tokens.weight"] = np.concatenate([table[vmap.kept], other])
    assistant = g.Assistant(acfg, tensors, vmap=vmap)
    bias = vmap.log_count_bias()
    opt = torch.optim.AdamW([p for p in assistant.parameters() if p.requires_grad],
                            lr=a.lr, betas=(0.9, 0.95), weight_decay=0.01)
    state_path = os.path.join(a.out, "state.pt")
    step = 0
    if os.path.exists(state_path):
        s = torch.load(state_path)
        if s["kept"] == vmap.kept.tolist() and s["config"] == cfg_json:
            assistant.load_state_dict(s["model"], strict=False)
            opt.load_state_dict(s["opt"])
            step = s["step"]
            log(f"resumed from {state_path} at step {step}")
        else:
            log(f"{state_path} is from another configuration: starting afresh")

    # Training, until only the centroid and evaluation shares of the budget remain.
    reserve = (0.14 if acfg.ordered else 0.1) + 0.1
    train_seconds = max(budget.until(reserve), 1.0)
    t_end = time.time() + train_seconds
    t_start, last_log, last_save, smooth = time.time(), time.time(), time.time(), None
    first = step
    gen = torch.Generator().manual_seed(a.seed + step)
    while time.time() < t_end and not (a.max_steps and step - first >= a.max_steps):
        frac = max((time.time() - t_start) / train_seconds,
                   (step - first) / a.max_steps if a.max_steps else 0.0)
        lr = a.lr * min(1.0, (step - first + 1) / 30) * (0.1 + 0.45 * (1 + math.cos(math.pi *
                                                                                      frac)))
        for grp in opt.param_groups:
            grp["lr"] = lr
        batch = [train[i] for i in rng.integers(0, len(train), a.batch)]
        loss, acc = chain_losses(assistant, target, vmap, bias, batch, a.steps,
                                 queries=a.queries, gen=gen)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(assistant.parameters(), 1.0)
        opt.step()
        step += 1
        smooth = float(loss) if smooth is None else 0.95 * smooth + 0.05 * float(loss)
        if time.time() - last_log > 20:
            log(f"step {step}: loss {smooth:.3f}, greedy match per step "
                f"{' '.join(f'{x:.2f}' for x in acc)}, lr {lr:.1e}, "
                f"{budget.left() / 60:.1f} min left")
            last_log = time.time()
        if time.time() - last_save > 180:
            torch.save({"model": assistant.state_dict(), "opt": opt.state_dict(), "step": step,
                        "kept": vmap.kept.tolist(), "config": cfg_json}, state_path)
            last_save = time.time()
    torch.save({"model": assistant.state_dict(), "opt": opt.state_dict(), "step": step,
                "kept": vmap.kept.tolist(), "config": cfg_json}, state_path)
    with torch.no_grad():
        vloss, vacc = chain_losses(assistant, target, vmap, bias, val, a.steps)
    report = {"target": a.target, "head": head, "steps": step, "draft_steps": a.steps,
              "teacher_windows": len(teacher), "val_loss": float(vloss),
              "val_greedy_match_per_step": vacc}
    log(f"trained {step} steps: held-out teacher windows, greedy match per step "
        f"{' '.join(f'{x:.2f}' for x in vacc)}")

    # The full-vocabulary head: kept rows trained; the others the init's, else the other row.
    full = vmap.expand(assistant.w("model.embed_tokens.weight").detach().numpy())
    if init:
        full = init.w("model.embed_tokens.weight").detach().numpy().copy()
        full[vmap.kept] = assistant.w("model.embed_tokens.weight").detach().numpy()[
            :len(vmap.kept)]
    ordering = None
    if acfg.ordered:
        active = np.asarray(vmap.kept, np.int64)
        ordering, cluster_of = cmod.build_ordering(tcfg.vocab, acfg.centroids, active,
                                                   full[active], seed=a.seed)
        cent0 = cmod.init_centroids(full, ordering, acfg.centroids)
        hs, ys = draft_hiddens(assistant, target, train[:64], a.steps)
        vh, vy = draft_hiddens(assistant, target, val, a.steps)
        cent = cmod.train_centroids(cent0, hs, ys, cluster_of, acfg.centroid_top_k, steps=800,
                                    log=log, seconds=max(budget.until(0.1), 5.0))
        rec = cmod.recall(cent, vh, vy, cluster_of, acfg.centroid_top_k)
        report["centroid_recall"] = rec
        report["centroid_recall_before_training"] = cmod.recall(cent0, vh, vy, cluster_of,
                                                                acfg.centroid_top_k)
        log(f"centroid head: {acfg.centroids} clusters of {tcfg.vocab // acfg.centroids}, top-"
            f"{acfg.centroid_top_k} recall on held-out chains {rec:.3f} (before training "
            f"{report['centroid_recall_before_training']:.3f})")

    # Write the assistant: a full-vocabulary model under the identity map.
    out_tensors = {n: p.detach().numpy() for n, p in assistant.w.named().items()}
    out_tensors["model.embed_tokens.weight"] = full
    if acfg.ordered:
        out_tensors["masked_embedding.centroids.weight"] = cent.numpy()
    final = g.Assistant(acfg, out_tensors, ordering=ordering,
                        dtype=init.dtype if init else target.dtype)
    if a.pack:  # the weights the pack will hold, before anything is measured
        pack.quantize_model(final)
    adir = os.path.join(a.out, "assistant")
    final.save(adir, num_assistant_tokens=a.steps)
    gguf = os.path.join(a.out, "assistant.gguf")
    r = subprocess.run([a.specula, "convert", adir, gguf, "--tokenizer",
                        os.path.join(a.target, "tokenizer.json")], capture_output=True, text=True)
    report["gguf"] = gguf if r.returncode == 0 else f"convert failed: {r.stderr.strip()}"

    ev = evaluate(a, adir, held, max(budget.left(), 5.0), a.steps)
    report["eval"] = ev
    if a.pack:
        pack.create(a.pack, a.target, adir, meta={"num_assistant_tokens": a.steps})
        report["pack"] = {"path": a.pack, "bytes": os.path.getsize(a.pack)}
        log(f"packed the pair into {a.pack} ({os.path.getsize(a.pack) / 1e6:.1f} MB)")
    report["minutes"] = (time.time() - budget.start) / 60
    with open(os.path.join(a.out, "report.json"), "w") as f:
        json.dump(report, f, indent=2)
    log(f"Specula on {ev['prompts']} held-out prompts, K={a.steps}: acceptance "
        f"{ev['acceptance_rate']:.3f}, per position "
        f"{' '.join(f'{x:.2f}' for x in ev['acceptance_per_position'])}, "
        f"{ev['tokens_per_target_pass']:.2f} tokens per target pass, output "
        f"{'identical to' if ev['identical'] else 'DIFFERENT from'} plain decoding")
    log(f"wrote {adir}, {gguf} and report.json in {report['minutes']:.1f} min")
    return 0 if ev["identical"] else 1


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--target", required=True, help="the target checkpoint directory")
    ap.add_argument("--corpus", nargs="+", required=True, help="text files (.gz allowed)")
    ap.add_argument("--out", required=True, help="output and state directory")
    ap.add_argument("--init", help="an assistant to fine-tune (default: a fresh one)")
    ap.add_argument("--budget-minutes", type=float, default=30.0)
    ap.add_argument("--head", default="auto", choices=["auto", "centroid", "dense"])
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--steps", type=int, default=3, help="draft steps per round to train (K)")
    ap.add_argument("--hidden", type=int, help="assistant width (default 128, 256 for wide "
                    "targets)")
    ap.add_argument("--windows", type=int, default=4000, help="teacher windows to collect")
    ap.add_argument("--prefix", type=int, default=128, help="corpus tokens per window")
    ap.add_argument("--generate", type=int, default=128, help="target tokens per window")
    ap.add_argument("--data-share", type=float, default=1 / 3, help="share of the budget that "
                    "collects teacher windows (the rest trains, clusters and evaluates)")
    ap.add_argument("--batch", type=int, default=8, help="windows per training step")
    ap.add_argument("--queries", type=int, default=48, help="draft rounds trained per window "
                    "and step (positions drawn at random)")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--eval-tokens", type=int, default=64, help="tokens per held-out prompt")
    ap.add_argument("--eval-prompts", type=int, default=32, help="held-out prompts to measure")
    ap.add_argument("--max-steps", type=int, default=0, help="stop training after this many "
                    "steps (0: the budget decides)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--pack", help="also write the pair compactly to this .npz (pack.py); the "
                    "assistant is first rounded to the values the pack stores")
    ap.add_argument("--specula", default=os.path.join(HERE, "..", "..", "build", "specula"))
    a = ap.parse_args(argv)
    for name, v in (("--budget-minutes", a.budget_minutes), ("--threads", a.threads),
                    ("--steps", a.steps), ("--windows", a.windows), ("--prefix", a.prefix),
                    ("--generate", a.generate), ("--batch", a.batch)):
        if v <= 0:
            print(f"distill: error: {name}: must be positive (got {v})", file=sys.stderr)
            return 1
    if not 0.0 < a.data_share < 0.75:  # training, clustering and evaluation need the rest
        print(f"distill: error: --data-share: must be in (0, 0.75) (got {a.data_share})",
              file=sys.stderr)
        return 1
    if not os.access(a.specula, os.X_OK):
        print(f"distill: error: --specula: {a.specula} is not an executable (build Specula "
              "first)", file=sys.stderr)
        return 1
    try:
        return run(a)
    except Refusal as e:
        print(f"distill: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
