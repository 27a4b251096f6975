#!/usr/bin/env bash
# Row-level Fashion-MNIST (T=28, F=28): the best QLAM cell (8 qubits, statevector, su4 entanglers,
# encoding init 0.1, 8 query heads, attention pooling; 6,697 parameters) against LSTM, GRU,
# Transformer and SSM matched to its parameter count, 3 seeds each, then one report.
# Only the Fashion-MNIST training files are at hand, so scores are on a validation split carved
# from them (10%, stratified, by seed); training uses a seeded subset of LIMIT images of the rest.
#
#   bash experiments/studies/row_fashion.sh DATA_DIR [OUT] [EPOCHS] [LIMIT]
#
# THREADS (default 2) sets torch threads per run. Runs one training at a time.
set -euo pipefail
DATA=${1:?usage: row_fashion.sh DATA_DIR [OUT] [EPOCHS] [LIMIT]}
OUT=${2:-runs/row_fashion}
EPOCHS=${3:-10}
LIMIT=${4:-20000}
BUDGET=6697
common=(--dataset fashion_mnist --data-dir "$DATA" --tokens row --epochs "$EPOCHS" --batch-size 64
        --limit-train "$LIMIT" --out "$OUT" --no-progress --threads "${THREADS:-2}")
for seed in 0 1 2; do
  qlam train --model qlam "${common[@]}" --seed "$seed" --name "qlam-attn-h8-s$seed" --lr 0.01 --weight-decay 0.1 \
    --model-cfg n_qubits=8 backend=statevector depth=2 readout=query+xyz encoding_scale=0.1 entangler=su4 \
    readout_at=attn query_heads=8 head_hidden=48
  for model in gru lstm transformer ssm; do
    qlam train --model "$model" "${common[@]}" --seed "$seed" --name "$model-s$seed" --lr 0.01 \
      --match-params "$BUDGET"
  done
done
qlam report "$OUT" --out "$OUT/report.md" --plot "$OUT/report.png"
