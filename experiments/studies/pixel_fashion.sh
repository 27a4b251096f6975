#!/usr/bin/env bash
# Pixel-level Fashion-MNIST (T=784, one pixel per token): the row-level study's best QLAM cell
# (8 qubits, statevector fast path, su4 entanglers, encoding init 0.1, 8 query heads, attention
# pooling; 4,726 parameters at F=1) against LSTM, GRU, Transformer and SSM matched to its parameter
# count. Scores are on a validation split carved from the training files (10%, stratified, by
# seed); training uses a seeded subset of LIMIT images of the rest.
#
#   bash experiments/studies/pixel_fashion.sh DATA_DIR [OUT] [EPOCHS] [LIMIT]
#
# RUNS (default: every model for seeds 0 1 2) lists MODEL:SEED pairs to train, in order, so the
# study can be split into queues that run side by side, e.g. on 2 cores with THREADS=1:
#   RUNS="qlam:0 qlam:1 qlam:2" THREADS=1 bash .../pixel_fashion.sh DATA &
#   RUNS="gru:0 lstm:0 ssm:0 transformer:0 ..." THREADS=1 bash .../pixel_fashion.sh DATA &
# then `qlam report OUT --out OUT/report.md --plot OUT/report.png`.
# QLAM variants beyond the default (lr 0.01), not in the default list: qlam-lr0.03 (lr 0.03) and
# qlam-pos (lr 0.03 and a learned pooling-score bias per position, pool_positions=784), and
# qlam-gentle (lr 0.01; depth 1, fixed CZ + trainable RY entangler, encoding init 0.03: the best
# combination of pixel_cell_pilot.sh), and qlam-seg (the gentle cell read per segment of 56 tokens,
# two image rows: readout_at=segments, Bloch vectors only, BatchNorm head of 16; 4,242 parameters),
# and qlam-row (the gentle cell read per image row, 28 segments of 28 tokens, through a BatchNorm
# and one linear layer, head_hidden=0: the end-to-end form of the per-row probe; 4,514 parameters),
# qlam-row-frozen (the same with the memory frozen at its initialisation, --memory-lr-scale 0:
# only the 4,490-parameter readout trains, a random-reservoir QLAM) and qlam-row-slow (the memory
# at a tenth of the head's learning rate, --memory-lr-scale 0.1), and qlam-row-frozen-t (frozen, with
# the head's optimiser tuned on cached features by frozen_head_sweep.py on a holdout of the
# training images: lr 0.03, no weight decay), and qlam-row-frozen-c (qlam-row-frozen-t with
# --cache-memory: the frozen memory runs once over the data, then only the head trains, so EPOCHS
# can be many; its encoding scale is ENC, default 0.03, the other row variants' value), and
# qlam-row-lbfgs (the same cached frozen memory, its linear head fitted by L-BFGS on all the
# cached features at once, 50 iterations an epoch, L2 penalty 1/54000: scikit-learn's default
# logistic regression, C = 1, on 54,000 images).
set -euo pipefail
DATA=${1:?usage: pixel_fashion.sh DATA_DIR [OUT] [EPOCHS] [LIMIT]}
OUT=${2:-runs/pixel_fashion}
EPOCHS=${3:-10}
LIMIT=${4:-10000}
BUDGET=4726
DEFAULT_RUNS=""
for seed in 0 1 2; do
  for model in qlam gru lstm transformer ssm; do DEFAULT_RUNS+="$model:$seed "; done
done
common=(--dataset fashion_mnist --data-dir "$DATA" --tokens pixel --epochs "$EPOCHS" --batch-size 64
        --limit-train "$LIMIT" --out "$OUT" --no-progress --threads "${THREADS:-2}")
cell=(n_qubits=8 backend=statevector readout=query+xyz readout_at=attn query_heads=8 head_hidden=48)
su4=(depth=2 entangler=su4 encoding_scale=0.1)
for run in ${RUNS:-$DEFAULT_RUNS}; do
  model=${run%%:*}; seed=${run##*:}
  if [ "$model" = qlam ]; then
    qlam train --model qlam "${common[@]}" --seed "$seed" --name "qlam-attn-h8-s$seed" --lr 0.01 --weight-decay 0.1 \
      --model-cfg "${cell[@]}" "${su4[@]}"
  elif [ "$model" = qlam-lr0.03 ]; then
    qlam train --model qlam "${common[@]}" --seed "$seed" --name "qlam-attn-h8-lr0.03-s$seed" --lr 0.03 \
      --weight-decay 0.1 --model-cfg "${cell[@]}" "${su4[@]}"
  elif [ "$model" = qlam-pos ]; then
    qlam train --model qlam "${common[@]}" --seed "$seed" --name "qlam-attn-h8-pos-lr0.03-s$seed" --lr 0.03 \
      --weight-decay 0.1 --model-cfg "${cell[@]}" "${su4[@]}" pool_positions=784
  elif [ "$model" = qlam-gentle ]; then
    qlam train --model qlam "${common[@]}" --seed "$seed" --name "qlam-attn-h8-d1-cz-enc0.03-s$seed" --lr 0.01 \
      --weight-decay 0.1 --model-cfg "${cell[@]}" depth=1 entangler=cz encoding_scale=0.03
  elif [ "$model" = qlam-seg ]; then
    qlam train --model qlam "${common[@]}" --seed "$seed" --name "qlam-seg14-bn-s$seed" --lr 0.01 \
      --weight-decay 0.1 --model-cfg "${cell[@]}" depth=1 entangler=cz encoding_scale=0.03 readout=xyz \
      readout_at=segments segments=14 segment_length=56 head_hidden=16 head_norm=batch
  elif [[ "$model" = qlam-row* ]]; then
    lr=0.01; wd=0.1; extra=()
    case $model in qlam-row) scale=1; name=qlam-row28-lin ;; qlam-row-frozen) scale=0; name=qlam-row28-lin-frozen ;;
                   qlam-row-slow) scale=0.1; name=qlam-row28-lin-mem0.1 ;;
                   qlam-row-frozen-t) scale=0; name=qlam-row28-lin-frozen-lr0.03-wd0; lr=0.03; wd=0 ;;
                   qlam-row-frozen-c) scale=0; name=qlam-row28-lin-frozen-lr0.03-wd0-enc${ENC:-0.03}-e$EPOCHS
                                      lr=0.03; wd=0; extra=(--cache-memory) ;;
                   qlam-row-lbfgs) scale=0; name=qlam-row28-lin-frozen-lbfgs-enc${ENC:-0.03}-e$EPOCHS; lr=1; wd=1.85e-5
                                   extra=(--cache-memory --optimizer lbfgs --lbfgs-iters 50 --dtype float64) ;;
                   *) echo "unknown variant $model" >&2; exit 2 ;; esac
    qlam train --model qlam "${common[@]}" --seed "$seed" --name "$name-s$seed" --lr "$lr" \
      --weight-decay "$wd" --memory-lr-scale "$scale" "${extra[@]}" --model-cfg "${cell[@]}" depth=1 entangler=cz \
      encoding_scale="${ENC:-0.03}" readout=xyz readout_at=segments segments=28 segment_length=28 head_hidden=0 head_norm=batch
  else
    qlam train --model "$model" "${common[@]}" --seed "$seed" --name "$model-s$seed" --lr 0.01 \
      --match-params "$BUDGET"
  fi
done
