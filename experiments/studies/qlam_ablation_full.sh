#!/usr/bin/env bash
# Third QLAM ablation round, on the full row-level mnist10k (7,199 train / 801 val / 2,000 test),
# 20 epochs, seed 0, one thread per run, from the su4 + encoding-init-0.1 cell (README table).
# Prints best validation and test accuracy per variant.
#
#   bash experiments/studies/qlam_ablation_full.sh DATA_DIR [OUT]
set -euo pipefail
DATA=${1:?usage: qlam_ablation_full.sh DATA_DIR [OUT]}
OUT=${2:-runs/research}
base=(n_qubits=8 backend=statevector depth=2 readout=query+xyz head_hidden=164 encoding_scale=0.1 entangler=su4)
run() {  # name lr extra-model-cfg...
  local name=$1 lr=$2; shift 2
  qlam train --model qlam --dataset mnist10k --data-dir "$DATA" --tokens row --epochs 20 --batch-size 64 \
    --out "$OUT" --no-progress --threads 1 --seed 0 --name "$name" --lr "$lr" --weight-decay 0.1 \
    --model-cfg "${base[@]}" "$@" | grep -E "best val|test acc" | tr '\n' ' ' | sed "s/^/$name: /"
  echo
}
run attn 0.01 readout_at=attn
run every-lr02 0.02 readout_at=every
run attn-complex 0.01 readout_at=attn real=false encoding=ry_rz head_hidden=140
run attn-h4 0.01 readout_at=attn query_heads=4 head_hidden=84
run attn-h8 0.01 readout_at=attn query_heads=8 head_hidden=48
