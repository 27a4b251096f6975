"""StateVector against an independent dense construction (Kronecker products in numpy)."""
import numpy as np
import pytest
import torch

import qlam_tn as qt
from circuits import random_circuit


def full_operator(gate: np.ndarray, qubits, n: int) -> np.ndarray:
    """The 2^n x 2^n matrix of ``gate`` on ``qubits`` (big-endian), built entry by entry."""
    if isinstance(qubits, int):
        return np.kron(np.kron(np.eye(2 ** qubits), gate), np.eye(2 ** (n - qubits - 1)))
    q0, q1 = qubits
    dim = 2 ** n
    out = np.zeros((dim, dim), dtype=complex)
    for col in range(dim):
        bits = [(col >> (n - 1 - k)) & 1 for k in range(n)]
        for a in range(2):
            for b in range(2):
                amp = gate[2 * a + b, 2 * bits[q0] + bits[q1]]
                if amp == 0:
                    continue
                nb = list(bits)
                nb[q0], nb[q1] = a, b
                row = int("".join(map(str, nb)), 2)
                out[row, col] += amp
    return out


@pytest.mark.parametrize("seed", range(6))
def test_statevector_matches_kronecker_construction(seed):
    n, batch = 5, 3
    ops = random_circuit(n, 30, seed, batch=batch)
    sv = qt.StateVector.zeros(n, batch=batch)
    for _, g, q in ops:
        sv.apply(g, q)
    for bidx in range(batch):
        psi = np.zeros(2 ** n, dtype=complex)
        psi[0] = 1
        for _, g, q in ops:
            gm = g.numpy() if g.dim() == 2 else g[bidx].numpy()
            psi = full_operator(gm, q, n) @ psi
        np.testing.assert_allclose(sv.to_dense()[bidx].numpy(), psi, atol=1e-12)
        # Observables from the dense vector.
        zz = full_operator(np.kron(np.diag([1, -1]), np.diag([1, -1])), (0, 3), n)
        np.testing.assert_allclose(sv.expect("Z0 Z3")[bidx].item(), np.vdot(psi, zz @ psi).real, atol=1e-12)
        t = psi.reshape(2, 2, -1)  # qubits 0, 1 | rest
        rdm_q1 = np.einsum("aix,ajx->ij", t, t.conj())
        np.testing.assert_allclose(sv.rdm1()[bidx, 1].numpy(), rdm_q1, atol=1e-12)
        s = np.linalg.svd(psi.reshape(4, -1), compute_uv=False)
        p = s ** 2
        p = p[p > 1e-300]
        np.testing.assert_allclose(sv.entropy()[bidx, 1].item(), -(p * np.log2(p)).sum(), atol=1e-10)


def test_statevector_sampling_chi_square():
    n = 3
    sv = qt.StateVector.zeros(n)
    sv.apply(qt.gates.RY(1.1), 0).apply(qt.gates.CNOT(), (0, 2)).apply(qt.gates.RY(0.6), 1)
    probs = (sv.to_dense()[0].abs() ** 2).numpy()
    shots = 20000
    bits = sv.sample(shots, generator=torch.Generator().manual_seed(7))[0].numpy()
    idx = bits @ (2 ** np.arange(n - 1, -1, -1))
    counts = np.bincount(idx, minlength=2 ** n)
    mask = probs > 0
    chi2 = (((counts - shots * probs) ** 2)[mask] / (shots * probs[mask])).sum()
    assert counts[~mask].sum() == 0
    assert chi2 < 20.3  # 99th percentile of chi-square with 7 dof
