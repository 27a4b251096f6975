"""qlam bench circuits: its generators against their definitions, its engines against each other."""
import time

import numpy as np
import pytest
import torch

pytest.importorskip("qiskit_aer")

import qlam_tn as qt  # noqa: E402
from qlam_tn.experiments.bench import circuits as B  # noqa: E402


def test_random_3_regular_graphs_are_simple_and_3_regular():
    edges = B.random_3_regular(20, np.random.default_rng(3))
    assert len(edges) == 30 and len(set(edges)) == 30
    degree = np.bincount(np.array(edges).ravel(), minlength=20)
    assert (degree == 3).all() and all(a < b for a, b in edges)
    with pytest.raises(ValueError, match="even"):
        B.random_3_regular(7, np.random.default_rng(0))


def test_ghz_and_bernstein_vazirani_give_their_textbook_states():
    psi = qt.simulate(qt.Circuit.from_qiskit(B.transpiled(B.ghz(6))))
    amp = psi.to_dense()[0]
    expect = torch.zeros(64, dtype=torch.complex128)
    expect[0] = expect[63] = 2 ** -0.5
    assert torch.allclose(amp, expect, atol=1e-12)
    # the data qubits end in the secret string (the generator's first n-1 draws)
    n = 9
    rng = np.random.default_rng(0)
    secret = [rng.random() < 0.5 for _ in range(n - 1)]
    psi = qt.simulate(qt.Circuit.from_qiskit(B.transpiled(B.bernstein_vazirani(n))))
    z = psi.rdm1()[0]
    zq = (z[:, 0, 0] - z[:, 1, 1]).real
    assert torch.allclose(zq[:-1], torch.tensor([-1.0 if s else 1.0 for s in secret], dtype=zq.dtype), atol=1e-12)


@pytest.mark.parametrize("build", [lambda: B.qft(6), lambda: B.ripple_adder(3), lambda: B.qaoa(6, 2),
                                   lambda: B.heisenberg(6, 3)])
def test_every_engine_reads_the_same_expectations(build):
    r = B.measure("small", B.transpiled(build()), B.ENGINES, chi=64, cutoff=1e-12, repeats=1)
    for engine in ("before", "aer", "quimb"):
        assert np.allclose(r["qlam_tn"][1], r[engine][1], atol=1e-9), engine
    assert r["qlam_tn"][2] < 1e-20


def test_the_time_limit_stops_a_python_loop():
    t0 = time.perf_counter()
    with pytest.raises(B.OverTime):
        with B.time_limit(0.2):
            while True:
                pass
    assert time.perf_counter() - t0 < 5


def test_the_quick_suite_prints_a_row_per_circuit_and_the_geometric_mean(capsys):
    B.main(["--quick", "--only", "GHZ", "--repeats", "1", "--skip", "quimb"])
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("GHZ 30"))
    assert "—" in row  # quimb skipped
    assert any(line.startswith("geometric mean") for line in out.splitlines())
    assert B.geometric_mean([2.0, 8.0]) == pytest.approx(4.0)
