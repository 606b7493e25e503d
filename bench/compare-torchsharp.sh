#!/usr/bin/env bash
# Our trainer and full-recompute generation against the TorchSharp peer (bench/peers/TorchSharpBdh: the reference BDH
# op for op on TorchSharp-cpu 0.107.0, LibTorch 2.10 with MKL and oneDNN), interleaved on the same machine.
#   Usage: bench/compare-torchsharp.sh            (environment: PAIRS=3 STEPS=60 PAPER_STEPS=3 TOKENS=256 LONG_STEPS=2000
#                                                  WORKLOADS="train2 train1 paper full"; add "long" for a whole training run)
# 1. builds `bdh` and the peer, and runs the peer's `check` against ../shared/fixtures: nothing is timed unless it passes;
# 2. for each workload, PAIRS rounds of: `bdh`, the peer with glibc's default allocator, the peer with glibc told to keep
#    the memory it frees (GLIBC_TUNABLES below: no mmap for big blocks, no trimming; fresh pages are expensive on some
#    VMs, and LibTorch frees and reallocates its activations every step);
# 3. prints a markdown table: the median over the rounds of each run's figure (training: its median step; generation:
#    its tokens/s), the median peak RSS, and the ratio against the faster of the peer's two configurations
#    (> 1: ours is faster).
# Workloads (WORKLOADS picks them): train2 and train1, the cpu preset's training (batch 16 x 64) on 2 threads and on 1,
# STEPS steps; paper, the paper config's one 512-token micro-batch per step, 2 threads, PAPER_STEPS steps; full, greedy
# full-recompute generation of TOKENS tokens after "ROMEO:" from the trained fixture, 2 threads (ours: `bdh sample
# --mode full`; both texts are compared); long, the cpu preset's training on 2 threads for LONG_STEPS steps, the whole
# run the README's trained model comes from (BDH's activations grow sparse as it trains; TorchSharp's step time does
# not depend on that), about 25 minutes a pair on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
pairs=${PAIRS:-3}
steps=${STEPS:-60}
paper_steps=${PAPER_STEPS:-3}
tokens=${TOKENS:-256}
long_steps=${LONG_STEPS:-2000}
workloads=" ${WORKLOADS:-train2 train1 paper full} "
data=../shared/data/tinyshakespeare.txt
checkpoint=../shared/fixtures/bdh-trained-cpu-tiny-500.safetensors
keep_freed=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=4294967295
[ -f "$data" ] && [ -f "$checkpoint" ] || { echo "compare-torchsharp: needs ../shared (data and fixtures) beside the repository" >&2; exit 1; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
dotnet build src/Bdh.Cli -c Release -o "$out/bin" > /dev/null
dotnet build bench/peers/TorchSharpBdh -c Release > "$out/peer-build.log" || { cat "$out/peer-build.log" >&2; exit 1; }
bdh="$out/bin/bdh"
peer=bench/peers/TorchSharpBdh/bin/Release/net10.0/torchsharp-bdh
"$peer" check --fixtures ../shared/fixtures || { echo "compare-torchsharp: the peer fails its check; nothing timed" >&2; exit 1; }

# run LABEL FIGURE COMMAND...: runs COMMAND under /usr/bin/time -v and appends "figure peak-RSS-GB" to $out/LABEL, the
# figure being the median step in ms of a "done:" line (FIGURE=ms) or the tokens/s of a generation (FIGURE=tps); its
# stdout stays in $out/LABEL.stdout.
run() {
  local label=$1 figure=$2 value
  shift 2
  /usr/bin/time -v -o "$out/time" "$@" > "$out/stdout" 2> "$out/stderr" || { cat "$out/stderr" >&2; exit 1; }
  case "$figure" in
    ms) value=$(sed -nE 's/^done: .*median step ([0-9.]+) ms.*/\1/p' "$out/stdout") ;;
    tps) value=$(sed -nE 's/.* tokens in [0-9.]+ s, ([0-9.]+) tokens\/s.*/\1/p' "$out/stderr") ;;
  esac
  [ -n "$value" ] || { echo "compare-torchsharp: no figure from $*" >&2; cat "$out/stdout" "$out/stderr" >&2; exit 1; }
  cp "$out/stdout" "$out/$label.stdout"
  echo "$value $(sed -nE 's/.*Maximum resident set size \(kbytes\): ([0-9]+)/\1/p' "$out/time" | awk '{ print $1 / 1048576 }')" >> "$out/$label"
}
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }
figure() { cut -d' ' -f1 "$out/$1" | median; }
rss() { cut -d' ' -f2 "$out/$1" | median; }

