#!/usr/bin/env bash
# Does a pooled QLAM forward cost more per token on long sequences? The `qlam scale` T sweep's model
# (MPS n=8, χ=8, B=1, readout_at=every, no_grad) timed in one process at T = 512, 8192, 512 again,
# with readout_at=last beside it (no per-token features kept). Run it alone.
#
#   bash experiments/studies/pooled_forward_check.sh
set -euo pipefail
python - <<'PY'
import time, torch
torch.set_num_threads(2)
from qlam_tn.models import QLAMClassifier
for readout_at in ("every", "last"):
    torch.manual_seed(0)
    model = QLAMClassifier(1, 10, n_qubits=8, backend="mps", bond_dim=8, readout_at=readout_at, head_hidden=74)
    with torch.no_grad():
        model(torch.rand(1, 64, 1))  # warm-up
        for T in (512, 8192, 512):
            x = torch.rand(1, T, 1)
            t0 = time.perf_counter()
            model(x)
            print(f"readout_at={readout_at} T={T}: {(time.perf_counter() - t0) / T * 1e3:.2f} ms/token", flush=True)
PY
