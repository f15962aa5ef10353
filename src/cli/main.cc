// specula: speculative decoding for Gemma 4 on CPUs.
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include "src/cli/commands.h"

namespace specula::cli {

namespace {

// The library names the parameter at fault ("temperature: ..."); a CLI user set it with a flag.
std::string InFlagWords(const std::string& message) {
  static const std::pair<const char*, const char*> kFlags[] = {
      {"temperature:", "--temp:"},
      {"top_k:", "--top-k:"},
      {"top_p:", "--top-p:"},
      {"min_p:", "--min-p:"},
      {"draft_max:", "--draft-max:"},
      {"draft_policy:", "--draft-policy:"},
      {"max_new_tokens:", "-n/--n-predict:"},
      {"type:", "--type:"}};
  for (const auto& [param, flag] : kFlags) {
    if (message.rfind(param, 0) == 0) return flag + message.substr(std::strlen(param));
  }
  return message;
}

}  // namespace

int Fail(const std::string& message) {
  std::fflush(stdout);
  std::cerr << "specula: error: " << InFlagWords(message) << std::endl;
  return 1;
}

Result<std::vector<int>> ParseTokenIds(const std::string& text, const std::string& where) {
  std::vector<int> ids;
  size_t at = 0;
  while (at <= text.size()) {
    const size_t end = std::min(text.find(',', at), text.size());
    std::string item = text.substr(at, end - at);
    const size_t b = item.find_first_not_of(" \t"), e = item.find_last_not_of(" \t");
    if (b == std::string::npos) return Error(where + ": empty entry in '" + text + "'");
    item = item.substr(b, e - b + 1);
    size_t used = 0;
    long long v = -1;
    try {
      v = std::stoll(item, &used);
    } catch (...) {
      used = 0;
    }
    if (used != item.size() || v < 0 || v > (1ll << 30)) {
      return Error(where + ": '" + item + "' is not a token id");
    }
    ids.push_back(static_cast<int>(v));
    at = end + 1;
  }
  return ids;
}

}  // namespace specula::cli

int main(int argc, char** argv) {
  using namespace specula::cli;
  CLI::App app{"specula: lossless speculative decoding for Gemma 4 on CPUs"};
  app.require_subcommand(1);
  std::map<CLI::App*, Runner> runners;
  for (auto add : {&AddGenerate, &AddTokenize, &AddInspect, &AddMakeRandom, &AddBench, &AddQuantize,
                   &AddConvert, &AddServe, &AddScore}) {
    Runner r = add(app);
    runners[app.get_subcommands({}).back()] = std::move(r);
  }
  // llama.cpp spells the drafter flag "-md"; CLI11 short flags are one letter, so map it.
  std::vector<std::string> args(argv, argv + argc);
  for (std::string& a : args) {
    if (a == "-md") a = "--draft";
  }
  std::vector<char*> argp;
  for (std::string& a : args) argp.push_back(a.data());
  argv = argp.data();
  if (argc > 1 && argv[1][0] != '-') {
    bool known = false;
    for (const CLI::App* sub : app.get_subcommands({})) known |= sub->get_name() == argv[1];
    if (!known)
      return Fail(std::string("unknown command '") + argv[1] +
                  "' (commands: generate, serve, score, tokenize, inspect, bench, quantize, "
                  "convert, make-random)");
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help
    std::string msg = e.what();
    for (char& c : msg) c = c == '\n' ? ' ' : c;
    return Fail(msg + " (see --help)");
  }
  for (CLI::App* sub : app.get_subcommands()) return runners.at(sub)();
  return Fail("no command given");
}
