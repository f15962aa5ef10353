# N concurrent multi-turn chats against one address (a replica, or nginx in front of several), each
# with its own X-Conversation-Id: aggregate generated tokens per second, time to first token.
#   python3 tools/bench/conversations.py PORT [CONVERSATIONS=16] [TURNS=3] [MAX_TOKENS=64]
import http.client, json, sys, threading, time

port = int(sys.argv[1])
n, turns, max_tokens = (int(a) for a in (sys.argv[2:5] + ["16", "3", "64"][len(sys.argv) - 2:]))
words = ("the package manager keeps a list of sources and resolves dependencies between "
         "packages before it downloads and unpacks them into the system").split()
generated, ttfts, errors = [0] * n, [], []
lock = threading.Lock()


def chat(c):
    msgs = []
    for t in range(turns):
        user = " ".join(words[(c * 5 + t * 7 + i) % len(words)] for i in range(12))
        msgs.append({"role": "user", "content": f"{user} ({c}.{t})?"})
        body = json.dumps({"messages": msgs, "max_tokens": max_tokens, "temperature": 0,
                           "stream": True, "stream_options": {"include_usage": True}})
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=900)
        t0 = time.monotonic()
        conn.request("POST", "/v1/chat/completions", body,
                     {"Content-Type": "application/json", "X-Conversation-Id": f"bench-{c}"})
        r = conn.getresponse()
        if r.status != 200:
            with lock:
                errors.append(r.status)
            return
        text, first, usage = "", None, None
        for line in r:
            line = line.decode().strip()
            if not line.startswith("data: {"):
                continue
            j = json.loads(line[6:])
            usage = j.get("usage") or usage  # the final chunk's, then include_usage's
            for ch in j.get("choices", []):
                d = ch.get("delta", {}).get("content")
                if d and first is None:
                    first = time.monotonic() - t0
                text += d or ""
        generated[c] += usage["completion_tokens"]
        with lock:
            ttfts.append(first or 0.0)
        msgs.append({"role": "assistant", "content": text})


t0 = time.monotonic()
threads = [threading.Thread(target=chat, args=(c,)) for c in range(n)]
for t in threads:
    t.start()
for t in threads:
    t.join()
wall = time.monotonic() - t0
ttfts.sort()
print(json.dumps({"conversations": n, "turns": turns, "generated": sum(generated),
                  "wall_s": round(wall, 2), "tok_per_s": round(sum(generated) / wall, 1),
                  "ttft_median_s": round(ttfts[len(ttfts) // 2], 3) if ttfts else None,
                  "errors": errors}))
