#!/usr/bin/env bash
# `make demo`: the whole service on this machine. Starts `callwatch serve`
# with the bundled model and rules, follows the supervisor feed with
# `callwatch watch`, and streams the sample call in real time with
# `callwatch softphone` — alerts appear as they fire, with the agent's
# nudges beside them, then the scorecard.
set -euo pipefail

BIN=${BIN:-target/release/callwatch}
SAMPLE=${SAMPLE:-tests/fixtures/calls/hold_violation_call.wav}
CONFIG=config/demo.toml
OUT=target/demo
rm -rf "$OUT" && mkdir -p "$OUT"

# Port 0: the server picks a free one and prints it.
"$BIN" serve --config "$CONFIG" --listen 127.0.0.1:0 --data "$OUT/data" >"$OUT/serve.out" 2>"$OUT/serve.log" &
server=$!
trap 'kill $server 2>/dev/null || true; wait $server 2>/dev/null || true' EXIT
for _ in $(seq 300); do
    grep -q "serving on" "$OUT/serve.out" 2>/dev/null && break
    kill -0 $server 2>/dev/null || { cat "$OUT/serve.log" >&2; exit 1; }
    sleep 0.1
done
url="http://$(sed -n 's/^callwatch serving on //p' "$OUT/serve.out")"
echo "callwatch serving on $url (log: $OUT/serve.log)"
echo "supervisor feed for team billing; agent a17's nudges are marked 'agent screen'"
echo

# The store is fresh, so the feed from its start is this call alone.
"$BIN" watch --server "$url" --token demo-supervisor-billing --resume-after c0 --exit-after-calls 1 &
watcher=$!
"$BIN" softphone "$SAMPLE" --server "$url" --token demo-agent-a17 --agent a17 --team billing \
    | sed -u -n 's/^nudge /  agent screen │ nudge /p'
wait $watcher
