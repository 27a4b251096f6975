"""`qlam entangle` on a tiny configuration: bounds, the exact limit, the Page value, the files."""
import json
import math

import torch

from qlam_tn.experiments import entangle as E
from qlam_tn.models.qlam import QLAM


def test_page_value_by_hand():
    # two qubits: Σ_{j=3}^{4} 1/j - (2-1)/(2·2) = 1/3 nats
    assert abs(E.page_entropy_bits(1, 2) - (1 / 3) / math.log(2)) < 1e-12
    assert E.page_entropy_bits(8, 16) < 8 and E.page_entropy_bits(8, 16) > 7.2  # ≈ 8 - 1/(2 ln 2)


def test_trace_bounds_and_exact_limit():
    torch.manual_seed(0)
    x = torch.randn(1, 30, 3, dtype=torch.float64)
    n = 6
    capped, _, disc = E.trace(n, 2, x)
    assert torch.all(capped <= 1 + 1e-9)  # log2 χ
    assert disc[-1] > 0
    exact, r2, _ = E.trace(n, None, x)
    bound = torch.tensor([min(k + 1, n - k - 1) for k in range(n - 1)], dtype=exact.dtype)
    assert torch.all(exact <= bound + 1e-9) and torch.all(r2 <= exact + 1e-9)
    # the same memory on the dense statevector gives the same entropies
    torch.manual_seed(0)
    model = QLAM(3, n_qubits=n, backend="statevector", real=True).double()
    gates = model.token_gates()
    mem = model.new_memory(1, "cpu")
    for t in range(x.shape[1]):
        model.update(mem, x[:, t], gates)
    torch.testing.assert_close(exact[-1], mem.entropy()[0], atol=1e-6, rtol=0)


def test_cli_writes_every_artefact(tmp_path):
    out = tmp_path / "ent"
    assert E.main(["--dataset", "digits", "--tokens", "row", "--n", "4", "--chi", "2", "exact",
                   "--T", "24", "--out", str(out)]) == 0
    for name in ("config.json", "env.json", "trace.csv", "summary.json", "centre_entropy.png", "heatmap.png",
                 "discarded.png"):
        assert (out / name).is_file(), name
    summary = json.loads((out / "summary.json").read_text())
    assert [s["chi"] for s in summary] == [2, None]
    lines = (out / "trace.csv").read_text().strip().splitlines()
    assert len(lines) == 1 + 2 * 24 * 3  # header + (chi values x tokens x bonds)
