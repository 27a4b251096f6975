#!/usr/bin/env bash
# Ablation beside row_mnist10k.sh: QLAM with trainable general two-qubit (SO(4)) entanglers and
# its encoding initialised near the identity (encoding_scale 0.1), lr 0.01, the best of the
# 6-epoch runs on 2,000 training images in qlam_ablation_small.sh (0.81 validation accuracy).
#
#   bash experiments/studies/row_mnist10k_qlam_su4.sh DATA_DIR [OUT] [EPOCHS]
set -euo pipefail
DATA=${1:?usage: row_mnist10k_qlam_su4.sh DATA_DIR [OUT] [EPOCHS]}
OUT=${2:-runs/row_mnist10k}
EPOCHS=${3:-20}
for seed in 0 1 2; do
  qlam train --model qlam --dataset mnist10k --data-dir "$DATA" --tokens row --epochs "$EPOCHS" \
    --batch-size 64 --out "$OUT" --no-progress --threads 2 --seed "$seed" --name "qlam-su4-init01-s$seed" \
    --lr 0.01 --weight-decay 0.1 \
    --model-cfg n_qubits=8 backend=statevector depth=2 readout=query+xyz readout_at=every head_hidden=164 \
                encoding_scale=0.1 entangler=su4
done
qlam report "$OUT" --out "$OUT/report.md" --plot "$OUT/report.png"
