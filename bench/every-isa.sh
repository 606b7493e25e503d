#!/usr/bin/env bash
# One table per vector width the kernels run at on this machine: AVX-512 (if the CPU has it), AVX2 + FMA
# (DOTNET_EnableAVX512=0), 128-bit with FMA (DOTNET_PreferredVectorBitWidth=128: ARM64's shape) and 128-bit without
# (DOTNET_EnableAVX2=0, which on x64 turns FMA off too),
# each against anchors that ignore our JIT knobs, measured in the same run:
#   - the FMA peak at that width (bench `peak`; without FMA, the peak of separate multiplies and adds), 1 thread and all;
#   - dense GEMM on the BDH shapes (bench `gflops`) against OpenBLAS sgemm (peers/sgemm_openblas.c: the kernel its
#     DYNAMIC_ARCH picks against 512 bits, its Haswell (AVX2 + FMA) kernel against the narrower legs), the two run
#     back to back GEMM_PAIRS times: each shape's ratio is the median of the pairs' ratios, so a slow spell of this
#     VM touches both sides of a pair;
#   - `bdh train`, cpu preset, STEPS steps, 2 threads, against PyTorch (peers/bdh_torch.py, Debian python3-torch)
#     and the TorchSharp peer (peers/TorchSharpBdh, with glibc keeping freed memory: its faster setting here),
#     interleaved round by round: ours at every width, then the anchors;
#   - generation from the trained fixture, TOKENS tokens after "ROMEO:", 2 threads: recurrent and full against
#     the TorchSharp peer's full recompute.
# Needs libopenblas-dev and python3-torch (apt-get install libopenblas-dev python3-torch).
#   Usage: bench/every-isa.sh              (environment: ROUNDS=3 STEPS=60 TOKENS=256 GEMM_PAIRS=5)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${ROUNDS:-3}
steps=${STEPS:-60}
tokens=${TOKENS:-256}
gemm_pairs=${GEMM_PAIRS:-5}
data=../shared/data/tinyshakespeare.txt
checkpoint=../shared/fixtures/bdh-trained-cpu-tiny-500.safetensors
keep_freed=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=4294967295
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
dotnet build src/Bdh.Cli -c Release -o "$out/bin" > /dev/null
dotnet build bench/Bdh.Benchmarks -c Release -o "$out/bench" > /dev/null
dotnet build bench/peers/TorchSharpBdh -c Release > /dev/null
cc -O2 -o "$out/sgemm_openblas" bench/peers/sgemm_openblas.c -lopenblas
peer=bench/peers/TorchSharpBdh/bin/Release/net10.0/torchsharp-bdh
"$peer" check --fixtures ../shared/fixtures > /dev/null || { echo "every-isa: the TorchSharp peer fails its check" >&2; exit 1; }

# The legs this machine runs: each the knob that holds the JIT to a width, and that width.
declare -A knob=([512]=DOTNET_EnableAVX512=1 [256]=DOTNET_EnableAVX512=0 [128fma]=DOTNET_PreferredVectorBitWidth=128 [128]=DOTNET_EnableAVX2=0)
declare -A title=([512]="512-bit vectors" [256]="256-bit vectors" [128fma]="128-bit vectors with FMA (ARM64's shape)" [128]="128-bit vectors without FMA")
widths=()
for w in 512 256 128fma 128; do
  [ "$(env "${knob[$w]}" dotnet "$out/bench/Bdh.Benchmarks.dll" width)" = "${w%fma}" ] && widths+=("$w")
done

# record LABEL FIGURE COMMAND...: appends the run's figure to $out/LABEL: the median step in ms of a training run's
# summary line (FIGURE=ms) or the tokens/s of a generation (FIGURE=tps).
record() {
  local label=$1 figure=$2 value
  shift 2
  "$@" > "$out/stdout" 2> "$out/stderr" || { cat "$out/stderr" >&2; exit 1; }
  case "$figure" in
    ms) value=$(sed -nE 's/.*median step ([0-9.]+) ms.*/\1/p' "$out/stdout") ;;
    tps) value=$(sed -nE 's/.* tokens in [0-9.]+ s, ([0-9.]+) tokens\/s.*/\1/p' "$out/stderr") ;;
  esac
  [ -n "$value" ] || { echo "every-isa: no figure from $*" >&2; cat "$out/stdout" "$out/stderr" >&2; exit 1; }
  echo "$value" >> "$out/$label"
}
# median_of: the median of the numbers on stdin, one a line; median LABEL: of the figures recorded under LABEL.
median_of() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }
median() { median_of < "$out/$1"; }
# shape_median WIDTH SHAPE COLUMN: the median over the GEMM pairs of one column of $out/gemm.WIDTH for that shape.
shape_median() { awk -v s="$2" -v c="$3" '$1 == s { print $c }' "$out/gemm.$1" | median_of; }

