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

Every update of the sites goes through ``qlam_tn.routes``, the one place that picks its
implementation: the torch reference (``mps_update``), a one-sample numpy pass (``mps_host``) or
numba-compiled kernels (``mps_packed``), all with the same signatures. Reading the state
(expectations, reduced density matrices, overlaps) goes through ``qlam_tn.environments``.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import torch

from . import environments, routes
from .contraction import contract
from .linalg import TruncationError, TruncationPolicy, svd, truncated_svd
from .mps_update import swap_pair
from .measure import pauli_matrix
from .state import QuantumState, as_amplitudes, as_int, check_batch, check_dtype, check_n_qubits

__all__ = ["MPS"]

# Dense vectors are refused above this many amplitudes (B * 2**n): about 32 GiB in complex128.
_MAX_DENSE = 2 ** 31


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

    splits_refuse_zero_norm = True  # linalg.check_split_weights

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
        err = TruncationError(torch.zeros(b, dtype=real, device=a.device), torch.zeros(b, dtype=real, device=a.device))
        tensors = []
        rest, left = a, 1
        for _ in range(n - 1):
            m = rest.reshape(b, left * 2, -1)
            U, S, Vh, d, kept2 = truncated_svd(m, policy, absorb="right")
            r = S.shape[-1]
            tensors.append(U.reshape(b, left, 2, r))
            rest = S.to(Vh.dtype).unsqueeze(-1) * Vh
            err = err + TruncationError.of_split(d, kept2)
            left = r
        tensors.append(rest.reshape(b, left, 2, 1))
        return cls(tensors, n - 1, policy, err.discarded, err.log_fidelity)

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
        out.move_center(n - 1)
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
    def dtype(self) -> torch.dtype:
        return self.tensors[0].dtype

    @property
    def device(self) -> torch.device:
        return self.tensors[0].device

    @property
    def bond_dims(self) -> List[int]:
        """Dimensions of the n-1 inner bonds."""
        return [t.shape[3] for t in self.tensors[:-1]]

    @property
    def max_bond(self) -> Optional[int]:
        return self.policy.max_bond

    @property
    def truncation(self) -> TruncationError:
        """Everything cut since creation: ``discarded_weight`` and ``log_fidelity``."""
        return TruncationError(self.discarded_weight, self.log_fidelity)

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
        self.tensors, self.center = self._moved(self.tensors, self.center, site), site
        return self

    def _moved(self, ts: List[torch.Tensor], c: int, target: int) -> List[torch.Tensor]:
        """``ts`` with the centre moved from ``c`` to ``target`` (``ts`` is not modified)."""
        if c == target:
            return ts
        between = ts[min(c, target):max(c, target) + 1]
        return routes.run("moved", between, (), ts, c, target, self.policy)

    def _record(self, err: TruncationError) -> None:
        """Add a step's ``TruncationError`` to the state's totals."""
        self.discarded_weight = self.discarded_weight + err.discarded
        self.log_fidelity = self.log_fidelity + err.log_fidelity

    # ------------------------------------------------------------------ gates
    def _convert(self, dtype) -> None:
        self.tensors = [t.to(dtype) for t in self.tensors]
        real = dtype.to_real() if dtype.is_complex else dtype
        self.discarded_weight = self.discarded_weight.to(real)
        self.log_fidelity = self.log_fidelity.to(real)

    def _apply_1q(self, gate, q, unitary: bool = True):
        ts, c = self.tensors, self.center
        if not unitary:
            # A non-unitary gate would break the isometry of its site: apply it at the centre.
            ts, c = self._moved(ts, c, q), q
        ts = list(ts)
        ts[q] = torch.matmul(gate.unsqueeze(1) if gate.dim() == 3 else gate, ts[q])
        self.tensors, self.center = ts, c

    def _apply_layer(self, gates, unitary: bool = True):
        ts = routes.run("physical", self.tensors, (gates,), self.tensors, gates)
        c = self.center
        if not unitary:
            # Restore the canonical form: a left-to-right QR sweep makes every site but the
            # last an isometry whatever the gauge was.
            ts, c = self._moved(ts, 0, self.n_qubits - 1), self.n_qubits - 1
        self.tensors, self.center = ts, c

    def _apply_2q(self, gate, q0, q1):
        if q0 > q1:
            gate, q0, q1 = swap_pair(gate), q1, q0
        ts, c = self.tensors, self.center
        # Route q1 next to q0 (SWAPs leftwards), apply, route back: each step is a truncated
        # two-site update. A routed gate leaves the centre moving right; a neighbouring one goes
        # whichever way the centre already is, so it needs no sweep back.
        direction = "right" if q1 > q0 + 1 or c <= q0 else "left"
        steps = ([(None, k, "left") for k in range(q1 - 1, q0, -1)] + [(gate, q0, direction)]
                 + [(None, k, "right") for k in range(q0 + 1, q1)])
        err = TruncationError()
        for g, k, d in steps:
            ts, c, e = routes.run("two_site", ts, () if g is None else (g,), ts, c, g, k, d, self.policy)
            err = err + e
        # Commit only once every step succeeded.
        self.tensors, self.center = ts, c
        self._record(err)

    def apply_neighbour_gates(self, gates: torch.Tensor, firsts: Sequence[int]) -> "MPS":
        """Apply ``gates[..., k, :, :]`` to sites ``(firsts[k], firsts[k] + 1)`` in order, in place.

        ``gates (P, 4, 4)`` or per-sample ``(B, P, 4, 4)`` in this state's dtype (a model's own
        gates: not checked for unitarity or finiteness). The same steps as ``apply`` gate by gate;
        a failing step leaves the state as it was before the layer.
        """
        (_, gates, firsts), = self._check_program([("2q", gates, firsts)])
        ts, c, err = routes.run("neighbour_gates", self.tensors, (gates,), self.tensors, self.center, gates,
                                firsts, self.policy)
        self.tensors, self.center = ts, c
        self._record(err)
        return self

    def apply_sequence(self, ops: Sequence[tuple], validate: bool = False) -> "MPS":
        """``QuantumState.apply_sequence`` (same arguments, same result up to truncation), planned
        as a whole by ``qlam_tn.planner`` when every gate is unitary: one-qubit gates fused into
        their neighbours, consecutive gates on a pair merged before one split, distant pairs met
        where the next gates want them (no SWAP chain back after each gate), the qubit order
        restored once at the end, the program run as compiled calls. A sequence holding a
        non-unitary gate runs gate by gate (the reference). Gates with gradients plan in torch."""
        from . import planner  # (planner imports circuit, which imports this module)

        checked = self._check_sequence(ops, validate)
        if not all(self._unitary(g) for g, _ in checked):
            return super().apply_sequence(checked)
        numeric = self.device.type == "cpu" and not any(g.requires_grad for g, _ in checked)
        mats = [(g.detach().resolve_conj().numpy() if numeric else g, qs) for g, qs in checked]
        with self._kept_if_it_fails(check_norm=False):
            planner.run(self, planner.plan(self.n_qubits, mats))
        return self

    def apply_program(self, ops: Sequence[tuple]) -> "MPS":
        """Layers in turn, in place, each in this state's dtype (a model's own gates, e.g. a QLAM
        token): ``("1q", gates)``, a unitary one-qubit layer ``(n, 2, 2)`` or ``(B, n, 2, 2)``, or
        ``("2q", gates, firsts)``, neighbour gates as ``apply_neighbour_gates``.

        Atomic: a failing layer leaves the state as it was before the program (on the compiled
        route the whole program is one call per sample).
        """
        ops = self._check_program(ops)
        ts, c, err = routes.run("circuit", self.tensors, [op[1] for op in ops], self.tensors, self.center, ops,
                                self.policy)
        self.tensors, self.center = ts, c
        self._record(err)
        return self

    # ------------------------------------------------------------------ contractions
    def _expect_ops(self, ops: Dict[int, str]) -> torch.Tensor:
        mats = {q: pauli_matrix(p, self.dtype, self.device) for q, p in ops.items()}
        return environments.expect_product(self.tensors, self.center, mats)

    def environment(self) -> "environments.MPSEnvironment":
        """An ``MPSEnvironment`` of the state as it is now: cached left/right environments that
        answer several local quantities (``rdm``, ``probs``, correlators) from one sweep. Build a
        new one after the state changes."""
        return environments.MPSEnvironment(self.tensors, self.center)

    def rdm1(self) -> torch.Tensor:
        """All single-qubit reduced density matrices in one sweep -> ``(B, n, 2, 2)``."""
        return environments.rdm1(self.tensors, self.center)

    def neighbour_zz(self) -> torch.Tensor:
        """``(B, n-1)`` correlators ``<Z_i Z_{i+1}>`` from one pass of environments."""
        z = pauli_matrix("Z", self.dtype, self.device)
        return environments.neighbour_correlators(self.tensors, self.center, z, z)

    def overlap(self, other: "MPS") -> torch.Tensor:
        """``<self|other>`` per sample -> ``(B,)`` (not normalised)."""
        if not isinstance(other, MPS) or other.n_qubits != self.n_qubits or other.batch != self.batch:
            raise ValueError("overlap needs another MPS of the same number of qubits and batch")
        return environments.overlap(self.tensors, other.tensors)

    def _rdm2(self, i, j):
        return environments.rdm2(self.tensors, self.center, i, j)

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

    def _rdm1_at(self, q: int) -> torch.Tensor:
        # Moving the centre onto q is a gauge change only (no truncation): the state is the same,
        # and the Kraus operator drawn next is applied there.
        self.tensors, self.center = self._moved(self.tensors, self.center, q), q
        t = self.tensors[q]
        rho = contract("bxiy,bxjy->bij", t, t.conj())
        return rho / rho.diagonal(dim1=-2, dim2=-1).sum(-1)[..., None, None]

    def _scale(self, factor: torch.Tensor) -> None:
        ts = list(self.tensors)
        ts[self.center] = ts[self.center] * factor.to(self.dtype).view(-1, 1, 1, 1)
        self.tensors = ts

    def _sample(self, shots, generator):
        ts = self._moved([t.detach() for t in self.tensors], self.center, 0)
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
