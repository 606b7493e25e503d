#!/usr/bin/env bash
# Training throughput: our trainer vs a PyTorch implementation of the same architecture
# (bench/peers/bdh_torch.py), same config, steps and threads, one after the other on this machine.
# Needs Debian's python3-torch. Usage: bench/compare.sh [threads] [steps]   (the `cpu` preset's config and batch)
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${1:-$(nproc)}
steps=${2:-60}
data=../shared/data/tinyshakespeare.txt
[ -f "$data" ] || { echo "compare: $data not found" >&2; exit 1; }
out=$(mktemp -d)
dotnet build src/Bdh.Cli -c Release -o "$out/bin" > /dev/null
ours=$("$out/bin/bdh" train --data "$data" --steps "$steps" --eval-every 0 --threads "$threads" --out "$out/run" 2>/dev/null | grep '^done:')
theirs=$(/usr/bin/python3 bench/peers/bdh_torch.py train --text "$data" --steps "$steps" --threads "$threads")
echo "BdhNative: $ours"
echo "PyTorch:   $theirs"
ours_tps=$(sed -E 's/.* ([0-9]+) tokens\/s.*/\1/' <<< "$ours")
theirs_tps=$(sed -E 's/.* ([0-9]+) tokens\/s.*/\1/' <<< "$theirs")
awk -v a="$ours_tps" -v b="$theirs_tps" -v t="$threads" 'BEGIN { printf "ratio (ours / PyTorch), %d threads: %.2fx\n", t, a / b }'
rm -rf "$out"
