#!/usr/bin/env bash
# Quick QLAM ablation on row-level mnist10k: 2,000 training images, 6 epochs, seed 0, one
# change at a time from the base cell (8 qubits, statevector, depth 2, query+xyz readout
# averaged over tokens, head 164, encoding init 0.5). Prints the best validation accuracy.
#
#   bash experiments/studies/qlam_ablation_small.sh DATA_DIR [OUT]
set -euo pipefail
DATA=${1:?usage: qlam_ablation_small.sh DATA_DIR [OUT]}
OUT=${2:-runs/qlam_ablation_small}
base=(n_qubits=8 backend=statevector depth=2 readout=query+xyz readout_at=every head_hidden=164 encoding_scale=0.5)
run() {  # name lr extra-model-cfg...
  local name=$1 lr=$2; shift 2
  qlam train --model qlam --dataset mnist10k --data-dir "$DATA" --tokens row --epochs 6 --batch-size 64 \
    --limit-train 2000 --lr "$lr" --weight-decay 0.1 --threads 1 --no-progress --out "$OUT" --name "$name" \
    --model-cfg "${base[@]}" "$@" | grep "best val" | sed "s/^/$name (lr $lr): /"
}
run base-lr0.03 0.03
run base-lr0.01 0.01
run init2.0 0.03 encoding_scale=2.0
run su4 0.03 entangler=su4
run depth1 0.03 depth=1
run last 0.03 readout_at=last
run init0.1 0.01 encoding_scale=0.1
run init0.2 0.01 encoding_scale=0.2
run n10 0.01 n_qubits=10
run head64 0.01 head_hidden=64
# Second round, from the better init 0.1 (lr 0.01 unless stated):
run i01-lr0.03 0.03 encoding_scale=0.1
run i01-su4 0.01 encoding_scale=0.1 entangler=su4
run i01-reupload-d3 0.01 encoding_scale=0.1 reupload=true depth=3
run i01-n10 0.01 encoding_scale=0.1 n_qubits=10
run i01-init0.05 0.01 encoding_scale=0.05
