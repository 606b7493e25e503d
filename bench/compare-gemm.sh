#!/usr/bin/env bash
# Our GEMM and OpenBLAS sgemm on the BDH shapes, same machine, same threads, one run.
# Needs Debian's libopenblas-dev (apt-get install libopenblas-dev). Usage: bench/compare-gemm.sh [threads]
set -euo pipefail
cd "$(dirname "$0")"
threads=${1:-$(nproc)}
build=$(mktemp -d)
cc -O2 -o "$build/sgemm_openblas" peers/sgemm_openblas.c -lopenblas
dotnet build Bdh.Benchmarks -c Release -o "$build/bench" > /dev/null
OPENBLAS_NUM_THREADS=$threads "$build/sgemm_openblas"
echo
dotnet "$build/bench/Bdh.Benchmarks.dll" gflops "$threads"
