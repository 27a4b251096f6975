"""``StateVector``: the exact dense batched backend.

It holds ``psi`` of shape ``(B, 2, 2, ..., 2)`` (one axis per qubit, qubit 0 first, so the
flattened index is big-endian). It is the reference the MPS is tested against, and the fast
path for small ``n`` (a 2-qubit gate costs ``O(B 2^n)``, independent of entanglement).
"""
from __future__ import annotations

from typing import Dict, List, Sequence

import torch

from .contraction import contract
from .measure import pauli_matrix
from .state import QuantumState, as_amplitudes, check_batch, check_dtype, check_n_qubits, complex_dtype_of

__all__ = ["StateVector", "MAX_STATE_BYTES", "state_bytes"]

# The largest dense state ``zeros`` allocates (all samples together): raise it to go further on a
# machine with the memory. 2^29 complex128 amplitudes (n=29, B=1) fit; n=30 does not.
MAX_STATE_BYTES = 8 * 2 ** 30


def state_bytes(n_qubits: int, batch: int, dtype: torch.dtype) -> int:
    """Bytes of ``batch`` dense ``n_qubits``-qubit states in ``dtype``."""
    return batch * 2 ** n_qubits * torch.empty((), dtype=dtype).element_size()


def check_size(n_qubits: int, batch: int, dtype: torch.dtype) -> None:
    """Refuse a dense state larger than ``MAX_STATE_BYTES``, before allocating it."""
    need = state_bytes(n_qubits, batch, dtype)
    if need > MAX_STATE_BYTES:
        raise ValueError(f"a dense state of {batch} x 2^{n_qubits} {dtype} amplitudes needs {need / 2 ** 30:.3g} GiB, "
                         f"over qlam_tn.statevector.MAX_STATE_BYTES = {MAX_STATE_BYTES / 2 ** 30:.3g} GiB: use the MPS "
                         f"backend, or raise the limit on a machine with the memory")

