#!/usr/bin/env bash
# One replica against R replicas behind deploy/nginx (run-local.sh), the machine's cores split
# between them, under N concurrent conversations (tools/bench/conversations.py): aggregate tok/s.
#   bash tools/bench/replicas.sh SPECULA_BIN TARGET [ASSISTANT]
# Environment: REPLICAS (2), CORES (nproc), CONVERSATIONS (16), TURNS (3), MAX_TOKENS (64),
# WORK (/tmp/specula-replicas).
set -euo pipefail
bin=$1
target=$2
assistant=${3:-}
root="$(cd "$(dirname "$0")/../.." && pwd)"
replicas=${REPLICAS:-2}
cores=${CORES:-$(nproc)}
work=${WORK:-/tmp/specula-replicas}
py=/usr/bin/python3
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT
free_port() {
  $py -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# run COUNT THREADS: COUNT replicas of THREADS threads each behind nginx; prints the load's result.
run() {
  local count=$1 threads=$2 ports=() i port
  rm -rf "$work" && mkdir -p "$work"
  for ((i = 0; i < count; ++i)); do
    "$bin" serve -m "$target" ${assistant:+-md "$assistant"} --port 0 -t "$threads" -c 4096 \
      --parallel $((16 / count)) 2>"$work/replica$i.log" &
    pids+=($!)
  done
  for ((i = 0; i < count; ++i)); do
    port=""
    while [[ -z $port ]]; do
      sleep 0.2
      port=$(sed -n 's/.*listening on http:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' \
        "$work/replica$i.log")
    done
    ports+=("$port")
  done
  local nginx_port
  nginx_port=$(free_port)
  bash "$root/deploy/nginx/run-local.sh" "$work/nginx" "$nginx_port" "${ports[@]}" &
  pids+=($!)
  until curl -sf "http://127.0.0.1:$nginx_port/health" >/dev/null; do sleep 0.2; done
  $py "$root/tools/bench/conversations.py" "$nginx_port" "${CONVERSATIONS:-16}" "${TURNS:-3}" \
    "${MAX_TOKENS:-64}"
  cleanup
  pids=()
}

echo "1 replica, $cores threads: $(run 1 "$cores")"
per=$((cores / replicas))
echo "$replicas replicas, $per thread(s) each: $(run "$replicas" "$per")"
