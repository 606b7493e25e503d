#!/usr/bin/env bash
# How a training step's cost grows with the block size T and with the neurons per head N (the `cpu`
# preset otherwise): median step time and time per token. B·T stays 1024 tokens per step.
#   Usage: bench/scaling.sh [threads] [steps]
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${1:-$(nproc)}
steps=${2:-8}
data=../shared/data/tinyshakespeare.txt
out=$(mktemp -d)
dotnet build src/Bdh.Cli -c Release -o "$out/bin" > /dev/null
sleep 30 # a run started right after the build is slow on these VMs (bench/compare.sh says by how much)
run() { # label, extra train arguments
  local line ms
  line=$("$out/bin/bdh" train --data "$data" --steps "$steps" --eval-every 0 --threads "$threads" --out "$out/run-$RANDOM" "${@:2}" 2>/dev/null | grep '^done:')
  ms=$(sed -E 's/.*median step ([0-9.]+) ms.*/\1/' <<< "$line")
  awk -v l="$1" -v ms="$ms" 'BEGIN { printf "| %s | %.1f | %.1f |\n", l, ms, ms * 1000 / 1024 }'
}
echo "| config ($threads threads) | ms per step | µs per token |"
echo "| --- | --- | --- |"
for t in 64 128 256 512; do run "T = $t, B = $((1024 / t)), N = 512" --block "$t" --batch $((1024 / t)); done
for mult in 8 32 64; do run "T = 64, B = 16, N = $((mult * 32))" --mult "$mult"; done
rm -rf "$out"