# workload NAME FIGURE 'OURS ARGS' 'PEER ARGS': PAIRS interleaved rounds, then one table row.
workload() {
  local name=$1 figure=$2 ours_args=$3 peer_args=$4 key=${1//[^a-z0-9]/_} round
  for round in $(seq "$pairs"); do
    rm -rf "$out/run"
    # shellcheck disable=SC2086 # the argument strings are word lists
    run "$key.ours" "$figure" "$bdh" $ours_args
    # shellcheck disable=SC2086
    run "$key.peer" "$figure" "$peer" $peer_args
    # shellcheck disable=SC2086
    run "$key.keep" "$figure" env GLIBC_TUNABLES=$keep_freed "$peer" $peer_args
  done
  awk -v name="$name" -v f="$figure" -v o="$(figure "$key.ours")" -v p="$(figure "$key.peer")" -v k="$(figure "$key.keep")" \
      -v ro="$(rss "$key.ours")" -v rp="$(rss "$key.peer")" -v rk="$(rss "$key.keep")" 'BEGIN {
    unit = f == "ms" ? " ms/step" : " tokens/s"
    ratio = f == "ms" ? (p < k ? p : k) / o : o / (p > k ? p : k)
    printf "| %s | %.1f%s, %.2f GB | %.1f%s, %.2f GB | %.1f%s, %.2f GB | **%.2fx** |\n", name, o, unit, ro, p, unit, rp, k, unit, rk, ratio
  }' | tee -a "$out/table"
}

echo "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores; commit $(git rev-parse --short HEAD); $pairs pairs" | tee "$out/table"
echo "| workload | BdhNative | TorchSharp | TorchSharp, glibc keeps freed memory | ratio vs the faster TorchSharp |" | tee -a "$out/table"
echo "| --- | --- | --- | --- | --- |" | tee -a "$out/table"
# cpu_training THREADS STEPS: the cpu preset's training workload.
cpu_training() {
  workload "cpu preset training, $1 thread$([ "$1" = 1 ] || echo s), $2 steps" ms \
    "train --data $data --preset cpu --steps $2 --eval-every 0 --threads $1 --out $out/run" \
    "train --data $data --preset cpu --steps $2 --threads $1"
}
[[ $workloads == *" train2 "* ]] && cpu_training 2 "$steps"
[[ $workloads == *" train1 "* ]] && cpu_training 1 "$steps"
[[ $workloads == *" paper "* ]] && workload "paper config, one 512-token micro-batch, 2 threads, $paper_steps steps" ms \
  "train --data $data --preset paper --batch 1 --grad-accum 1 --block 512 --steps $paper_steps --eval-every 0 --threads 2 --out $out/run" \
  "train --data $data --preset paper --steps $paper_steps --threads 2"
[[ $workloads == *" long "* ]] && cpu_training 2 "$long_steps"
[[ $workloads == *" full "* ]] || exit 0
workload "full-recompute generation, $tokens tokens, 2 threads" tps \
  "sample --checkpoint $checkpoint --prompt ROMEO: --tokens $tokens --top-k 1 --mode full --threads 2" \
  "generate --checkpoint $checkpoint --prompt ROMEO: --tokens $tokens --threads 2"

# The last round's texts: the same greedy continuation of the same weights, unless float rounding tips a near tie.
generated=full_recompute_generation__${tokens}_tokens__2_threads
if cmp -s "$out/$generated.ours.stdout" "$out/$generated.peer.stdout"; then echo "greedy texts: identical"
else echo "greedy texts differ: $(cmp "$out/$generated.ours.stdout" "$out/$generated.peer.stdout" | head -1)"; fi
