#!/usr/bin/env bash
# deploy/nginx/specula.conf in front of two real `specula serve` replicas (Debian's nginx on a
# free loopback port, no root needed). Checks: one X-Conversation-Id always reaches one replica;
# a conversation's second turn hits that replica's prompt cache; requests without the header
# reach both replicas, the idle one first; streams pass through as SSE;
# Authorization is forwarded; /health answers; and when a replica is killed under load, no request
# hangs, the dead replica's requests end with a clean error, every other response is complete and
# equal to a single-server run, and its conversations move to the survivor.
#   bash nginx_test.sh SPECULA_BIN WORK_DIR DEPLOY_DIR
set -euo pipefail

bin=$1
work=$2
deploy=$3
py=/usr/bin/python3
key=sk-deploy-test

pids=()
# Every exit path (success, failed check, ctest's timeout signal) kills what the test started.
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 1' INT TERM

fail() {
  echo "nginx_test: FAIL: $*" >&2
  for f in "$work"/replica*.log "$work"/nginx.log "$work"/nginx/error.log; do
    [[ -f $f ]] && { echo "--- $f" >&2; tail -n 20 "$f" >&2; }
  done
  exit 1
}

rm -rf "$work"
mkdir -p "$work"
"$bin" make-random "$work/target" --preset e2b-small >/dev/null

# --- two replicas on free ports (port 0; the bound port is read from stderr) ---
ports=()
for i in 0 1; do
  "$bin" serve -m "$work/target" --port 0 -c 2048 --parallel 4 --api-key "$key" \
    2>"$work/replica$i.log" &
  pids+=($!)
done
for i in 0 1; do
  for _ in $(seq 200); do
    port=$(sed -n 's/.*listening on http:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' "$work/replica$i.log")
    [[ -n $port ]] && break
    kill -0 "${pids[$i]}" 2>/dev/null || fail "replica $i exited"
    sleep 0.1
  done
  [[ -n $port ]] || fail "replica $i did not start"
  ports+=("$port")
done

# --- nginx: the shipped specula.conf, its replica list rendered with these ports ---
nginx_port=$($py -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0));
print(s.getsockname()[1])')
bash "$deploy/nginx/run-local.sh" "$work/nginx" "$nginx_port" "${ports[@]}" 2>"$work/nginx.log" &
pids+=($!)
base=http://127.0.0.1:$nginx_port

# --- helpers ---
health=""
for _ in $(seq 100); do
  health=$(curl -s -o /dev/null -w '%{http_code}' "$base/health" || true)
  [[ $health == 200 ]] && break
  sleep 0.1
done

# post PATH BODY [CONVERSATION_ID]: the response body through nginx; fails unless HTTP 200.
post() {
  local conv=()
  [[ -n ${3:-} ]] && conv=(-H "X-Conversation-Id: $3")
  curl -sS --fail-with-body -H "Authorization: Bearer $key" -H 'Content-Type: application/json' \
    "${conv[@]}" -d "$2" "$base$1"
}
# requests_total: each replica's specula_requests_total, read from the replica itself.
requests_total() {
  for p in "${ports[@]}"; do
    curl -sS -H "Authorization: Bearer $key" "http://127.0.0.1:$p/metrics" |
      awk '$1 == "specula_requests_total" { print $2 }'
  done | paste -sd ' '
}
# delta BEFORE AFTER: per-replica differences, as "d0 d1".
delta() {
  local -a b=($1) a=($2)
  echo "$((a[0] - b[0])) $((a[1] - b[1]))"
}
json() { $py -c "import json, sys; d = json.load(sys.stdin); print($1)"; }

# (e) /health through nginx.
[[ $health == 200 ]] || fail "/health through nginx: HTTP $health"
curl -sS "$base/health" | grep -q '"ok"' || fail "/health through nginx: no status ok"
echo "ok: /health through nginx is 200"

