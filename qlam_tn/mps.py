"""``MPS``: a batched matrix-product state in mixed-canonical form.

Site tensors have shape ``(B, χl, 2, χr)`` (batch, left bond, physical, right bond)::

    B ─┬────────┬────────┬──── ...        every tensor carries the batch axis B
       │ χ0=1   │ χ1     │ χ2
      [A0]────[A1]────[A2]──── ...  ────[A_{n-1}]── χn=1
       │2      │2       │2                 │2

Sites left of ``center`` are left-isometric, sites right of it right-isometric, so the
norm and every local quantity can be read off near the centre. Two-qubit gates move the
centre onto the pair, contract, take a thin SVD and keep ``min(max_bond, rank by cutoff)``
values (``TruncationPolicy``); what is cut is added to ``discarded_weight`` per sample.
Non-adjacent gates are routed with SWAPs that restore qubit order afterwards.

On the CPU in float64/complex128 outside autograd, whole layers run compiled (``mps_jit``, through
``mps_packed``: one call per sample and layer, or per token, a batch's samples on threads; the
sites stay packed between layers and become tensors when read), and one sample's single gates and
centre moves take ``mps_host``'s numpy kernels (the same arithmetic with less per-call overhead).
The torch code here is the path for everything else and the reference they are tested against.

Canonical moves use QR. Under autograd, QR's backward divides by ``R``'s diagonal and returns
inf on the rank-deficient bonds that per-sample truncation produces: a move whose ``R`` is
singular uses the SVD with the broadened backward instead.
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence

import torch

from . import mps_host, mps_packed
from .contraction import contract
from .linalg import TruncationPolicy, gram_split_applies, svd, truncated_split, truncated_svd
from .measure import pauli_matrix
from .state import QuantumState, as_amplitudes, as_int, check_batch, check_dtype, check_n_qubits, complex_dtype_of

__all__ = ["MPS"]

# Dense vectors are refused above this many amplitudes (B * 2**n): about 32 GiB in complex128.
_MAX_DENSE = 2 ** 31


def _needs_grad(*tensors: torch.Tensor) -> bool:
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def _swap_pair(gate: torch.Tensor) -> torch.Tensor:
    """Re-express a (…, 4, 4) gate on (q0, q1) as the same gate on (q1, q0)."""
    g = gate.reshape(gate.shape[:-2] + (2, 2, 2, 2))
    return g.transpose(-4, -3).transpose(-2, -1).reshape(gate.shape)


# QR's backward solves with R: under autograd a move uses it only where every |R_ii| is above
# this many machine epsilons of the largest (R numerically full rank: 2e-13 in float64, 1e-4 in
# float32), and the SVD with the broadened backward otherwise.
_QR_GRAD_MIN_DIAG_EPS = 1000


def _qr_move(m: torch.Tensor, grad_eps: float, needs_grad: bool):
    """``m (B, p, q) = Q R`` for a centre move: ``Q`` an isometry ``(B, p, k)``, ``R (B, k, q)``.

    Outside autograd this is LAPACK's QR. Under autograd, QR's backward divides by ``R``'s
    diagonal and returns inf where the batch's shared bond is wider than a sample's rank (what
    per-sample truncation leaves): there the thin SVD with the broadened backward replaces it,
    ``Q = U``, ``R = S·Vh``. The check costs one host sync per move.
    """
    q, r = torch.linalg.qr(m)
    if not needs_grad:
        return q, r
    diag = r.detach().diagonal(dim1=-2, dim2=-1).abs()
    fin = torch.finfo(diag.dtype)
    if bool((diag > _QR_GRAD_MIN_DIAG_EPS * fin.eps * diag.amax(-1, keepdim=True).clamp_min(fin.tiny)).all()):
        return q, r
    U, S, Vh = svd(m, grad_eps, absorb="right")
    return U, S.to(Vh.dtype).unsqueeze(-1) * Vh


def _on_physical(gate: torch.Tensor, site: torch.Tensor) -> torch.Tensor:
    """A single-qubit ``gate`` ((2, 2) or per-sample (B, 2, 2)) on ``site`` (B, χl, 2, χr)."""
    return torch.matmul(gate.unsqueeze(1) if gate.dim() == 3 else gate, site)


class MPS(QuantumState):
    """Batched MPS with a tracked orthogonality centre.

    Build with ``MPS.zeros``, ``MPS.product_state``, ``MPS.from_dense`` or ``MPS.from_quimb``.

    Attributes:
        tensors: list of ``n`` site tensors ``(B, χl, 2, χr)``.
        center: index of the orthogonality centre.
        policy: the ``TruncationPolicy`` (max_bond, cutoff, cutoff_mode, renormalize).
        discarded_weight: ``(B,)`` accumulated ``Σ s²`` cut since creation. Without
            renormalisation a normalised state keeps ``norm² = 1 - discarded_weight`` exactly.
        log_fidelity: ``(B,)`` accumulated ``log(1 - ε)`` over every cut, ε the cut fraction of
            that split's weight; ``fidelity_estimate`` is its exponential.
    """

    def __init__(self, tensors: List[torch.Tensor], center: int, policy: TruncationPolicy,
                 discarded_weight: Optional[torch.Tensor] = None,
                 log_fidelity: Optional[torch.Tensor] = None):
        if not tensors:
            raise ValueError("an MPS needs at least one site tensor")
        b, dtype, device = tensors[0].shape[0], tensors[0].dtype, tensors[0].device
        check_dtype(dtype)
        for k, t in enumerate(tensors):
            if t.dim() != 4 or t.shape[0] != b or t.shape[2] != 2:
                raise ValueError(f"site {k}: expected shape (B={b}, χl, 2, χr), got {tuple(t.shape)}")
            if t.dtype != dtype or t.device != device:
                raise ValueError(f"site {k}: dtype/device {t.dtype}/{t.device} differs from site 0")
            if k and tensors[k - 1].shape[3] != t.shape[1]:
                raise ValueError(f"bond {k - 1}: dimensions {tensors[k - 1].shape[3]} and {t.shape[1]} differ")
        if tensors[0].shape[1] != 1 or tensors[-1].shape[3] != 1:
            raise ValueError("the outer bonds of an open-boundary MPS must have dimension 1")
        if not 0 <= center < len(tensors):
            raise ValueError(f"center {center} out of range for {len(tensors)} sites")
        self._packed: Optional[mps_packed.Packed] = None
        self.tensors = list(tensors)
        self.center = center
        self.policy = policy
        self.n_qubits = len(tensors)
        self.batch = b
        real = self._real_dtype
        self.discarded_weight = (torch.zeros(b, dtype=real, device=device)
                                 if discarded_weight is None else discarded_weight)
        self.log_fidelity = (torch.zeros(b, dtype=real, device=device)
                             if log_fidelity is None else log_fidelity)

    # ------------------------------------------------------------------ constructors
    @classmethod
    def zeros(cls, n_qubits: int, batch: int = 1, max_bond: Optional[int] = None, cutoff: float = 1e-12,
              cutoff_mode: str = "rsum2", renormalize: bool = False, dtype=torch.complex128,
              device="cpu", grad_eps: float = 1e-12) -> "MPS":
        """``|0...0>`` for every batch element; ``max_bond=None`` keeps every value above the cutoff."""
        n = check_n_qubits(n_qubits)
        vec = torch.zeros(2, dtype=check_dtype(dtype), device=device)
        vec[0] = 1
        return cls.product_state(vec.expand(check_batch(batch), n, 2), max_bond=max_bond, cutoff=cutoff,
                                 cutoff_mode=cutoff_mode, renormalize=renormalize, grad_eps=grad_eps)

    @classmethod
    def product_state(cls, vectors: torch.Tensor, max_bond: Optional[int] = None, cutoff: float = 1e-12,
                      cutoff_mode: str = "rsum2", renormalize: bool = False, grad_eps: float = 1e-12) -> "MPS":
        """Product state ``⊗_k v_k`` from single-qubit vectors ``(n, 2)`` or ``(B, n, 2)`` (differentiable;
        vectors need not be normalised: the norm is carried by the centre)."""
        v = torch.as_tensor(vectors)
        if v.dim() == 2:
            v = v.unsqueeze(0)
        if v.dim() != 3 or v.shape[-1] != 2:
            raise ValueError(f"vectors must have shape (n, 2) or (B, n, 2), got {tuple(v.shape)}")
        check_dtype(v.dtype)
        policy = TruncationPolicy(max_bond, cutoff, cutoff_mode, renormalize, grad_eps)
        # Sites right of the centre must be isometries: normalise them and carry their norms
        # into site 0 (the centre), which keeps the state and its gradient.
        norms = torch.linalg.vector_norm(v, dim=-1, keepdim=True)  # (B, n, 1)
        if bool((norms == 0).any()):
            raise ValueError("product_state: a single-qubit vector is zero")
        unit = v / norms
        scale = norms[:, 1:, 0].prod(-1).to(v.dtype)  # (B,)
        tensors = [unit[:, k, :].reshape(v.shape[0], 1, 2, 1) for k in range(v.shape[1])]
        tensors[0] = v[:, 0, :].reshape(v.shape[0], 1, 2, 1) * scale.view(-1, 1, 1, 1)
        return cls(tensors, 0, policy)

    @classmethod
    def from_dense(cls, amplitudes: torch.Tensor, max_bond: Optional[int] = None, cutoff: float = 1e-12,
                   cutoff_mode: str = "rsum2", renormalize: bool = False, grad_eps: float = 1e-12) -> "MPS":
        """Decompose ``(2**n,)`` or ``(B, 2**n)`` amplitudes (big-endian) by sequential SVDs.

        The centre ends on the last site; truncation (if any) is recorded in ``discarded_weight``.
        """
        a, n = as_amplitudes(amplitudes)
        policy = TruncationPolicy(max_bond, cutoff, cutoff_mode, renormalize, grad_eps)
        b = a.shape[0]
        real = a.real.dtype if a.is_complex() else a.dtype
        disc = torch.zeros(b, dtype=real, device=a.device)
        logf = torch.zeros(b, dtype=real, device=a.device)
        tensors = []
        rest, left = a, 1
        for _ in range(n - 1):
            m = rest.reshape(b, left * 2, -1)
            U, S, Vh, d, kept2 = truncated_svd(m, policy, absorb="right")
            r = S.shape[-1]
            tensors.append(U.reshape(b, left, 2, r))
            rest = S.to(Vh.dtype).unsqueeze(-1) * Vh
            disc = disc + d
            logf = logf + torch.log1p(-d / (d + kept2).clamp_min(torch.finfo(real).tiny))
            left = r
        tensors.append(rest.reshape(b, left, 2, 1))
        return cls(tensors, n - 1, policy, disc, logf)

    @classmethod
    def from_quimb(cls, qmps, max_bond: Optional[int] = None, cutoff: float = 1e-12, cutoff_mode: str = "rsum2",
                   renormalize: bool = False, dtype=None, device="cpu", grad_eps: float = 1e-12) -> "MPS":
        """From a ``quimb.tensor.MatrixProductState`` (batch 1); the result is canonicalised onto the last site."""
        n = qmps.L
        arrays = []
        for k in range(n):
            t = qmps[k]
            inds = []
            if k > 0:
                inds.append(qmps.bond(k - 1, k))
            inds.append(qmps.site_ind(k))
            if k < n - 1:
                inds.append(qmps.bond(k, k + 1))
            data = t.transpose(*inds).data
            arr = torch.as_tensor(data, device=device)
            if dtype is not None:
                arr = arr.to(dtype)
            if k == 0:
                arr = arr.unsqueeze(0)
            if k == n - 1:
                arr = arr.unsqueeze(-1)
            arrays.append(arr.unsqueeze(0))
        policy = TruncationPolicy(max_bond, cutoff, cutoff_mode, renormalize, grad_eps)
        out = cls(arrays, 0, policy)
        # A left-to-right QR sweep makes every site but the last left-isometric, whatever
        # gauge quimb held, so the centre bookkeeping is true afterwards.
        out.tensors, out.center = out._moved(out.tensors, 0, n - 1)
        return out

    def to_quimb(self, sample: Optional[int] = None):
        """One batch element as a ``quimb.tensor.MatrixProductState`` (numpy arrays)."""
        import quimb.tensor as qtn

        if sample is None:
            if self.batch != 1:
                raise ValueError(f"batch is {self.batch}: pass sample= to choose which state to export")
            sample = 0
        if not 0 <= sample < self.batch:
            raise ValueError(f"sample {sample} out of range for batch {self.batch}")
        if self.n_qubits == 1:
            raise ValueError("quimb's MatrixProductState needs at least 2 sites")
        arrays = []
        n = self.n_qubits
        for k, t in enumerate(self.tensors):
            a = t[sample].detach().cpu().numpy()  # (l, 2, r)
            if k == 0:
                a = a[0]
            elif k == n - 1:
                a = a[..., 0]
            arrays.append(a)
        return qtn.MatrixProductState(arrays, shape="lpr")

    # ------------------------------------------------------------------ properties
    @property
    def tensors(self) -> List[torch.Tensor]:
        """The ``n`` site tensors ``(B, χl, 2, χr)``. After a compiled layer the sites are held
        packed (``mps_packed``) and made into tensors here, on first read."""
        if self._sites is None:
            self._sites = self._packed.tensors()
        return self._sites

    @tensors.setter
    def tensors(self, tensors: List[torch.Tensor]) -> None:
        self._sites, self._packed = tensors, None

    def _hold(self, packed: "mps_packed.Packed") -> None:
        """Hold the sites a compiled layer returned (their tensors made when read)."""
        self._sites, self._packed = None, packed

    def _compiled_sites(self, *gates: torch.Tensor) -> Optional["mps_packed.Packed"]:
        """The sites as the compiled kernels take them, where they take layers of these ``gates``
        (``mps_packed.takes``); else ``None``. Tensors read since the last compiled layer are
        packed afresh unless they are still the very ones it made, unchanged."""
        packed, sites = self._packed, self._sites
        if not mps_packed.takes(self.batch, gates, sites):  # (read tensors may require grad since)
            return None
        return packed if packed is not None and (sites is None or packed.made(sites)) else mps_packed.Packed.pack(sites)

    @property
    def dtype(self) -> torch.dtype:
        return self._packed.dtype if self._sites is None else self._sites[0].dtype

    @property
    def device(self) -> torch.device:
        return torch.device("cpu") if self._sites is None else self._sites[0].device

    @property
    def bond_dims(self) -> List[int]:
        """Dimensions of the n-1 inner bonds."""
        if self._sites is None:
            return self._packed.bond_dims()
        return [t.shape[3] for t in self._sites[:-1]]

    @property
    def max_bond(self) -> Optional[int]:
        return self.policy.max_bond

    @property
    def fidelity_estimate(self) -> torch.Tensor:
        """``(B,)`` product of ``1 - ε`` over every truncation, ε the fraction of norm² cut."""
        return torch.exp(self.log_fidelity)

    def copy(self) -> "MPS":
        """A shallow copy: tensors are shared (they are never modified in place)."""
        return MPS(list(self.tensors), self.center, self.policy, self.discarded_weight.clone(),
                   self.log_fidelity.clone())

    def to(self, dtype=None, device=None) -> "MPS":
        """A copy with converted dtype and/or device."""
        ts = [t.to(dtype=dtype or self.dtype, device=device or self.device) for t in self.tensors]
        real = ts[0].real.dtype if ts[0].is_complex() else ts[0].dtype
        return MPS(ts, self.center, self.policy, self.discarded_weight.to(real).to(ts[0].device),
                   self.log_fidelity.to(real).to(ts[0].device))

    def norm(self) -> torch.Tensor:
        """``(B,)`` 2-norm, read off the centre tensor."""
        return torch.linalg.vector_norm(self.tensors[self.center].reshape(self.batch, -1), dim=-1)

    def to_dense(self) -> torch.Tensor:
        """``(B, 2**n)`` amplitudes, big-endian. Refused when ``B·2**n`` exceeds 2**31."""
        if self.batch * 2 ** self.n_qubits > _MAX_DENSE:
            raise ValueError(f"to_dense: {self.batch} x 2**{self.n_qubits} amplitudes is too large")
        b = self.batch
        v = self.tensors[0].reshape(b, 2, -1)
        for t in self.tensors[1:]:
            v = contract("bpx,bxjy->bpjy", v, t).reshape(b, -1, t.shape[3])
        return v.reshape(b, -1)

    # ------------------------------------------------------------------ canonical form
    def move_center(self, site: int) -> "MPS":
        """Move the orthogonality centre to ``site`` (in place, no truncation)."""
        site = as_int(site, "site")
        if not 0 <= site < self.n_qubits:
            raise ValueError(f"site must be in [0, {self.n_qubits - 1}], got {site}")
        self.tensors, self.center = self._moved(self.tensors, self.center, site)
        return self

    def _moved(self, ts: List[torch.Tensor], c: int, target: int):
        """Return ``(tensors, target)`` with the centre moved from ``c``; ``ts`` is not modified."""
        if c == target:
            return ts, c
        if mps_host.applies(self.batch, ts[min(c, target):max(c, target) + 1]):
            return mps_host.moved(ts, c, target), target
        ts = list(ts)
        b = self.batch
        while c < target:
            a = ts[c]
            l, r = a.shape[1], a.shape[3]
            m = a.reshape(b, l * 2, r)
            q, rr = _qr_move(m, self.policy.grad_eps, _needs_grad(a, ts[c + 1]))
            ts[c] = q.reshape(b, l, 2, q.shape[-1])
            nxt = ts[c + 1]
            ts[c + 1] = torch.matmul(rr, nxt.reshape(b, r, -1)).reshape(b, rr.shape[-2], 2, nxt.shape[3])
            c += 1
        while c > target:
            a = ts[c]
            l, r = a.shape[1], a.shape[3]
            m = a.reshape(b, l, 2 * r)
            q, rr = _qr_move(m.mH, self.policy.grad_eps, _needs_grad(a, ts[c - 1]))
            q_h, lower = q.mH, rr.mH
            ts[c] = q_h.reshape(b, q_h.shape[-2], 2, r)
            prv = ts[c - 1]
            ts[c - 1] = torch.matmul(prv.reshape(b, -1, l), lower).reshape(b, prv.shape[1], 2, lower.shape[-1])
            c -= 1
        return ts, c

    # ------------------------------------------------------------------ gates
    def _promote(self, dtype):
        self.tensors = [t.to(dtype) for t in self.tensors]

    def _apply_1q(self, gate, q, unitary: bool = True):
        ts, c = self.tensors, self.center
        if not unitary:
            # A non-unitary gate would break the isometry of its site: apply it at the centre.
            ts, c = self._moved(ts, c, q)
        ts = list(ts)
        ts[q] = _on_physical(gate, ts[q])
        self.tensors, self.center = ts, c

    def _apply_layer(self, gates, unitary: bool = True):
        packed = self._compiled_sites(gates)
        new = packed.physical(gates) if packed is not None else None
        if new is not None and unitary:
            self._hold(new)
            return
        if new is not None:
            ts = new.tensors()
        elif gates.dim() == 3 and mps_host.applies(self.batch, (*self.tensors, gates)):
            ts = mps_host.on_physical(self.tensors, gates)
        else:
            ts = [_on_physical(gates[..., q, :, :], t) for q, t in enumerate(self.tensors)]
        c = self.center
        if not unitary:
            # Restore the canonical form: a left-to-right QR sweep makes every site but the
            # last an isometry whatever the gauge was.
            ts, c = self._moved(ts, 0, self.n_qubits - 1)
        self.tensors, self.center = ts, c

    def _apply_2q(self, gate, q0, q1):
        if q0 > q1:
            gate, q0, q1 = _swap_pair(gate), q1, q0
        ts, c = self.tensors, self.center
        # Route q1 next to q0 (SWAPs leftwards), apply, route back: each step is a truncated
        # two-site update. A routed gate leaves the centre moving right; a neighbouring one goes
        # whichever way the centre already is, so it needs no sweep back.
        direction = "right" if q1 > q0 + 1 or c <= q0 else "left"
        steps = ([(None, k, "left") for k in range(q1 - 1, q0, -1)] + [(gate, q0, direction)]
                 + [(None, k, "right") for k in range(q0 + 1, q1)])
        disc = logf = None
        for g, k, d in steps:
            ts, c, dk, lk = self._two_site(ts, c, g, k, d)
            disc, logf = (dk, lk) if disc is None else (disc + dk, logf + lk)
        # Commit only once every step succeeded.
        self.tensors, self.center = ts, c
        self.discarded_weight = self.discarded_weight + disc
        self.log_fidelity = self.log_fidelity + logf

    def _apply_neighbours(self, gates, firsts):
        """Apply ``gates[..., k, :, :]`` to sites ``(firsts[k], firsts[k] + 1)`` in order.

        ``gates (P, 4, 4)`` or per-sample ``(B, P, 4, 4)`` in this state's dtype. The same steps as
        ``_apply_2q`` gate by gate; outside autograd on the CPU one compiled call per sample
        (``mps_packed``), or, where numba is off, one ``mps_host`` pass at B=1.
        A failing step leaves the state as it was before the layer.
        """
        packed = self._compiled_sites(gates)
        done = packed.layer(self.center, gates, firsts, self.policy) if packed is not None else None
        if done is not None:  # the compiled kernels, sample by sample (mps_packed)
            self._commit_compiled(*done)
            return
        ts = self.tensors
        if gates.dim() == 3 and mps_host.applies(self.batch, (*ts, gates)):
            ts, c, disc, logf = mps_host.neighbour_gates(ts, self.center, gates, firsts, self.policy)
            self.tensors, self.center = ts, c
            self.discarded_weight = self.discarded_weight + disc
            self.log_fidelity = self.log_fidelity + logf
            return
        for k, q in enumerate(firsts):
            self._apply_2q(gates[..., k, :, :], q, q + 1)

    def _apply_ops(self, ops):
        """Layers in turn, each in this state's dtype: ``("1q", gates)``, a unitary one-qubit layer
        (``_apply_layer``), or ``("2q", gates, firsts)``, neighbour gates (``_apply_neighbours``).

        Where the compiled kernels take every layer, all of them run in one call per sample
        (``mps_packed``), atomically; elsewhere layer by layer, each layer atomic.
        """
        packed = self._compiled_sites(*(op[1] for op in ops))
        done = packed.circuit(self.center, ops, self.policy) if packed is not None else None
        if done is not None:
            self._commit_compiled(*done)
            return
        for op in ops:
            if op[0] == "1q":
                self._apply_layer(op[1])
            else:
                self._apply_neighbours(op[1], op[2])

    def _commit_compiled(self, packed, c: int, disc, logf) -> None:
        """Hold what a compiled call returned: the sites, centre and per-sample ``(B,)`` weights."""
        self._hold(packed)
        self.center = c
        self.discarded_weight = self.discarded_weight + torch.from_numpy(disc)
        self.log_fidelity = self.log_fidelity + torch.from_numpy(logf)

    def _two_site(self, ts, c, gate, i, direction):
        """Apply ``gate`` ((4,4), (B,4,4) or None for SWAP) to sites (i, i+1) at the centre.

        Returns ``(tensors, center, discarded (B,), log(1-ε) (B,))`` (Python floats from the
        one-sample host kernels).
        """
        target = i if c <= i else i + 1
        ts, c = self._moved(ts, c, target)
        ts = list(ts)
        b = self.batch
        a0, a1 = ts[i], ts[i + 1]
        l, m, r = a0.shape[1], a0.shape[3], a1.shape[3]
        if mps_host.applies(b, (a0, a1) if gate is None else (a0, a1, gate)):
            # One sample on the CPU: the same update and split in numpy (mps_host's docstring),
            # choosing the split as truncated_split would for θ (2l, 2r) outside autograd.
            gram = gram_split_applies(2 * l, 2 * r, a0.dtype, self.policy, direction)
            ts[i], ts[i + 1], disc, kept2 = mps_host.two_site(a0, a1, gate, self.policy, direction, gram)
            c = i + 1 if direction == "right" else i
            # log(1 - ε), as below; 0 / 0 -> 0. Python floats: _apply_2q adds them to the (1,) totals.
            log_keep = math.log1p(-disc / (disc + kept2)) if disc + kept2 > 0 else 0.0
            return ts, c, disc, log_keep
        # θ[b, x, (i j), z] by one batched matmul over the shared bond, then the gate on the
        # 4-dim pair index (matmul, not einsum: a fraction of the per-call overhead at small χ).
        theta = torch.matmul(a0.reshape(b, l * 2, m), a1.reshape(b, m, 2 * r)).reshape(b, l, 4, r)
        if gate is None:
            theta = theta.reshape(b, l, 2, 2, r).transpose(2, 3)
        else:
            theta = torch.matmul(gate.unsqueeze(1) if gate.dim() == 3 else gate, theta)
        left, right, disc, kept2 = truncated_split(theta.reshape(b, l * 2, 2 * r), self.policy, absorb=direction)
        k = left.shape[-1]
        ts[i] = left.reshape(b, l, 2, k)
        ts[i + 1] = right.reshape(b, k, 2, r)
        c = i + 1 if direction == "right" else i
        # log(1 - ε) with ε the cut fraction of this split's weight (0 / 0 -> 0 via the clamp).
        log_keep = torch.log1p(-(disc / (disc + kept2).clamp_min(torch.finfo(kept2.dtype).tiny)))
        return ts, c, disc, log_keep

    # ------------------------------------------------------------------ contractions
    def _as(self, t: torch.Tensor, dtype) -> torch.Tensor:
        return t if t.dtype == dtype else t.to(dtype)

    @staticmethod
    def _transfer_left(env, a, op=None):
        """Left environment ``(B, χ, χ')`` pushed through site ``a`` (with an optional operator)."""
        ac = a.conj()
        if op is None:
            if env is None:
                return contract("bxiy,bxiz->byz", a, ac)
            return contract("bxw,bxiy,bwiz->byz", env, a, ac)
        if env is None:
            return contract("bxiy,ji,bxjz->byz", a, op, ac)
        return contract("bxw,bxiy,ji,bwjz->byz", env, a, op, ac)

    @staticmethod
    def _transfer_right(env, a):
        """Right environment ``(B, χ, χ')`` pulled through site ``a``."""
        ac = a.conj()
        if env is None:
            return contract("bxiy,bziy->bxz", a, ac)
        return contract("bxiy,byw,bziw->bxz", a, env, ac)

    def _expect_ops(self, ops: Dict[int, str]) -> torch.Tensor:
        c = self.center
        sites = sorted(ops)
        lo, hi = min(sites + [c]), max(sites + [c])
        dtype = self.dtype
        mats = {q: pauli_matrix(p, dtype, self.device) for q, p in ops.items()}
        if any(m.is_complex() for m in mats.values()):
            dtype = complex_dtype_of(dtype)
        env = None
        for k in range(lo, hi + 1):
            op = mats.get(k)
            env = self._transfer_left(env, self._as(self.tensors[k], dtype), None if op is None else op.to(dtype))
        num = env.diagonal(dim1=-2, dim2=-1).sum(-1).real
        centre = self.tensors[c].reshape(self.batch, -1)
        den = (centre.conj() * centre).real.sum(-1)
        return num / den

    def _left_envs(self) -> List[Optional[torch.Tensor]]:
        """``L[k]``: environment of the bond left of site k (None = identity, k <= center)."""
        n, c = self.n_qubits, self.center
        envs: List[Optional[torch.Tensor]] = [None] * n
        env = None
        for k in range(c, n - 1):
            env = self._transfer_left(env, self.tensors[k])
            envs[k + 1] = env
        return envs

    def _right_envs(self) -> List[Optional[torch.Tensor]]:
        """``R[k]``: environment of the bond right of site k (None = identity, k >= center)."""
        n, c = self.n_qubits, self.center
        envs: List[Optional[torch.Tensor]] = [None] * n
        env = None
        for k in range(c, 0, -1):
            env = self._transfer_right(env, self.tensors[k])
            envs[k - 1] = env
        return envs

    def rdm1(self) -> torch.Tensor:
        """All single-qubit reduced density matrices in one sweep -> ``(B, n, 2, 2)``."""
        L, R = self._left_envs(), self._right_envs()
        out = []
        for k, a in enumerate(self.tensors):
            ac = a.conj()
            if L[k] is not None:
                rho = contract("bxw,bxiy,bwjy->bij", L[k], a, ac)
            elif R[k] is not None:
                rho = contract("bxiy,byz,bxjz->bij", a, R[k], ac)
            else:
                rho = contract("bxiy,bxjy->bij", a, ac)
            out.append(rho)
        rho = torch.stack(out, dim=1)
        tr = rho.diagonal(dim1=-2, dim2=-1).sum(-1)
        return rho / tr[..., None, None]

    def neighbour_zz(self) -> torch.Tensor:
        """``(B, n-1)`` correlators ``<Z_i Z_{i+1}>`` from one pass of environments."""
        L, R = self._left_envs(), self._right_envs()
        z = pauli_matrix("Z", self.dtype, self.device)
        out = []
        for i in range(self.n_qubits - 1):
            env = self._transfer_left(L[i], self.tensors[i], z)
            env = self._transfer_left(env, self.tensors[i + 1], z)
            val = env.diagonal(dim1=-2, dim2=-1).sum(-1) if R[i + 1] is None else \
                (env * R[i + 1]).sum((-2, -1))
            out.append(val.real)
        centre = self.tensors[self.center].reshape(self.batch, -1)
        norm2 = (centre.conj() * centre).real.sum(-1)
        return torch.stack(out, dim=-1) / norm2.unsqueeze(-1)

    def _rdm2(self, i, j):
        flip = i > j
        a, b = (j, i) if flip else (i, j)
        c = self.center
        left = None
        for k in range(c, a):
            left = self._transfer_left(left, self.tensors[k])
        right = None
        for k in range(c, b, -1):
            right = self._transfer_right(right, self.tensors[k])
        ta = self.tensors[a]
        if left is None:
            t = contract("bxiy,bxjz->bijyz", ta, ta.conj())
        else:
            t = contract("bxw,bxiy,bwjz->bijyz", left, ta, ta.conj())
        for k in range(a + 1, b):
            tk = self.tensors[k]
            t = contract("bijyz,byku,bzkv->bijuv", t, tk, tk.conj())
        tb = self.tensors[b]
        if right is None:
            rho = contract("bijyz,bykr,bzlr->bikjl", t, tb, tb.conj())
        else:
            rho = contract("bijyz,bykr,brs,bzls->bikjl", t, tb, right, tb.conj())
        rho = rho.reshape(self.batch, 4, 4)
        tr = rho.diagonal(dim1=-2, dim2=-1).sum(-1)
        rho = rho / tr[..., None, None]
        return _swap_pair(rho) if flip else rho

    def _schmidt_spectra(self, bonds: Sequence[int]) -> List[torch.Tensor]:
        bonds = list(bonds)
        if not bonds:
            return []
        b, c, ts = self.batch, self.center, self.tensors
        eps = self.policy.grad_eps
        spectra: Dict[int, torch.Tensor] = {}
        hi = max(bonds)
        m = ts[c]
        for bnd in range(c, hi + 1):
            l, r = m.shape[1], m.shape[3]
            U, S, Vh = svd(m.reshape(b, l * 2, r), eps, absorb="right")
            spectra[bnd] = S
            if bnd < hi:
                m = contract("bkr,brjz->bkjz", S.to(Vh.dtype).unsqueeze(-1) * Vh, ts[bnd + 1])
        lo = min(bonds)
        m = ts[c]
        for bnd in range(c - 1, lo - 1, -1):
            l, r = m.shape[1], m.shape[3]
            U, S, Vh = svd(m.reshape(b, l, 2 * r), eps, absorb="left")
            spectra[bnd] = S
            if bnd > lo:
                m = contract("bxjl,blk->bxjk", ts[bnd], U * S.to(U.dtype).unsqueeze(-2))
        return [spectra[bnd] for bnd in bonds]

    def _sample(self, shots, generator):
        ts, _ = self._moved([t.detach() for t in self.tensors], self.center, 0)
        b = self.batch
        real = self._real_dtype
        v = torch.ones(b, shots, 1, dtype=self.dtype, device=self.device)
        bits = []
        for a in ts:
            w = contract("bsx,bxjy->bsjy", v, a)  # (B, S, 2, χr)
            p = (w.conj() * w).real.sum(-1).to(real)  # (B, S, 2)
            p1 = p[..., 1] / p.sum(-1).clamp_min(torch.finfo(real).tiny)
            u = torch.rand(p1.shape, generator=generator, dtype=real,
                           device=generator.device if generator is not None else self.device)
            bit = (u.to(self.device) < p1).long()
            bits.append(bit)
            chosen = torch.gather(w, 2, bit[..., None, None].expand(b, shots, 1, w.shape[-1])).squeeze(2)
            pk = torch.gather(p, 2, bit[..., None]).squeeze(-1)
            v = chosen / torch.sqrt(pk.clamp_min(torch.finfo(real).tiny)).to(chosen.dtype).unsqueeze(-1)
        return torch.stack(bits, dim=-1)
