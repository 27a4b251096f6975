"""The anchor benchmark's three engines agree where nothing is truncated (tiny configuration)."""
import numpy as np
import torch
import pytest

from qlam_tn.experiments import bench_anchors as B


def test_engines_agree_without_truncation():
    n, chi = 6, 8  # 2^(6/2) = 8: exact
    angles = B.token_angles(n, 3)
    _, z_ours, d_ours = B.run_qlam(n, chi, angles)
    _, z_quimb, d_quimb = B.run_quimb(n, chi, angles)
    np.testing.assert_allclose(z_ours, z_quimb, atol=1e-10)
    assert d_ours < 1e-12 and abs(d_quimb) < 1e-10
    pytest.importorskip("qiskit_aer")
    _, z_aer, _ = B.run_aer(n, chi, angles)
    np.testing.assert_allclose(z_ours, z_aer, atol=1e-8)


def test_aer_runs_64_qubits():
    # One token from |0...0>: bonds reach 4, so chi=4 is exact and the engines must agree.
    pytest.importorskip("qiskit_aer")
    angles = B.token_angles(64, 1, seed=2)
    _, z_ours, d_ours = B.run_qlam(64, 4, angles)
    _, z_aer, _ = B.run_aer(64, 4, angles)
    assert d_ours < 1e-12
    np.testing.assert_allclose(z_ours, z_aer, atol=1e-8)


def test_truncated_discarded_weight_matches_quimb():
    n, chi = 8, 4
    angles = B.token_angles(n, 3, seed=1)
    _, z_ours, d_ours = B.run_qlam(n, chi, angles)
    _, z_quimb, d_quimb = B.run_quimb(n, chi, angles)
    assert d_ours > 1e-3
    assert abs(d_ours - d_quimb) < 1e-8
    np.testing.assert_allclose(z_ours, z_quimb, atol=1e-8)


def test_brickwork_order_covers_every_pair_once():
    for n in (2, 5, 6):
        pairs = B.brickwork_pairs(n)
        assert sorted(pairs) == list(range(n - 1))
        evens = [q for q in pairs if q % 2 == 0]
        assert pairs[:len(evens)] == sorted(evens) and pairs[len(evens):] == sorted(pairs[len(evens):], reverse=True)


def test_extras_count_every_split_and_keep_real_circuits_real():
    n, tokens = 6, 2
    angles = B.token_angles(n, tokens)
    # the compiled layer (its own record), mps_host's numpy kernels (spied in numpy), the torch path
    for host, compiled in ((True, True), (True, False), (False, True)):
        t_run, t_split, t_all, splits, qrs = B.decomposition_share(n, 4, angles, host=host, compiled=compiled)
        assert splits == tokens * (n - 1)  # one split per two-qubit gate
        # The brickwork order reaches each pair with at most one centre move (QR outside autograd).
        assert 0 < qrs <= tokens * (n - 1)
        assert t_run > 0 and 0 < t_split <= t_all
    assert B.run_qlam_ry_cz(n, 4, angles, torch.float64) > 0
    # A batch runs the same splits and moves sample by sample (mps_packed), each sample's recorded.
    _, _, _, splits_b, qrs_b = B.decomposition_share(n, 4, angles, batch=3)
    assert (splits_b, qrs_b) == (3 * splits, 3 * qrs)
    # Repeats time the same run again: the shapes are recorded once, not once per repeat.
    t_run, t_split, t_all, splits_r, qrs_r = B.decomposition_share(n, 4, angles, repeats=3)
    assert (splits_r, qrs_r) == (splits, qrs) and t_run > 0 and 0 < t_split <= t_all


def test_real_mode_ceiling_times_each_dtypes_own_decompositions(monkeypatch):
    """The real-vs-complex ceiling re-runs what each run recorded, in that run's dtype."""
    n, tokens = 6, 2
    angles = B.token_angles(n, tokens)
    seen = []
    real_job = B.compiled_job
    monkeypatch.setattr(B, "compiled_job", lambda rows, kind, threads=1, dtype=np.complex128:
                        seen.append((kind, len(rows), dtype)) or real_job(rows, kind, threads, dtype))
    for dtype, np_dtype in ((torch.float64, np.float64), (torch.complex128, np.complex128)):
        seen.clear()
        assert B.ry_cz_decompositions(n, 4, angles, dtype, 1) > 0
        assert seen[0] == (0, tokens * (n - 1), np_dtype)  # one split per CZ
        assert seen[1][0] == 1 and 0 < seen[1][1] <= tokens * (n - 1) and seen[1][2] == np_dtype


def test_median_time_takes_the_middle_timing():
    times = iter([3.0, 1.0, 2.0, (5.0, "z"), (4.0, "z"), (9.0, "z")])
    assert B.median_time(lambda: next(times), 3) == 2.0
    assert B.median_time(lambda: next(times), 3) == 5.0  # a runner's (seconds, ...) tuple
