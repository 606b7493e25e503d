#!/usr/bin/env bash
# Training throughput and peak memory: our trainer vs a PyTorch implementation of the same architecture
# (bench/peers/bdh_torch.py), same config, batch, steps and threads, one after the other on this machine.
# Needs Debian's python3-torch.
#   Usage: bench/compare.sh [threads] [steps] [cpu|paper]
#   cpu:   the `cpu` preset (4 layers, D 128, 4 heads, multiplier 16, batch 16 x 64)
#   paper: the reference config (6 layers, D 256, 4 heads, multiplier 128) on one 512-token sequence per step
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${1:-$(nproc)}
steps=${2:-60}
preset=${3:-cpu}
data=../shared/data/tinyshakespeare.txt
[ -f "$data" ] || { echo "compare: $data not found" >&2; exit 1; }
case "$preset" in
  cpu) ours_args=(--preset cpu); torch_args=() ;;
  paper) ours_args=(--preset paper --batch 1 --grad-accum 1 --block 512)
         torch_args=(--layers 6 --embd 256 --heads 4 --mult 128 --batch 1 --block 512) ;;
  *) echo "compare: preset is cpu or paper" >&2; exit 2 ;;
esac
out=$(mktemp -d)
dotnet build src/Bdh.Cli -c Release -o "$out/bin" > /dev/null
# A run started right after the build is slow on these VMs (a `cpu` step of 151 ms against 125 ms twenty seconds later,
# on the Ice Lake Xeon): let the machine settle before timing anything.
sleep 30
peak() { sed -nE 's/.*Maximum resident set size \(kbytes\): ([0-9]+)/\1/p' "$1" | awk '{ printf "%.2f GB", $1 / 1048576 }'; }
ours=$(/usr/bin/time -v -o "$out/ours.time" "$out/bin/bdh" train --data "$data" "${ours_args[@]}" --steps "$steps" --eval-every 0 \
  --threads "$threads" --out "$out/run" 2>/dev/null | grep '^done:')
theirs=$(/usr/bin/time -v -o "$out/theirs.time" /usr/bin/python3 bench/peers/bdh_torch.py train --text "$data" "${torch_args[@]}" \
  --steps "$steps" --threads "$threads")
echo "BdhNative: $ours; peak RSS $(peak "$out/ours.time")"
echo "PyTorch:   $theirs; peak RSS $(peak "$out/theirs.time")"
ours_tps=$(sed -E 's/.* ([0-9]+) tokens\/s.*/\1/' <<< "$ours")
theirs_tps=$(sed -E 's/.* ([0-9]+) tokens\/s.*/\1/' <<< "$theirs")
awk -v a="$ours_tps" -v b="$theirs_tps" -v t="$threads" -v p="$preset" 'BEGIN { printf "ratio (ours / PyTorch), %s, %d threads: %.2fx\n", p, t, a / b }'
rm -rf "$out"
