"""Device handling: buffers follow the state's device and dtype (CUDA checks skip without a GPU)."""
import pytest
import torch

import qlam_tn as qt
from circuits import random_circuit, run


def test_float32_state_stays_float32():
    psi = qt.MPS.zeros(4, dtype=torch.float32)
    psi.apply(qt.gates.RY(torch.tensor(0.3)), 0).apply(qt.gates.CZ(), (0, 2))
    assert psi.dtype == torch.float32
    assert psi.discarded_weight.dtype == torch.float32
    psi.apply(qt.gates.RX(0.2), 1)  # complex128 gate on a float32 state -> complex64
    assert psi.dtype == torch.complex64
    assert psi.entropy().dtype == torch.float32


@pytest.mark.cuda
def test_cuda_mps_matches_cpu():
    n, batch = 8, 3
    ops = random_circuit(n, 40, seed=5, batch=batch)
    cpu = run(qt.MPS.zeros(n, batch=batch, max_bond=8), ops)
    gpu = run(qt.MPS.zeros(n, batch=batch, max_bond=8, device="cuda"), ops)
    assert gpu.device.type == "cuda" and gpu.discarded_weight.device.type == "cuda"
    torch.testing.assert_close(gpu.to_dense().cpu(), cpu.to_dense(), atol=1e-10, rtol=0)
    torch.testing.assert_close(gpu.expect("Z0 X3").cpu(), cpu.expect("Z0 X3"), atol=1e-10, rtol=0)
    torch.testing.assert_close(gpu.entropy().cpu(), cpu.entropy(), atol=1e-10, rtol=0)
    bits = gpu.sample(16, generator=torch.Generator(device="cuda").manual_seed(0))
    assert bits.device.type == "cuda" and bits.shape == (batch, 16, n)


@pytest.mark.cuda
def test_cuda_gradients_finite():
    th = torch.rand(6, dtype=torch.float64, device="cuda", requires_grad=True)
    psi = qt.MPS.zeros(6, max_bond=2, device="cuda", dtype=torch.float64)
    psi.apply_layer(qt.gates.RY(th))
    for q in range(5):
        psi.apply(qt.gates.CZ(), (q, q + 1))
    psi.apply_layer(qt.gates.RY(th))
    psi.expect("X2").sum().backward()
    assert torch.all(torch.isfinite(th.grad))