for round in $(seq "$rounds"); do
  for w in "${widths[@]}"; do
    rm -rf "$out/run"
    record "train.$w" ms env "${knob[$w]}" "$out/bin/bdh" train --data "$data" --preset cpu --steps "$steps" --eval-every 0 --threads 2 --out "$out/run"
    record "recurrent.$w" tps env "${knob[$w]}" "$out/bin/bdh" sample -c "$checkpoint" -p ROMEO: -n "$tokens" --top-k 1 --mode recurrent --threads 2
    record "full.$w" tps env "${knob[$w]}" "$out/bin/bdh" sample -c "$checkpoint" -p ROMEO: -n "$tokens" --top-k 1 --mode full --threads 2
  done
  record train.pytorch ms /usr/bin/python3 bench/peers/bdh_torch.py train --text "$data" --steps "$steps" --threads 2
  record train.torchsharp ms env GLIBC_TUNABLES=$keep_freed "$peer" train --data "$data" --preset cpu --steps "$steps" --threads 2
  record full.torchsharp tps env GLIBC_TUNABLES=$keep_freed "$peer" generate --checkpoint "$checkpoint" --prompt ROMEO: --tokens "$tokens" --threads 2
done
for w in "${widths[@]}"; do
  for pair in $(seq "$gemm_pairs"); do
    OPENBLAS_CORETYPE=$([ "$w" = 512 ] || echo Haswell) OPENBLAS_NUM_THREADS=2 "$out/sgemm_openblas" > "$out/openblas.$w.$pair"
    env "${knob[$w]}" dotnet "$out/bench/Bdh.Benchmarks.dll" gflops 2 > "$out/gemm.$w.$pair"
  done
done

echo "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs) (family $(grep -m1 'cpu family' /proc/cpuinfo | cut -d: -f2 | xargs) model $(grep -m1 '^model\s' /proc/cpuinfo | cut -d: -f2 | xargs)), $(nproc) cores ($(grep -o -w -E 'avx512f|avx2|fma' /proc/cpuinfo | sort -u | xargs));" \
  "commit $(git rev-parse --short HEAD); $rounds rounds, medians"
echo "anchors: PyTorch $(/usr/bin/python3 -c 'import torch; print(torch.__version__)') $(median train.pytorch) ms/step;" \
  "TorchSharp $(median train.torchsharp) ms/step, full recompute $(median full.torchsharp) tokens/s; $(head -1 "$out/openblas.${widths[0]}.1" | cut -d' ' -f1-3)"
for w in "${widths[@]}"; do
  env "${knob[$w]}" dotnet "$out/bench/Bdh.Benchmarks.dll" peak > "$out/peak.$w"
  peak2=$(sed -nE 's/.*2 threads: ([0-9.]+) GFLOP.*/\1/p' "$out/peak.$w")
  echo
  # "FMA peak", or without FMA "multiply and add peak" (bench `peak`).
  echo "### ${title[$w]} (${knob[$w]}); $(sed -nE '1s/ at .*//p' "$out/peak.$w") $(sed -nE 's/.*1 thread: ([0-9.]+) GFLOP.*/\1/p' "$out/peak.$w") GFLOP/s on 1 thread, $peak2 on 2"
  echo
  echo "| workload, 2 threads | BdhNative | anchor | ratio |"
  echo "| --- | ---: | ---: | ---: |"
  # Per shape: the medians of our and OpenBLAS's GFLOP/s over the pairs, and the median of the pairs' ratios.
  for pair in $(seq "$gemm_pairs"); do
    awk 'NR == FNR { if (/GFLOP/) blas[$1] = $(NF - 1); next } /GFLOP/ { print $1, $(NF - 1), blas[$1], $(NF - 1) / blas[$1] }' \
      "$out/openblas.$w.$pair" "$out/gemm.$w.$pair"
  done > "$out/gemm.$w"
  for shape in $(awk '!seen[$1]++ { print $1 }' "$out/gemm.$w"); do
    awk -v s="$shape" -v ours="$(shape_median "$w" "$shape" 2)" -v blas="$(shape_median "$w" "$shape" 3)" \
      -v ratio="$(shape_median "$w" "$shape" 4)" -v peak="$peak2" -v core="$(awk 'NR == 1 { print $(NF - 3) }' "$out/openblas.$w.1")" 'BEGIN {
      printf "| GEMM %s, GFLOP/s (%% of peak) | %.1f (%.0f%%) | OpenBLAS %s %.1f | %.2fx |\n", s, ours, 100 * ours / peak, core, blas, ratio }'
  done
  t=$(median "train.$w")
  awk -v t="$t" -v p="$(median train.pytorch)" -v s="$(median train.torchsharp)" -v n="$steps" 'BEGIN {
    printf "| train, cpu preset, %d steps, ms/step | %.1f | PyTorch %.1f | %.2fx |\n", n, t, p, p / t
    printf "| train, cpu preset, %d steps, ms/step | %.1f | TorchSharp %.1f | %.2fx |\n", n, t, s, s / t }'
  awk -v r="$(median "recurrent.$w")" -v f="$(median "full.$w")" -v s="$(median full.torchsharp)" -v n="$tokens" 'BEGIN {
    printf "| generate %d tokens, full recompute, tokens/s | %.1f | TorchSharp %.1f | %.2fx |\n", n, f, s, f / s
    printf "| generate %d tokens, recurrent, tokens/s | %.1f | our full mode %.1f | %.1fx |\n", n, r, f, r / f }'
  if [ "${w%fma}" = 128 ] && [ -f "$out/train.256" ]; then
    awk -v a="$(median train.256)" -v b="$t" 'BEGIN { printf "| train, 128-bit against AVX2 | %.1f | AVX2 %.1f | %.2fx |\n", b, a, a / b }'
  fi
done
