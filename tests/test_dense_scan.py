"""The hand-differentiated dense scan against the plain autograd path it replaces."""
import pytest
import torch

from qlam_tn.dense_scan import dense_ry_scan, qubit_groups
from qlam_tn.models.qlam import QLAMClassifier


@pytest.mark.parametrize("n", [1, 3, 5, 8])
@pytest.mark.parametrize("kw", [dict(), dict(readout="xyz", readout_at="last"), dict(checkpoint_every=4),
                                dict(checkpoint_every=50), dict(entangler="su4", depth=3),
                                dict(readout_at="attn", checkpoint_every=4, query_heads=2)])
def test_fast_path_equals_reference(n, kw):
    x = torch.rand(3, 70, 2, dtype=torch.float64)
    torch.manual_seed(1)
    fast = QLAMClassifier(2, 5, n_qubits=n, backend="statevector", fast_path=True, **kw).double()
    torch.manual_seed(1)
    ref = QLAMClassifier(2, 5, n_qubits=n, backend="statevector", fast_path=False, **kw).double()
    if fast.qlam.pool is not None:  # random pooling scores, the same in both
        with torch.no_grad():
            fast.qlam.pool.weight.normal_()
            ref.qlam.pool.weight.copy_(fast.qlam.pool.weight)
    assert fast.qlam.uses_fast_path and not ref.qlam.uses_fast_path
    y_f, y_r = fast(x), ref(x)
    torch.testing.assert_close(y_f, y_r, atol=1e-12, rtol=0)
    y_f.pow(2).sum().backward()
    y_r.pow(2).sum().backward()
    for (name, p), q in zip(fast.named_parameters(), ref.parameters()):
        torch.testing.assert_close(p.grad, q.grad, atol=1e-11, rtol=0, msg=name)


def test_scan_gradcheck():
    torch.manual_seed(0)
    n = 3
    angles = torch.rand(2, 5, n, dtype=torch.float64, requires_grad=True)
    q, _ = torch.linalg.qr(torch.randn(8, 8, dtype=torch.float64))
    u = q.clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda a, m: dense_ry_scan(a, m, checkpoint_every=2), (angles, u))


def test_single_token_bloch_by_hand():
    a = torch.tensor([[[0.4, -1.3]]], dtype=torch.float64)
    b = dense_ry_scan(a, torch.eye(4, dtype=torch.float64))
    torch.testing.assert_close(b[0, 0, :, 0], torch.sin(a[0, 0]), atol=1e-14, rtol=0)
    torch.testing.assert_close(b[0, 0, :, 1], torch.cos(a[0, 0]), atol=1e-14, rtol=0)


def test_groups_cover_qubits():
    for n in range(1, 13):
        gs = qubit_groups(n)
        assert sum(g for _, g in gs) == n and all(g <= 6 for _, g in gs)
        assert [s for s, _ in gs] == [sum(g for _, g in gs[:i]) for i in range(len(gs))]


def test_bad_arguments():
    with pytest.raises(ValueError):
        dense_ry_scan(torch.rand(2, 3), torch.eye(4))
    with pytest.raises(ValueError):
        dense_ry_scan(torch.rand(2, 3, 2), torch.eye(8))
    with pytest.raises(TypeError):
        dense_ry_scan(torch.rand(2, 3, 2), torch.eye(4, dtype=torch.complex64))
