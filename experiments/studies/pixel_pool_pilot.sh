#!/usr/bin/env bash
# Pilot for position-aware pooling on pixel-level Fashion-MNIST (T=784), same protocol as
# pixel_lr_pilot.sh (3,000 training images, 3 epochs, seed 0, lr 0.03, validation accuracy).
# One seed each: a hint, not a result. VARIANTS picks the runs (default: all), two at a time.
#
#   bash experiments/studies/pixel_pool_pilot.sh DATA_DIR [OUT]
set -euo pipefail
DATA=${1:?usage: pixel_pool_pilot.sh DATA_DIR [OUT]}
OUT=${2:-runs/pix_tune}
common=(--dataset fashion_mnist --data-dir "$DATA" --tokens pixel --epochs 3 --batch-size 64 --limit-train 3000
        --out "$OUT" --no-progress --threads "${THREADS:-1}" --seed 0 --weight-decay 0.1 --lr 0.03)
cfg=(n_qubits=8 backend=statevector depth=2 readout=query+xyz entangler=su4 query_heads=8
     head_hidden=48 readout_at=attn)
declare -A V=(
  [pos-lr0.03]="encoding_scale=0.1 pool_positions=784"
  [pos-enc0.3-lr0.03]="encoding_scale=0.3 pool_positions=784"
)
for name in ${VARIANTS:-${!V[@]}}; do
  qlam train --model qlam "${common[@]}" --name "$name" --model-cfg "${cfg[@]}" ${V[$name]} &
  while [ "$(jobs -rp | wc -l)" -ge 2 ]; do sleep 5; done
done
wait
