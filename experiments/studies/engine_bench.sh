#!/usr/bin/env bash
# Every speed table in the README's "Measured" section, in one run. Run it ALONE on the machine
# (another CPU job skews every figure); it takes ~15 minutes on 2 cores.
#
#   bash experiments/studies/engine_bench.sh [OUT]
#
# Writes OUT/*.md (default runs/engine_bench), one file per table, and prints them.
set -euo pipefail
OUT=${1:-runs/engine_bench}
mkdir -p "$OUT"
run() { local name=$1; shift; echo "== $name: $*"; "$@" | tee "$OUT/$name.md"; }
run models qlam bench-models --threads 2
run models_b64 qlam bench-models --models gru --qlam sv8 mps16x16 --B 64 --T 784 --mps-T 28 --threads 2
run anchors qlam bench-anchors --extras
run engine qlam bench-engine