# Authorization is forwarded: without it the replica answers 401, with it 200.
code=$(curl -s -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' \
  -d '{"prompt": "hi", "max_tokens": 2}' "$base/v1/completions")
[[ $code == 401 ]] || fail "a request without Authorization got $code, not the replica's 401"
echo "ok: Authorization reaches the replicas (401 without it, 200 with it)"

# (a) One conversation key, one replica: 6 requests, and a second key's 6 too.
for conv in conv-alpha conv-beta; do
  before=$(requests_total)
  for i in $(seq 6); do
    post /v1/completions "{\"prompt\": \"turn $i of $conv\", \"max_tokens\": 4}" "$conv" \
      >/dev/null || fail "$conv request $i"
  done
  d=$(delta "$before" "$(requests_total)")
  [[ $d == "6 0" || $d == "0 6" ]] || fail "$conv: requests per replica $d, not all on one"
  echo "ok: 6 requests with X-Conversation-Id $conv all reached one replica ($d)"
done

# (b) The next turn of a conversation resumes from the same replica's prompt cache.
turn1='[{"role": "user", "content": "Hi there, tell me about caches."}]'
r1=$(post /v1/chat/completions "{\"messages\": $turn1, \"max_tokens\": 8, \"temperature\": 0}" \
  conv-gamma) || fail "turn 1"
turn2=$(echo "$r1" | json "json.dumps($turn1 + [d['choices'][0]['message'],
  {'role': 'user', 'content': 'And then?'}])")
r2=$(post /v1/chat/completions "{\"messages\": $turn2, \"max_tokens\": 8, \"temperature\": 0}" \
  conv-gamma) || fail "turn 2"
cached=$(echo "$r2" | json "d['usage']['prompt_tokens_details']['cached_tokens']")
turn1_tokens=$(echo "$r1" | json "d['usage']['prompt_tokens']")
((cached >= turn1_tokens)) ||
  fail "turn 2 resumed $cached cached tokens, fewer than turn 1's prompt ($turn1_tokens)"
echo "ok: turn 2 of conv-gamma resumed $cached cached prompt tokens"

# (c) Without the header: least connections, so 8 concurrent requests reach both replicas.
before=$(requests_total)
clients=()
for i in $(seq 8); do
  post /v1/completions "{\"prompt\": \"request $i\", \"max_tokens\": 48}" \
    >"$work/concurrent$i.json" &
  clients+=($!)
  pids+=($!)
done
for c in "${clients[@]}"; do wait "$c" || fail "a concurrent request failed"; done
d=$(delta "$before" "$(requests_total)")
read -r d0 d1 <<<"$d"
((d0 > 0 && d1 > 0 && d0 + d1 == 8)) || fail "8 requests without the header: per replica $d"
echo "ok: 8 concurrent requests without the header were spread over both replicas ($d)"

# Least connections, not round robin: while one keyless request runs long on a replica, the next
# keyless requests all go to the other one.
before=$(requests_total)
post /v1/completions '{"prompt": "a long answer", "max_tokens": 2000}' >/dev/null &
long=$!
pids+=($long)
for _ in $(seq 100); do
  d=$(delta "$before" "$(requests_total)")
  [[ $d != "0 0" ]] && break
  sleep 0.02
done
busy=$d
for i in $(seq 4); do
  post /v1/completions "{\"prompt\": \"short $i\", \"max_tokens\": 2}" >/dev/null ||
    fail "short request $i"
done
kill -0 "$long" 2>/dev/null || fail "the long request ended before the short ones (test timing)"
d=$(delta "$before" "$(requests_total)")
[[ ($busy == "1 0" && $d == "1 4") || ($busy == "0 1" && $d == "4 1") ]] ||
  fail "with one replica busy ($busy), 4 keyless requests went: $d (least_conn: all to the other)"
kill "$long" 2>/dev/null || true  # the client leaves; the replica cancels the sequence
wait "$long" 2>/dev/null || true
echo "ok: with one replica busy, 4 keyless requests all went to the idle one ($busy -> $d)"

# (d) Streaming passes through as Server-Sent Events: the event-stream type, one event per chunk,
# the final [DONE].
$py - "$base" "$key" >"$work/stream.txt" <<'PY' || fail "streaming through nginx"
import http.client, json, sys, urllib.parse
url = urllib.parse.urlparse(sys.argv[1])
conn = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
body = json.dumps({"prompt": "Once upon a time", "max_tokens": 96, "stream": True})
conn.request("POST", "/v1/completions", body, {"Authorization": "Bearer " + sys.argv[2],
                                                "Content-Type": "application/json"})
r = conn.getresponse()
assert r.status == 200, r.status
kind = r.getheader("Content-Type", "")
assert kind.startswith("text/event-stream"), kind
events = []
for line in r:
    line = line.decode().rstrip("\r\n")
    if line.startswith("data: "):
        events.append(line[6:])
