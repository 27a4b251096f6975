"""``batch_map``: a batched decomposition split over threads returns exactly what one call does."""
import threading

import pytest
import torch

import qlam_tn as qt
from qlam_tn import parallel
from qlam_tn.linalg import svd, truncated_split


@pytest.fixture
def two_threads():
    old = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(old)


def _batch(b=6, m=24, n=24, dtype=torch.complex128, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, m, n, dtype=dtype, generator=g)


def test_split_batch_is_bitwise_one_call_and_uses_threads(two_threads):
    a = _batch()
    g = a @ a.mH
    seen = []

    def eigh(x):
        seen.append((threading.current_thread().name, x.shape[0]))
        return torch.linalg.eigh(x)

    w, v = parallel.batch_map(eigh, g, min_work=0)
    w0, v0 = torch.linalg.eigh(g)
    assert torch.equal(w, w0) and torch.equal(v, v0)
    assert sorted(b for _, b in seen) == [3, 3]  # two slices of the batch...
    assert any(name.startswith("qlam-linalg") for name, _ in seen)  # ...one of them on a worker
    q, r = parallel.batch_map(torch.linalg.qr, a, min_work=0)
    q0, r0 = torch.linalg.qr(a)
    assert torch.equal(q, q0) and torch.equal(r, r0)
    vecs = parallel.batch_map(lambda x: torch.linalg.eigh(x)[1], g, min_work=0)  # a tensor in, a tensor out
    assert torch.equal(vecs, v0)


def test_small_work_one_thread_or_one_sample_is_a_plain_call(two_threads):
    calls = []

    def qr(x):
        calls.append(x.shape[0])
        return torch.linalg.qr(x)

    parallel.batch_map(qr, _batch(b=6, m=4, n=4))  # 6·4·4·4 below MIN_WORK
    parallel.batch_map(qr, _batch(b=1), min_work=0)
    torch.set_num_threads(1)
    parallel.batch_map(qr, _batch(), min_work=0)
    assert calls == [6, 1, 6]


def test_threaded_split_and_svd_gradient_match_serial(two_threads, monkeypatch):
    a = _batch(b=4, m=16, n=16, seed=1)
    pol = qt.TruncationPolicy(max_bond=6)
    serial = truncated_split(a, pol, absorb="left")
    x = a.clone().requires_grad_(True)
    U, S, Vh = svd(x, absorb="right")
    (U[..., :3].abs().sum() + S.sum() + Vh.real.sum()).backward()
    g_serial = x.grad.clone()
    monkeypatch.setattr(parallel, "MIN_WORK", 0)
    threaded = truncated_split(a, pol, absorb="left")
    for s, t in zip(serial, threaded):
        assert torch.equal(s, t)
    x.grad = None
    U, S, Vh = svd(x, absorb="right")
    (U[..., :3].abs().sum() + S.sum() + Vh.real.sum()).backward()
    # Same factors, but concatenated slices are row-major where LAPACK's are column-major, so the
    # backward's matmuls may round differently: equal to rounding, not bitwise.
    torch.testing.assert_close(x.grad, g_serial, rtol=0, atol=1e-12)


def test_pool_is_rebuilt_after_fork_or_thread_change(monkeypatch):
    p1 = parallel._executor(1)
    assert parallel._executor(1) is p1
    assert parallel._executor(2) is not p1
    p2 = parallel._executor(2)
    monkeypatch.setattr(parallel.os, "getpid", lambda: -1)  # as in a forked child
    assert parallel._executor(2) is not p2
