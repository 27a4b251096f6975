#!/usr/bin/env bash
# Row-level mnist10k (T=28, F=28): QLAM against LSTM, GRU, Transformer and SSM at a matched
# parameter budget (6,282 = a GRU with hidden size 32), 3 seeds each, then one report.
#
#   bash experiments/studies/row_mnist10k.sh DATA_DIR [OUT] [EPOCHS]
#
# DATA_DIR holds mnist10k's IDX files (or its parent). Runs one training at a time.
set -euo pipefail
DATA=${1:?usage: row_mnist10k.sh DATA_DIR [OUT] [EPOCHS]}
OUT=${2:-runs/row_mnist10k}
EPOCHS=${3:-20}
BUDGET=6282
common=(--dataset mnist10k --data-dir "$DATA" --tokens row --epochs "$EPOCHS" --batch-size 64
        --out "$OUT" --no-progress --threads 2)
for seed in 0 1 2; do
  qlam train --model qlam "${common[@]}" --seed "$seed" --name "qlam-s$seed" --lr 0.03 --weight-decay 0.1 \
    --model-cfg n_qubits=8 backend=statevector depth=2 readout=query+xyz readout_at=every head_hidden=164
  for model in gru lstm transformer ssm; do
    qlam train --model "$model" "${common[@]}" --seed "$seed" --name "$model-s$seed" --lr 0.01 \
      --match-params "$BUDGET"
  done
done
qlam report "$OUT" --out "$OUT/report.md" --plot "$OUT/report.png"