assert events and events[-1] == "[DONE]", events[-3:]
chunks = [json.loads(e) for e in events[:-1]]
assert len(chunks) >= 32, len(chunks)
assert chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length"), chunks[-1]
print(f"{len(chunks)} events, then [DONE]")
PY
echo "ok: streaming passes through: $(cat "$work/stream.txt")"

# (f) A replica dies under load. 16 concurrent conversations (half streamed) through nginx; once
# both replicas are serving, replica 1 is killed (SIGKILL).
$py - "$nginx_port" "${ports[0]}" "${ports[1]}" "$key" "${pids[1]}" <<'PY' ||
import http.client, json, os, signal, sys, threading, time
nginx_port, port0, port1, victim = (int(a) for a in sys.argv[1:4] + sys.argv[5:6])
key = sys.argv[4]
N = 16

def body(i, stream):
    return json.dumps({"prompt": f"conversation {i} begins here", "max_tokens": 96,
                       "temperature": 0, "stream": stream})

def call(port, i, stream, conv=None, timeout=120):
    """(status, text, complete): complete means a whole response (JSON body, or [DONE])."""
    headers = {"Authorization": "Bearer " + key, "Content-Type": "application/json"}
    if conv: headers["X-Conversation-Id"] = conv
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", "/v1/completions", body(i, stream), headers)
        r = conn.getresponse()
        if r.status != 200 or not stream:
            data = r.read()
            if r.status != 200: return r.status, data.decode(errors="replace")[:120], False
            return 200, json.loads(data)["choices"][0]["text"], True
        text, done = "", False
        for line in r:
            line = line.decode().rstrip("\r\n")
            if line == "data: [DONE]": done = True
            elif line.startswith("data: "):
                e = json.loads(line[6:])
                if "error" in e: return 200, "error event: " + e["error"]["message"], False
                text += e["choices"][0]["text"]
        return 200, text, done
    except (http.client.HTTPException, OSError) as e:  # the stream was cut mid-way
        return -1, type(e).__name__, False
    finally:
        conn.close()

def requests_total(port):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/metrics", headers={"Authorization": "Bearer " + key})
    for line in conn.getresponse().read().decode().splitlines():
        if line.startswith("specula_requests_total "): return int(line.split()[1])

# What a single server answers to each conversation.
ref = [call(port0, i, False)[1] for i in range(N)]
before = [requests_total(port0), requests_total(port1)]
results, ended = [None] * N, [0.0] * N
def client(i):
    results[i] = call(nginx_port, i, i % 2 == 0, conv=f"load-{i}")
    ended[i] = time.time()
threads = [threading.Thread(target=client, args=(i,)) for i in range(N)]
for t in threads: t.start()
deadline = time.time() + 30
while time.time() < deadline:
    if requests_total(port0) > before[0] and requests_total(port1) > before[1]: break
    time.sleep(0.02)
else:
    sys.exit("the load did not reach both replicas")
time.sleep(0.3)  # let both replicas stream some tokens
on1 = requests_total(port1) - before[1]  # what the replica has received when it dies
killed = time.time()
os.kill(victim, signal.SIGKILL)
for t in threads: t.join(timeout=120)
assert not any(t.is_alive() for t in threads), "a request hangs after the replica died"
good = [i for i in range(N) if results[i][2]]
bad = [i for i in range(N) if not results[i][2]]
for i in good:
    assert results[i][1] == ref[i], f"conversation {i} differs from a single-server run"
for i in bad:
    status, what, _ = results[i]
    # Not yet answered: nginx's 502. Mid-stream: the stream is cut (no [DONE]), which every SSE
    # client sees as an error. Either way promptly after the death.
    assert status in (502, -1) or (status == 200 and i % 2 == 0), (i, status, what)
    assert ended[i] - killed < 15, f"conversation {i} took {ended[i] - killed:.1f} s to fail"
assert bad, "no request was in flight on the killed replica"
assert len(bad) <= on1, f"{len(bad)} requests failed, but only {on1} reached the killed replica"
# The dead replica's conversations go to the survivor now.
for i in bad[:4]:
    status, text, complete = call(nginx_port, i, False, conv=f"load-{i}")
    assert status == 200 and complete and text == ref[i], (i, status, text[:80])
print(f"{len(good)} complete and equal to a single server, {len(bad)} ended with an error "
      f"(of {on1} sent to the killed replica); their conversations then went to the survivor")
PY
  fail "a replica killed under load"
echo "ok: a replica killed under load: no request hung, the others completed unchanged"

echo "nginx_test: all checks passed"
