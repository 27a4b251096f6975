#!/usr/bin/env bash
# Accuracy versus MPS bond dimension χ at fixed n (issue 6), on row-level mnist10k, one seed:
#  (a) QLAM trained AND evaluated at its own χ (backend=mps, bond_dim=χ), for each χ in CHIS, and
#      the same model trained exact (statevector: at n=8 the exact MPS has χ = 2^(n/2) = 16);
#  (b) that exact-trained model evaluated truncated at each χ (qlam eval --bond-dim χ).
# Then a markdown table OUT/chi_sweep.md (test accuracy, mean discarded weight per sequence).
#
#   bash experiments/studies/chi_sweep.sh DATA_DIR OUT      # ≈ 30–40 min on 2 cores, run alone
#
# Model: the best QLAM so far (su4, encoding init 0.1; README row-level table), n=8, trained on a
# seeded 3,000-image subset for 8 epochs so that the four MPS runs fit the budget. Why n=8, not
# 16: one training step (batch 64 x 28 tokens, 1 thread, CPU time) takes 0.74 / 1.26 / 1.56 s at
# n=8, χ=1/4/8 (2,400 / 1,400 / 1,150 tokens/s) but 3.8 / 5.8 / 8.7 s at n=16, χ=8/16/32 (480 /
# 310 / 210 tokens/s), and exact n=16 needs χ=256: n=16 would get a third of the training or less.
# Environment overrides (e.g. a smoke test: DATASET=digits LIMIT=64 EPOCHS=1):
#   N (8), CHIS ("1 2 4 8"), LIMIT (3000), EPOCHS (8), SEED (0), DATASET (mnist10k), THREADS (2).
# Rerunning skips finished runs and evaluations, and resumes an interrupted training.
set -euo pipefail
DATA=${1?usage: chi_sweep.sh DATA_DIR OUT}
OUT=${2:?usage: chi_sweep.sh DATA_DIR OUT}
N=${N:-8}
CHIS=${CHIS:-1 2 4 8}
LIMIT=${LIMIT:-3000}
EPOCHS=${EPOCHS:-8}
SEED=${SEED:-0}
DATASET=${DATASET:-mnist10k}
THREADS=${THREADS:-2}
mkdir -p "$OUT/eval"
start=$(date +%s)
stamp() { echo "[chi_sweep +$(( $(date +%s) - start ))s] $*"; }

train() {  # NAME BACKEND BOND_DIM
  local run="$OUT/$1"
  if [[ -f "$run/metrics.json" ]] && grep -q '"complete": true' "$run/metrics.json"; then
    stamp "$1: finished before, skipped"; return
  fi
  if [[ -f "$run/last.pt" ]]; then
    stamp "$1: resuming"; qlam train --resume "$run" --no-progress; return
  fi
  stamp "$1: training"
  qlam train --model qlam --dataset "$DATASET" --data-dir "$DATA" --tokens row --epochs "$EPOCHS" \
    --limit-train "$LIMIT" --batch-size 64 --lr 0.01 --weight-decay 0.1 --seed "$SEED" \
    --threads "$THREADS" --no-progress --out "$OUT" --name "$1" \
    --model-cfg n_qubits="$N" backend="$2" bond_dim="$3" depth=2 readout=query+xyz readout_at=every \
    head_hidden=164 encoding_scale=0.1 entangler=su4
}

evaluate() {  # RUN CHI -> OUT/eval/RUN@CHI.json
  local json="$OUT/eval/$1@$2.json"
  [[ -s "$json" ]] && return
  stamp "eval $1 at χ=$2"
  qlam eval --checkpoint "$OUT/$1/best.pt" --data-dir "$DATA" --split test --bond-dim "$2" \
    --threads "$THREADS" --json > "$json.tmp"
  mv "$json.tmp" "$json"
}

# (a) trained and evaluated at its own χ
for chi in $CHIS; do
  train "qlam-n$N-chi$chi" mps "$chi"
  evaluate "qlam-n$N-chi$chi" "$chi"
done
train "qlam-n$N-exact" statevector none
# (b) the exact-trained model evaluated truncated, and on the exact MPS (== its statevector accuracy)
for chi in $CHIS exact; do
  evaluate "qlam-n$N-exact" "$chi"
done

stamp "writing $OUT/chi_sweep.md"
OUT="$OUT" N="$N" CHIS="$CHIS" LIMIT="$LIMIT" EPOCHS="$EPOCHS" SEED="$SEED" DATASET="$DATASET" python - <<'EOF'
import json, os
from pathlib import Path

out, n = Path(os.environ["OUT"]), os.environ["N"]
chis = os.environ["CHIS"].split()


def ev(run, chi):
    return json.loads((out / "eval" / f"{run}@{chi}.json").read_text())


def cells(e):
    return f"{100 * e['accuracy']:.2f} | {e['discarded_weight_mean']:.3g}"


exact_run = f"qlam-n{n}-exact"
sv = json.loads((out / exact_run / "metrics.json").read_text())["test"]
seq_len = json.loads((out / exact_run / "config.json").read_text())["data"]["seq_len"]
lines = [
    f"Row-level {os.environ['DATASET']}, QLAM n={n} (su4, depth 2, encoding init 0.1), "
    f"{os.environ['LIMIT']} training images, {os.environ['EPOCHS']} epochs, seed {os.environ['SEED']}; "
    f"test accuracy (%) and discarded weight per sequence (accumulated over its {seq_len} tokens, mean "
    f"over the {sv['n']} test images).",
    "",
    "| χ | trained & evaluated at χ | discarded | trained exact, evaluated at χ | discarded |",
    "|---|--:|--:|--:|--:|",
]
for chi in chis:
    lines.append(f"| {chi} | {cells(ev(f'qlam-n{n}-chi{chi}', chi))} | {cells(ev(exact_run, chi))} |")
lines.append(f"| exact | {100 * sv['acc']:.2f} (statevector) | 0 | {cells(ev(exact_run, 'exact'))} |")
(out / "chi_sweep.md").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
EOF
stamp "done"
