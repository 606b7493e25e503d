#!/usr/bin/env bash
# The paper's §7.1 on this machine: train two small models on two corpora, merge them, and measure each
# model's val loss on both corpora, then again after a short fine-tune of the merged model on both.
# Corpora: tiny Shakespeare (../shared/data) and Vim's user manual (Debian's vim-runtime, usr_*.txt).
# Usage: bench/experiments/merge-demo.sh [OUT_DIR] [STEPS] [TUNE_STEPS]   (from the repository root)
set -euo pipefail
out=${1:-runs/merge-demo}
steps=${2:-400}
tune=${3:-100}
bdh() { dotnet src/Bdh.Cli/bin/Release/net10.0/bdh.dll "$@"; }
mkdir -p "$out"
shakespeare=../shared/data/tinyshakespeare.txt
vim="$out/vim-manual.txt"
cat /usr/share/vim/vim90/doc/usr_*.txt > "$vim"
# Fine-tuning text: the train split (first 90%) of each corpus, so neither val split is seen.
head -c $(( $(wc -c < "$shakespeare") * 9 / 10 )) "$shakespeare" > "$out/both.txt"
head -c $(( $(wc -c < "$vim") * 9 / 10 )) "$vim" >> "$out/both.txt"

small=(--layers 4 --embd 128 --heads 4 --mult 8 --batch 16 --block 64 --eval-every 0 --steps "$steps")
[ -d "$out/shakespeare" ] || bdh train "${small[@]}" --data "$shakespeare" --out "$out/shakespeare" > "$out/shakespeare.log" 2>&1
[ -d "$out/vim" ] || bdh train "${small[@]}" --data "$vim" --out "$out/vim" --seed 7 > "$out/vim.log" 2>&1
bdh merge "$out/shakespeare" "$out/vim" --out "$out/merged.safetensors" --force
[ -d "$out/tuned" ] || bdh train --init "$out/merged.safetensors" --data "$out/both.txt" --steps "$tune" --batch 16 --block 64 \
    --eval-every 0 --out "$out/tuned" > "$out/tuned.log" 2>&1

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
