#!/usr/bin/env bash
# Can the pixel-level cell fit its training data at all? QLAM (the cell of pixel_fashion.sh) and the
# GRU matched to it, trained on only 1,000 Fashion-MNIST images for 20 epochs (lr 0.01, seed 0),
# scored on 1,000 validation images: training accuracy near 100% says the model has the capacity and
# the optimiser finds it; training accuracy stuck low says the cell (or its optimisation) is the limit.
# Both runs side by side (2 cores, THREADS=1 each).
#
#   bash experiments/studies/pixel_fit_check.sh DATA_DIR [OUT]
set -euo pipefail
DATA=${1:?usage: pixel_fit_check.sh DATA_DIR [OUT]}
OUT=${2:-runs/pixel_fit}
common=(--dataset fashion_mnist --data-dir "$DATA" --tokens pixel --epochs 20 --batch-size 64 --limit-train 1000
        --limit-val 1000 --out "$OUT" --no-progress --threads "${THREADS:-1}" --seed 0 --lr 0.01)
qlam train --model qlam "${common[@]}" --name qlam-fit --weight-decay 0.1 --model-cfg n_qubits=8 backend=statevector \
  depth=2 readout=query+xyz encoding_scale=0.1 entangler=su4 readout_at=attn query_heads=8 head_hidden=48 &
qlam train --model gru "${common[@]}" --name gru-fit --match-params 4726 &
wait
