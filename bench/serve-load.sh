#!/usr/bin/env bash
# A bounded load test of `bdh serve` on loopback (bench/README.md, "bdh serve under load"):
#   bench/serve-load.sh [CHECKPOINT] [SECONDS]
# 1. the managed recurrent engine's single-stream rate (bdh sample, 512 tokens), the figure to sustain in aggregate;
# 2. 16 and 64 concurrent streaming completions (128 tokens each) for SECONDS each: aggregate tokens/s, p50/p99 time to
#    first token and per-token latency, errors; the server's peak RSS (VmHWM) against its memory budget;
# 3. the time to first token of a chat's follow-up turn after 4000 bytes of conversation, with the cache and without.
set -euo pipefail
cd "$(dirname "$0")/.."
checkpoint=${1:-../shared/fixtures/bdh-trained-cpu-tiny-500.safetensors}
seconds=${2:-20}
dotnet build src/Bdh.Cli -c Release -v q -nologo >/dev/null
dotnet build bench/Bdh.ServeLoad -c Release -v q -nologo >/dev/null
bdh=src/Bdh.Cli/bin/Release/net10.0/bdh
load=bench/Bdh.ServeLoad/bin/Release/net10.0/Bdh.ServeLoad

echo "== single stream: bdh sample --tokens 512 (managed recurrent engine)"
$bdh sample -c "$checkpoint" --tokens 512 --temperature 0.8 >/dev/null

serve() { # PORT CACHE_MB: starts bdh serve in the background, waits for /health
  $bdh serve -c "$checkpoint" --port "$1" --cache-mb "$2" --max-concurrent 64 --queue 64 2>>"$log" &
  pid=$!
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$1/health" >/dev/null && return; sleep 0.1; done
  echo "bdh serve did not start" >&2; exit 1
}
log=$(mktemp)
trap 'kill $pid 2>/dev/null || true; rm -f "$log"' EXIT

cache_mb=256
serve 18080 $cache_mb
for concurrency in 16 64; do
  echo "== $concurrency concurrent streams for $seconds s"
  $load streams http://127.0.0.1:18080/ "$concurrency" "$seconds" 128
done
echo "== follow-up turn, conversations kept (--cache-mb $cache_mb)"
$load followup http://127.0.0.1:18080/ 4000 9
echo "server peak RSS $(awk '/VmHWM/ {printf "%.0f MB", $2 / 1024}' /proc/$pid/status) (conversation budget $cache_mb MB)"
kill -TERM $pid; wait $pid

echo "== follow-up turn, nothing kept (--cache-mb 0)"
serve 18081 0
$load followup http://127.0.0.1:18081/ 4000 9
kill -TERM $pid; wait $pid
