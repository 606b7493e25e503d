#!/usr/bin/env bash
# The paper's §7.1 on this machine: two models trained on two corpora are merged (bdh merge), and each model's val
# loss is measured on both corpora, then again after a short fine-tune of the merged model on both.
# Corpora: tiny Shakespeare (../shared/data) and Vim's user manual (Debian's vim-runtime, usr_*.txt).
# As in the paper, both models may start from one base model (trained BASE steps on Shakespeare), each then trained
# STEPS more on its own corpus; with BASE = 0 they are trained from scratch independently, from different seeds.
# Usage, from the repository root after a Release build:
#   bench/experiments/merge-demo.sh [OUT_DIR] [STEPS] [TUNE_STEPS] [BASE]
set -euo pipefail
out=${1:-runs/merge-demo}
steps=${2:-400}
tune=${3:-100}
base=${4:-300}
bdh() { dotnet src/Bdh.Cli/bin/Release/net10.0/bdh.dll "$@"; }
mkdir -p "$out"
shakespeare=../shared/data/tinyshakespeare.txt
vim="$out/vim-manual.txt"
cat /usr/share/vim/vim90/doc/usr_*.txt > "$vim"
# Fine-tuning text: the train split (first 90%) of each corpus, so neither val split is seen.
head -c $(( $(wc -c < "$shakespeare") * 9 / 10 )) "$shakespeare" > "$out/both.txt"
head -c $(( $(wc -c < "$vim") * 9 / 10 )) "$vim" >> "$out/both.txt"

run=(--batch 16 --block 64 --eval-every 0)
if [ "$base" -gt 0 ]; then
    [ -d "$out/base" ] || bdh train --layers 4 --embd 128 --heads 4 --mult 8 "${run[@]}" --steps "$base" --data "$shakespeare" --out "$out/base" > "$out/base.log" 2>&1
    start=(--init "$out/base")
else
    start=(--layers 4 --embd 128 --heads 4 --mult 8)
fi
[ -d "$out/shakespeare" ] || bdh train "${start[@]}" "${run[@]}" --steps "$steps" --data "$shakespeare" --out "$out/shakespeare" > "$out/shakespeare.log" 2>&1
[ -d "$out/vim" ] || bdh train "${start[@]}" "${run[@]}" --steps "$steps" --data "$vim" --seed 7 --out "$out/vim" > "$out/vim.log" 2>&1
bdh merge "$out/shakespeare" "$out/vim" --out "$out/merged.safetensors" --force
[ -d "$out/tuned" ] || bdh train --init "$out/merged.safetensors" "${run[@]}" --steps "$tune" --data "$out/both.txt" --out "$out/tuned" > "$out/tuned.log" 2>&1

loss() { bdh eval --checkpoint "$1" --data "$2" --windows 400 | sed 's/val loss \([0-9.]*\).*/\1/'; }
echo "| model | val loss, tiny Shakespeare | val loss, Vim manual |"
echo "| --- | ---: | ---: |"
for m in shakespeare vim merged.safetensors tuned; do
    echo "| $m | $(loss "$out/$m" "$shakespeare") | $(loss "$out/$m" "$vim") |"
done
for m in merged.safetensors tuned; do
    echo "--- $m, greedy from 'ROMEO:' and from 'To delete a word':"
    bdh sample --checkpoint "$out/$m" --prompt "ROMEO:" --tokens 120 --top-k 1 2> /dev/null
    bdh sample --checkpoint "$out/$m" --prompt "To delete a word" --tokens 120 --top-k 1 2> /dev/null
done
