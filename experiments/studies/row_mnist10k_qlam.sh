#!/usr/bin/env bash
# QLAM variants beside row_mnist10k.sh: the same cell with extra model options, 3 seeds, lr 0.01,
# written into the same runs folder, then one report over everything there.
#
#   bash experiments/studies/row_mnist10k_qlam.sh DATA_DIR OUT EPOCHS NAME [KEY=VALUE ...]
#
# The README's rows:
#   ... runs/row_mnist10k 20 qlam-init01     encoding_scale=0.1
#   ... runs/row_mnist10k 20 qlam-su4-init01 encoding_scale=0.1 entangler=su4
#   ... runs/row_mnist10k 20 qlam-attn-h8 encoding_scale=0.1 entangler=su4 readout_at=attn query_heads=8 head_hidden=48
# THREADS (default 2) sets torch threads per run: 1 lets another one-thread job share the 2 cores.
set -euo pipefail
DATA=${1:?usage: row_mnist10k_qlam.sh DATA_DIR OUT EPOCHS NAME [KEY=VALUE ...]}
OUT=${2:?OUT}
EPOCHS=${3:?EPOCHS}
NAME=${4:?NAME}
shift 4
for seed in 0 1 2; do
  qlam train --model qlam --dataset mnist10k --data-dir "$DATA" --tokens row --epochs "$EPOCHS" \
    --batch-size 64 --out "$OUT" --no-progress --threads "${THREADS:-2}" --seed "$seed" --name "$NAME-s$seed" \
    --lr 0.01 --weight-decay 0.1 \
    --model-cfg n_qubits=8 backend=statevector depth=2 readout=query+xyz readout_at=every head_hidden=164 "$@"
done
qlam report "$OUT" --out "$OUT/report.md" --plot "$OUT/report.png"
