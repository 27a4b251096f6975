"""The anchor benchmark's three engines agree where nothing is truncated (tiny configuration)."""
import numpy as np
import torch
import pytest

from qlam_tn.experiments.bench import anchors as B


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
        pairs = B.cz_pairs(n)
        assert sorted(pairs) == [(q, q + 1) for q in range(n - 1)]
        firsts = [q for q, _ in pairs]
        evens = [q for q in firsts if q % 2 == 0]
        assert firsts[:len(evens)] == sorted(evens)
        assert firsts[len(evens):] == sorted(firsts[len(evens):], reverse=True)
    # the order qlam_tn.memory.brickwork applies a layer in: written out for n = 7
    assert B.cz_pairs(7) == [(0, 1), (2, 3), (4, 5), (5, 6), (3, 4), (1, 2)]


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


def test_the_command_prints_both_tables_as_markdown(capsys):
    """One tiny point, two engines, extras included: a provenance line and two markdown tables."""
    pytest.importorskip("qiskit_aer")  # the extras time Aer
    B.main(["--n", "6", "--chi", "4", "--tokens", "2", "--engines", "qlam_tn", "quimb", "--repeats", "1", "--extras",
            "--markdown"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("`") and "commit" in lines[0]
    rows = [line.split(" | ") for line in lines if line.startswith("| 6 | 4 |")]
    assert [r[2] for r in rows[:2]] == ["qlam_tn", "quimb"]
    assert rows[0][4] == "1.00"  # qlam_tn's time over its own
    assert float(rows[1][5]) < 1e-10  # quimb's <Z_q> agree with qlam_tn's (chi 4 is exact at n=6, 2 tokens)
    assert len(rows) == 3 and sum(line.startswith("|---|") for line in lines) == 2  # the extras' table
