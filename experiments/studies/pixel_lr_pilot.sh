#!/usr/bin/env bash
# A short pilot for the pixel-level QLAM cell (see pixel_fashion.sh): learning rate 0.003 / 0.01 /
# 0.03 with attention pooling, and mean pooling (readout_at=every) at 0.01; 3,000 training images,
# 3 epochs, seed 0, validation accuracy. One seed each: a hint, not a result.
#
#   bash experiments/studies/pixel_lr_pilot.sh DATA_DIR [OUT]
set -euo pipefail
DATA=${1:?usage: pixel_lr_pilot.sh DATA_DIR [OUT]}
OUT=${2:-runs/pix_tune}
common=(--dataset fashion_mnist --data-dir "$DATA" --tokens pixel --epochs 3 --batch-size 64 --limit-train 3000
        --out "$OUT" --no-progress --threads "${THREADS:-1}" --seed 0 --weight-decay 0.1)
cfg=(n_qubits=8 backend=statevector depth=2 readout=query+xyz encoding_scale=0.1 entangler=su4 query_heads=8
     head_hidden=48)
for lr in 0.01 0.03 0.003; do
  qlam train --model qlam "${common[@]}" --name "attn-lr$lr" --lr "$lr" --model-cfg "${cfg[@]}" readout_at=attn
done
qlam train --model qlam "${common[@]}" --name every-lr0.01 --lr 0.01 --model-cfg "${cfg[@]}" readout_at=every
