#!/usr/bin/env bash
# Pilots for the pixel-level QLAM cell on Fashion-MNIST (T=784), same protocol as
# pixel_lr_pilot.sh: 3,000 training images, 3 epochs, seed 0, lr 0.03 (that pilot's best), validation
# accuracy. One seed each: a hint, not a result. Each variant changes one thing of the cell of
# pixel_fashion.sh; VARIANTS picks the runs (default: all, in the order below), two at a time.
#
#   bash experiments/studies/pixel_cell_pilot.sh DATA_DIR [OUT]
set -euo pipefail
DATA=${1:?usage: pixel_cell_pilot.sh DATA_DIR [OUT]}
OUT=${2:-runs/pix_tune}
common=(--dataset fashion_mnist --data-dir "$DATA" --tokens pixel --epochs 3 --batch-size 64 --limit-train 3000
        --out "$OUT" --no-progress --threads "${THREADS:-1}" --seed 0 --lr 0.03)
cell=(n_qubits=8 backend=statevector readout=query+xyz query_heads=8 head_hidden=48 readout_at=attn)
# name -> "train flags | cell options" (the baseline is pixel_lr_pilot.sh's attn-lr0.03)
declare -A V=(
  [pos-lr0.03]="--weight-decay 0.1 | depth=2 entangler=su4 encoding_scale=0.1 pool_positions=784"
  [pos-enc0.3-lr0.03]="--weight-decay 0.1 | depth=2 entangler=su4 encoding_scale=0.3 pool_positions=784"
  [mem-lr0.03]="--weight-decay 0.1 | depth=2 entangler=su4 encoding_scale=0.1 pool_memory=true"
  [mempos-lr0.03]="--weight-decay 0.1 | depth=2 entangler=su4 encoding_scale=0.1 pool_memory=true pool_positions=784"
  [wd0-lr0.03]="--weight-decay 0 | depth=2 entangler=su4 encoding_scale=0.1"
  [enc0.03-lr0.03]="--weight-decay 0.1 | depth=2 entangler=su4 encoding_scale=0.03"
  [depth1-lr0.03]="--weight-decay 0.1 | depth=1 entangler=su4 encoding_scale=0.1"
  [cz-lr0.03]="--weight-decay 0.1 | depth=2 entangler=cz encoding_scale=0.1"
  # second round: the gentler-memory changes above, combined
  [d1-enc0.03-lr0.03]="--weight-decay 0.1 | depth=1 entangler=su4 encoding_scale=0.03"
  [d1-enc0.03-cz-lr0.03]="--weight-decay 0.1 | depth=1 entangler=cz encoding_scale=0.03"
  [wd0.3-lr0.03]="--weight-decay 0.3 | depth=2 entangler=su4 encoding_scale=0.1"
  [enc0.01-lr0.03]="--weight-decay 0.1 | depth=2 entangler=su4 encoding_scale=0.01"
  # third round: the gentle cell (d1-enc0.03-cz) read per segment of the sequence instead of
  # pooled over all of it (readout_probe.py: a linear probe of the memory's Bloch vectors per row
  # reads 76-80% where the pooled readout reads 70%); head sized to the 4.7k parameter budget
  [seg28-h8-lr0.03]="--weight-decay 0.1 | depth=1 entangler=cz encoding_scale=0.03 readout=xyz readout_at=segments segments=28 segment_length=28 head_hidden=8"
  [seg14-h16-lr0.03]="--weight-decay 0.1 | depth=1 entangler=cz encoding_scale=0.03 readout=xyz readout_at=segments segments=14 segment_length=56 head_hidden=16"
  # the same and the gentle cell with a BatchNorm head: per-feature standardisation, as the probe's
  [seg28-h8-bn-lr0.03]="--weight-decay 0.1 | depth=1 entangler=cz encoding_scale=0.03 readout=xyz readout_at=segments segments=28 segment_length=28 head_hidden=8 head_norm=batch"
  [seg14-h16-bn-lr0.03]="--weight-decay 0.1 | depth=1 entangler=cz encoding_scale=0.03 readout=xyz readout_at=segments segments=14 segment_length=56 head_hidden=16 head_norm=batch"
  [d1-enc0.03-cz-bn-lr0.03]="--weight-decay 0.1 | depth=1 entangler=cz encoding_scale=0.03 head_norm=batch"
)
ORDER="pos-lr0.03 pos-enc0.3-lr0.03 mem-lr0.03 mempos-lr0.03 wd0-lr0.03 enc0.03-lr0.03 depth1-lr0.03 cz-lr0.03
       d1-enc0.03-lr0.03 d1-enc0.03-cz-lr0.03 wd0.3-lr0.03 enc0.01-lr0.03 seg28-h8-lr0.03 seg14-h16-lr0.03
       seg28-h8-bn-lr0.03 seg14-h16-bn-lr0.03 d1-enc0.03-cz-bn-lr0.03"
for name in ${VARIANTS:-$ORDER}; do
  spec=${V[$name]:?unknown variant $name}
  flags=${spec%%|*}; opts=${spec##*|}
  # shellcheck disable=SC2086  # flags and opts are word lists
  qlam train --model qlam "${common[@]}" $flags --name "$name" --model-cfg "${cell[@]}" $opts &
  while [ "$(jobs -rp | wc -l)" -ge "${PARALLEL:-2}" ]; do sleep 5; done
done
wait
