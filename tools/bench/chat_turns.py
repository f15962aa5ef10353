# A multi-turn chat against a running `specula serve`: time to first token of every turn.
#   python3 tools/bench/chat_turns.py PORT [TURNS=10] [WORDS_PER_TURN=12] [MAX_TOKENS=24] [cold]
# cold: every request sends cache_prompt false, so the server resumes nothing (the baseline).
import http.client, json, sys, time
port = int(sys.argv[1]); turns = int(sys.argv[2]) if len(sys.argv) > 2 else 10
max_tokens = int(sys.argv[4]) if len(sys.argv) > 4 else 24
cold = len(sys.argv) > 5 and sys.argv[5] == "cold"
words = ("the package manager keeps a list of sources and resolves dependencies between "
         "packages before it downloads and unpacks them into the system ").split()
msgs = []
for t in range(turns):
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 12
    user = " ".join(words[(t * 7 + i) % len(words)] for i in range(n)) + f" (turn {t + 1})?"
    msgs.append({"role": "user", "content": user})
    body = json.dumps({"messages": msgs, "max_tokens": max_tokens, "temperature": 0, "stream": True,
                       "cache_prompt": not cold,
                       "stream_options": {"include_usage": True}})
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    t0 = time.monotonic(); ttft = None; text = ""; usage = None
    c.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
    r = c.getresponse()
    for line in r:
        line = line.decode().strip()
        if not line.startswith("data: ") or line == "data: [DONE]": continue
        j = json.loads(line[6:])
        if j.get("usage"): usage = j["usage"]
        for ch in j.get("choices", []):
            d = ch.get("delta", {}).get("content")
            if d and ttft is None: ttft = time.monotonic() - t0
            text += d or ""
    msgs.append({"role": "assistant", "content": text})
    print(json.dumps({"turn": t + 1, "ttft_s": round(ttft or -1, 3),
                      "prompt_tokens": usage["prompt_tokens"],
                      "cached": usage["prompt_tokens_details"]["cached_tokens"]}), flush=True)