class StateVector(QuantumState):
    """Exact batched state vector.

    Attributes:
        psi: ``(B,) + (2,) * n`` amplitudes.
        discarded_weight: ``(B,)`` zeros (nothing is ever truncated); kept for interface parity.
    """

    def __init__(self, psi: torch.Tensor):
        if psi.dim() < 2 or any(s != 2 for s in psi.shape[1:]):
            raise ValueError(f"psi must have shape (B, 2, ..., 2), got {tuple(psi.shape)}")
        check_dtype(psi.dtype)
        self.psi = psi
        self.n_qubits = psi.dim() - 1
        self.batch = psi.shape[0]
        self.discarded_weight = torch.zeros(self.batch, dtype=self._real_dtype, device=psi.device)

    # ------------------------------------------------------------------ constructors
    @classmethod
    def zeros(cls, n_qubits: int, batch: int = 1, dtype=torch.complex128, device="cpu") -> "StateVector":
        """``|0...0>`` for every batch element."""
        n = check_n_qubits(n_qubits)
        b = check_batch(batch)
        check_dtype(dtype)
        check_size(n, b, dtype)
        psi = torch.zeros((b,) + (2,) * n, dtype=dtype, device=device)
        psi.view(b, -1)[:, 0] = 1
        return cls(psi)

    @classmethod
    def from_dense(cls, amplitudes: torch.Tensor) -> "StateVector":
        """From ``(2**n,)`` or ``(B, 2**n)`` amplitudes (big-endian)."""
        a, n = as_amplitudes(amplitudes)
        return cls(a.reshape((a.shape[0],) + (2,) * n))

    # ------------------------------------------------------------------ properties
    @property
    def dtype(self) -> torch.dtype:
        return self.psi.dtype

    @property
    def device(self) -> torch.device:
        return self.psi.device

    def to_dense(self) -> torch.Tensor:
        """``(B, 2**n)`` amplitudes."""
        return self.psi.reshape(self.batch, -1)

    def norm(self) -> torch.Tensor:
        """``(B,)`` 2-norm."""
        return torch.linalg.vector_norm(self.to_dense(), dim=-1)

    def copy(self) -> "StateVector":
        """A shallow copy: the amplitude tensor is shared (gates never modify it in place)."""
        return StateVector(self.psi)

    # ------------------------------------------------------------------ gates
    def _convert(self, dtype) -> None:
        self.psi = self.psi.to(dtype)

    def _apply_1q(self, gate, q, unitary: bool = True):
        b = self.batch
        v = self.psi.reshape(b, 2 ** q, 2, -1)
        eq = "bij,bxjy->bxiy" if gate.dim() == 3 else "ij,bxjy->bxiy"
        self.psi = contract(eq, gate, v).reshape(self.psi.shape)

    def _apply_2q(self, gate, q0, q1):
        b = self.batch
        g = gate.reshape(gate.shape[:-2] + (2, 2, 2, 2))
        moved = self.psi.movedim((1 + q0, 1 + q1), (1, 2))
        eq = "bijkl,bkly->bijy" if g.dim() == 5 else "ijkl,bkly->bijy"
        out = contract(eq, g, moved.reshape(b, 2, 2, -1)).reshape(moved.shape)
        self.psi = out.movedim((1, 2), (1 + q0, 1 + q1))

    def _apply_layer(self, gates, unitary: bool = True):
        for q in range(self.n_qubits):
            self._apply_1q(gates[..., q, :, :], q)

    # ------------------------------------------------------------------ measurement
    def _expect_ops(self, ops: Dict[int, str]) -> torch.Tensor:
        mats = {q: pauli_matrix(p, self.dtype, self.device) for q, p in ops.items()}
        dtype = complex_dtype_of(self.dtype) if any(m.is_complex() for m in mats.values()) else self.dtype
        psi = self.psi.to(dtype)
        phi = psi
        for q, m in mats.items():
            v = phi.reshape(self.batch, 2 ** q, 2, -1)
            phi = contract("ij,bxjy->bxiy", m.to(dtype), v).reshape(psi.shape)
        psi, phi = psi.reshape(self.batch, -1), phi.reshape(self.batch, -1)
        num = (psi.conj() * phi).sum(-1).real
        den = (psi.conj() * psi).sum(-1).real
        return num / den

    def rdm1(self) -> torch.Tensor:
        """All single-qubit reduced density matrices -> ``(B, n, 2, 2)``."""
        out = []
        for q in range(self.n_qubits):
            v = self.psi.reshape(self.batch, 2 ** q, 2, -1)
            out.append(contract("bxiy,bxjy->bij", v, v.conj()))
        rho = torch.stack(out, dim=1)
        tr = rho.diagonal(dim1=-2, dim2=-1).sum(-1)
        return rho / tr[..., None, None]

    def _rdm2(self, i, j):
        v = self.psi.movedim((1 + i, 1 + j), (1, 2)).reshape(self.batch, 4, -1)
        rho = v @ v.conj().mT
        tr = rho.diagonal(dim1=-2, dim2=-1).sum(-1)
        return rho / tr[..., None, None]

    def _schmidt_spectra(self, bonds: Sequence[int]) -> List[torch.Tensor]:
        out = []
        for bnd in bonds:
            m = self.psi.reshape(self.batch, 2 ** (bnd + 1), -1)
            out.append(torch.linalg.svdvals(m))
        return out

    def _rdm1_at(self, q: int) -> torch.Tensor:
        v = self.psi.reshape(self.batch, 2 ** q, 2, -1)
        rho = contract("bxiy,bxjy->bij", v, v.conj())
        return rho / rho.diagonal(dim1=-2, dim2=-1).sum(-1)[..., None, None]

    def _scale(self, factor: torch.Tensor) -> None:
        self.psi = self.psi * factor.to(self.dtype).view((-1,) + (1,) * self.n_qubits)

    def _sample(self, shots, generator):
        probs = (self.to_dense().abs() ** 2).to(torch.float64)
        if generator is not None:
            probs = probs.to(generator.device)  # multinomial draws on the generator's device
        idx = torch.multinomial(probs, shots, replacement=True, generator=generator).to(self.device)
        shifts = torch.arange(self.n_qubits - 1, -1, -1, device=idx.device)
        return (idx.unsqueeze(-1) >> shifts) & 1
