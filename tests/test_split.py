"""``truncated_split``: the eigh (Gram) fast path against numpy's SVD and against ``truncated_svd``."""
import numpy as np
import pytest
import torch

import qlam_tn as qt
from qlam_tn.linalg import truncated_split


def _random(b, m, n, dtype, rank=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(b, m, n, dtype=dtype, generator=g)
    if rank is not None:  # exactly rank-deficient
        a = torch.randn(b, m, rank, dtype=dtype, generator=g) @ torch.randn(b, rank, n, dtype=dtype, generator=g)
    return a


def _numpy_best(a, r):
    """Best rank-r approximation and discarded Σ s² per sample (numpy's SVD: the reference)."""
    out, disc = [], []
    for m in a.numpy():
        u, s, vh = np.linalg.svd(m, full_matrices=False)
        out.append((u[:, :r] * s[:r]) @ vh[:r])
        disc.append(float((s[r:] ** 2).sum()))
    return np.stack(out), np.array(disc)


@pytest.mark.parametrize("dtype", [torch.float64, torch.complex128])
@pytest.mark.parametrize("absorb", ["right", "left"])
@pytest.mark.parametrize("shape", [(3, 8, 8), (2, 4, 8), (2, 8, 4)])
def test_split_matches_numpy_svd(dtype, absorb, shape):
    a = _random(*shape, dtype)
    pol = qt.TruncationPolicy(max_bond=3, cutoff=1e-12)
    left, right, disc, kept2 = truncated_split(a, pol, absorb=absorb)
    ref, ref_disc = _numpy_best(a, 3)
    np.testing.assert_allclose((left @ right).numpy(), ref, atol=1e-10)
    np.testing.assert_allclose(disc.numpy(), ref_disc, rtol=1e-10)
    np.testing.assert_allclose((disc + kept2).numpy(), (a.abs() ** 2).sum((-2, -1)).numpy(), rtol=1e-12)
    iso = left.mH @ left if absorb == "right" else right @ right.mH
    eye = torch.eye(iso.shape[-1], dtype=dtype).expand_as(iso)
    assert torch.allclose(iso, eye, atol=1e-12)


@pytest.mark.parametrize("absorb", ["right", "left"])
def test_split_per_sample_ranks_and_padding(absorb):
    # Sample 0 has rank 1, sample 1 rank 6: the rsum2 cutoff keeps 1 and 6 values, the batch
    # shares width 6 and sample 0's centre is zero beyond its rank.
    a = torch.cat([_random(1, 6, 6, torch.float64, rank=1, seed=1), _random(1, 6, 6, torch.float64, seed=2)])
    pol = qt.TruncationPolicy(cutoff=1e-12)
    left, right, disc, kept2 = truncated_split(a, pol, absorb=absorb)
    assert left.shape[-1] == 6
    centre = right if absorb == "right" else left.mH
    assert torch.count_nonzero(centre[0, 1:]) == 0
    assert torch.allclose(left @ right, a, atol=1e-12)
    # Exact-rank input: what is cut is rounding, ~eps² of the weight (row norms, not eigenvalues).
    assert float(disc.max()) < 1e-26 * float(kept2.max())


@pytest.mark.parametrize("renormalize", [False, True])
def test_split_equals_truncated_svd(renormalize):
    a = _random(4, 16, 16, torch.complex128, seed=3)
    pol = qt.TruncationPolicy(max_bond=5, cutoff=1e-10, renormalize=renormalize)
    left, right, disc, kept2 = truncated_split(a, pol, absorb="right")
    U, S, Vh, d_ref, k_ref = qt.truncated_svd(a, pol, absorb="right")
    assert torch.allclose(left @ right, U @ (S.to(U.dtype).unsqueeze(-1) * Vh), atol=1e-12)
    assert torch.allclose(disc, d_ref, rtol=1e-10) and torch.allclose(kept2, k_ref, rtol=1e-12)


def test_split_uses_svd_under_autograd_and_for_fine_abs_cutoffs(mocker):
    eigh = mocker.spy(torch.linalg, "eigh")
    a = _random(2, 8, 8, torch.float64, seed=4)
    truncated_split(a, qt.TruncationPolicy(max_bond=4), absorb="right")
    assert eigh.call_count == 1
    # A cutoff of 1e-12 on s itself is below what A A† resolves: the SVD path.
    truncated_split(a, qt.TruncationPolicy(cutoff=1e-12, cutoff_mode="abs"), absorb="right")
    assert eigh.call_count == 1
    # Single precision cannot resolve the default cutoff through the Gram matrix: the SVD.
    for low in (torch.float32, torch.complex64):
        truncated_split(a.to(low), qt.TruncationPolicy(max_bond=4), absorb="right")
    assert eigh.call_count == 1
    # split="svd" forces the reference path.
    truncated_split(a, qt.TruncationPolicy(max_bond=4, split="svd"), absorb="right")
    assert eigh.call_count == 1
    with pytest.raises(ValueError, match="unknown split"):
        qt.TruncationPolicy(split="qr")
    # Autograd: the SVD with the stable backward, and the same forward values.
    x = a.clone().requires_grad_(True)
    left, right, *_ = truncated_split(x, qt.TruncationPolicy(max_bond=4), absorb="left")
    assert eigh.call_count == 1
    (left @ right).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    l0, r0, *_ = truncated_split(a, qt.TruncationPolicy(max_bond=4), absorb="left")
    assert torch.allclose((left @ right).detach(), l0 @ r0, atol=1e-12)


def test_split_mixed_ranks_discard_matches_numpy():
    # Ranks 2 (exact) and 4 (max_bond) in one batch: the masked path's discarded weight per sample.
    a = torch.cat([_random(1, 8, 8, torch.complex128, rank=2, seed=5), _random(1, 8, 8, torch.complex128, seed=6)])
    left, right, disc, kept2 = truncated_split(a, qt.TruncationPolicy(max_bond=4, cutoff=1e-12), absorb="left")
    ref0, _ = _numpy_best(a[:1], 2)
    ref1, d1 = _numpy_best(a[1:], 4)
    out = (left @ right).numpy()
    np.testing.assert_allclose(out[0], ref0[0], atol=1e-10)
    np.testing.assert_allclose(out[1], ref1[0], atol=1e-10)
    assert float(disc[0]) < 1e-24 and disc[1].item() == pytest.approx(d1[0], rel=1e-10)
    assert torch.count_nonzero(left[0, :, 2:]) == 0  # sample 0's centre is zero beyond its rank
    np.testing.assert_allclose((disc + kept2).numpy(), (a.abs() ** 2).sum((-2, -1)).numpy(), rtol=1e-12)


def _quimb_rank(s_desc, cutoff, mode, max_bond):
    """quimb's ``decomp`` cut, one spectrum, written out as plain Python on descending values:
    abs keeps s > cutoff, rel s > cutoff·s_max, sum2 / rsum2 drop the smallest while their Σ s²
    stays <= cutoff (· Σ s² for rsum2); at least one kept, max_bond caps."""
    s = [float(v) for v in s_desc]
    k = len(s)
    if cutoff > 0.0:
        if mode == "abs":
            r = sum(v > cutoff for v in s)
        elif mode == "rel":
            r = sum(v > cutoff * s[0] for v in s)
        else:
            target = cutoff if mode == "sum2" else cutoff * sum(v * v for v in s)
            r, tail = k, 0.0
            while r > 0 and tail + s[r - 1] ** 2 <= target:
                tail += s[r - 1] ** 2
                r -= 1
    else:
        r = k
    return max(1, min(r, max_bond or k))


@pytest.mark.parametrize("mode", ["abs", "rel", "sum2", "rsum2"])
@pytest.mark.parametrize("max_bond", [None, 3])
def test_rank_rule_matches_quimbs_definition(mode, max_bond):
    # The one rank rule (ascending weights, one cumsum), as every route calls it — batched torch
    # (TruncationPolicy.ranks, the Gram split), one numpy spectrum (mps_host) — against quimb's
    # definitions written out by hand, on spectra with exact zeros and ties (cutoffs off the ties'
    # exact boundaries: there sum orders may round either way).
    from qlam_tn.linalg import rank_rule
    g = torch.Generator().manual_seed(7)
    s = torch.rand(64, 10, generator=g, dtype=torch.float64) ** 6
    s[:8, 5:] = 0.0
    s[8:16] = s[8:16, :1]  # all tied
    s, _ = s.sort(-1, descending=True)
    for cutoff in (0.0, 1e-3, 0.05, 0.25):
        pol = qt.TruncationPolicy(max_bond=max_bond, cutoff=cutoff, cutoff_mode=mode)
        want = [_quimb_rank(row, cutoff, mode, max_bond) for row in s.tolist()]
        assert pol.ranks(s).tolist() == want, (mode, cutoff)
        asc = (s * s).flip(-1)
        assert rank_rule(asc, asc.cumsum(-1), pol).tolist() == want, (mode, cutoff)
        got_np = [int(rank_rule(row, np.cumsum(row), pol)) for row in asc.numpy()]
        assert got_np == want, (mode, cutoff)


def test_truncation_error_adds_up_and_matches_a_hand_calculation():
    from qlam_tn.linalg import TruncationError
    a = TruncationError.of_split(torch.tensor([0.1, 0.0], dtype=torch.float64), torch.tensor([0.9, 0.0], dtype=torch.float64))
    b = TruncationError.of_split(0.2, 0.6)  # a one-sample kernel's floats
    total = a + b
    np.testing.assert_allclose(total.discarded.numpy(), [0.3, 0.2])
    # ε = 0.1 / 1.0 then 0.2 / 0.8; 0 / 0 counts as no loss
    np.testing.assert_allclose(total.fidelity.numpy(), [0.9 * 0.75, 0.75], rtol=1e-14)
    assert TruncationError.of_split(0.0, 0.0).log_fidelity == 0.0
    # cos(θ/2)|00> + sin(θ/2)|11> cut to one Schmidt value keeps cos²(θ/2), discards sin²(θ/2)
    theta = 0.7
    psi = qt.MPS.zeros(2, max_bond=1, dtype=torch.float64)
    psi.apply(qt.gates.RY(theta), 0).apply(qt.gates.CNOT(), (0, 1))
    err = psi.truncation
    assert isinstance(err, TruncationError)
    assert float(err.discarded) == pytest.approx(np.sin(theta / 2) ** 2, rel=1e-12)
    assert float(err.fidelity) == pytest.approx(np.cos(theta / 2) ** 2, rel=1e-12)
