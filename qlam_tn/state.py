"""The interface both backends share, and the input checks they run before touching a state.

``MPS`` and ``StateVector`` subclass ``QuantumState``. A call that fails a check raises
``ValueError`` / ``TypeError`` before any tensor of the state changes.
"""
from __future__ import annotations

import contextlib
import math
import operator
from typing import List, Sequence, Tuple

import numpy as np
import torch

from . import gates as _gates
from .measure import entropy_from_schmidt, parse_pauli, renyi_from_schmidt


def complex_dtype_of(dtype: torch.dtype) -> torch.dtype:
    """The complex dtype of the same precision as ``dtype``."""
    if dtype.is_complex:
        return dtype
    return torch.complex64 if dtype == torch.float32 else torch.complex128


def as_int(value, name: str) -> int:
    """``value`` as a Python int (numpy and torch integers accepted); bools and floats refused."""
    if isinstance(value, bool) or (isinstance(value, torch.Tensor) and value.dtype == torch.bool):
        raise TypeError(f"{name} must be an int, got a bool")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an int, got {value!r}") from None


def check_n_qubits(n_qubits) -> int:
    n_qubits = as_int(n_qubits, "n_qubits")
    if n_qubits < 1:
        raise ValueError(f"n_qubits must be >= 1, got {n_qubits}")
    return n_qubits


def check_batch(batch) -> int:
    batch = as_int(batch, "batch")
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    return batch


def check_dtype(dtype) -> torch.dtype:
    allowed = (torch.float32, torch.float64, torch.complex64, torch.complex128)
    if dtype not in allowed:
        raise TypeError(f"dtype must be one of {allowed}, got {dtype}")
    return dtype


def as_amplitudes(amplitudes):
    """Validate ``(2**n,)`` or ``(B, 2**n)`` amplitudes; returns ``(a (B, 2**n), n)``."""
    a = torch.as_tensor(amplitudes)
    if a.dim() == 1:
        a = a.unsqueeze(0)
    if a.dim() != 2:
        raise ValueError(f"amplitudes must be (2**n,) or (B, 2**n), got {tuple(a.shape)}")
    n = a.shape[1].bit_length() - 1
    if n < 1 or a.shape[1] != 2 ** n:
        raise ValueError(f"amplitude length {a.shape[1]} is not a power of two >= 2")
    if not (a.is_complex() or a.is_floating_point()):
        a = a.to(torch.float64)
    check_dtype(a.dtype)
    finite = torch.isfinite(a).all(-1)
    if not bool(finite.all()):
        raise ValueError(f"amplitudes of sample {int((~finite).nonzero()[0])} are not finite (NaN or inf)")
    zero = (a.abs() > 0).sum(-1) == 0
    if bool(zero.any()):
        raise ValueError(f"amplitudes of sample {int(zero.nonzero()[0])} are all zero: a state needs a nonzero norm")
    norm2 = a.abs().square().sum(-1)
    real = norm2.dtype
    bad = (norm2 < torch.finfo(real).tiny) | ~torch.isfinite(norm2)
    if bool(bad.any()):
        raise ValueError(f"the norm² of sample {int(bad.nonzero()[0])} underflows or overflows in {a.dtype}: "
                         f"rescale the amplitudes (a state's norm is carried, not required to be 1)")
    return a, n


_NUMPY_DTYPES = (torch.float32, torch.float64, torch.complex64, torch.complex128)


def _all_finite(t: torch.Tensor) -> bool:
    """Whether every entry of ``t`` is finite. A small CPU gate is checked through a numpy view:
    one call, against torch's three (isfinite, all, the host read), which showed in the profile of
    a one-sample, small-bond circuit."""
    if t.device.type == "cpu" and t.dtype in _NUMPY_DTYPES and t.numel() <= 1024:
        return bool(np.isfinite(t.detach().resolve_conj().resolve_neg().numpy()).all())
    return bool(torch.isfinite(t).all())


class QuantumState:
    """Batched n-qubit pure state. Subclasses implement the contractions.

    Common attributes: ``n_qubits``, ``batch``, ``dtype``, ``device``,
    ``discarded_weight`` ``(B,)``.
    """

    n_qubits: int
    batch: int
    # Whether a two-qubit gate's own step refuses a result of zero norm (the MPS's split does).
    splits_refuse_zero_norm = False

    # ------------------------------------------------------------------ checks
    def _distinct_qubits(self, qubits) -> Tuple[int, ...]:
        """Distinct in-range qubit indices from an int or a sequence of them (maybe empty)."""
        if isinstance(qubits, (tuple, list)):
            qs: Tuple[int, ...] = tuple(as_int(q, "qubit index") for q in qubits)
        else:
            try:
                qs = (as_int(qubits, "qubits"),)
            except TypeError:
                raise TypeError(f"qubits must be an int or a sequence of ints, got {qubits!r}") from None
        for q in qs:
            if not 0 <= q < self.n_qubits:
                raise ValueError(f"qubit {q} out of range for {self.n_qubits} qubits")
        if len(set(qs)) != len(qs):
            raise ValueError(f"repeated qubit in {qs}")
        return qs

    def _check_qubits(self, qubits) -> Tuple[int, ...]:
        qs = self._distinct_qubits(qubits)
        if len(qs) not in (1, 2):
            raise ValueError(f"gates act on 1 or 2 qubits, got {len(qs)} qubits {qs}")
        return qs

    def _check_gate(self, gate, n_gate_qubits: int, validate: bool) -> torch.Tensor:
        """Return ``gate`` as a tensor of shape (d, d) or (B, d, d) on the state's device."""
        if not isinstance(gate, torch.Tensor):
            try:
                gate = torch.as_tensor(gate)
            except Exception as exc:  # noqa: BLE001 - re-raised with context
                raise TypeError(f"gate must be a tensor or array, got {type(gate).__name__}") from exc
        d = 2 ** n_gate_qubits
        if gate.dim() not in (2, 3) or gate.shape[-2:] != (d, d):
            raise ValueError(
                f"a {n_gate_qubits}-qubit gate must have shape ({d}, {d}) or (B, {d}, {d}), "
                f"got {tuple(gate.shape)}")
        if gate.dim() == 3 and gate.shape[0] != self.batch:
            raise ValueError(f"per-sample gate has batch {gate.shape[0]}, the state has batch {self.batch}")
        if not (gate.is_floating_point() or gate.is_complex()):
            gate = gate.to(torch.float64)
        gate = gate.to(self.device)
        if not _all_finite(gate):
            raise ValueError("gate contains NaN or infinite entries")
        if validate and not self._unitary(gate):
            raise ValueError("gate is not unitary (validate=True)")
        return gate

    @contextlib.contextmanager
    def _kept_if_it_fails(self, check_norm: bool):
        """Restore the state as it was if the block raises; with ``check_norm``, also refuse a
        result with a sample of zero norm (a non-unitary gate that annihilates it: a projector onto
        an outcome of probability 0), whose expectations would all be NaN. The state's tensors
        are never edited in place, so keeping references is a full snapshot."""
        saved = dict(vars(self))
        try:
            yield
            if check_norm:
                norm2 = self.norm().detach().square()
                tiny = torch.finfo(norm2.dtype).tiny
                bad = ~(norm2 >= tiny) | ~torch.isfinite(norm2)
                if bool(bad.any()):
                    raise ValueError(f"the gate leaves sample {int(bad.nonzero()[0])} with zero norm (or a norm "
                                     f"that underflows): a projector onto an outcome of probability 0?")
        except BaseException:
            vars(self).clear()
            vars(self).update(saved)
            raise

    @staticmethod
    def _unitary(gate: torch.Tensor) -> bool:
        low = gate.dtype in (torch.float32, torch.complex64)
        return _gates.is_unitary(gate, atol=1e-5 if low else 1e-10)

    def _check_layer(self, gates) -> torch.Tensor:
        if not isinstance(gates, torch.Tensor):
            gates = torch.as_tensor(gates)
        n = self.n_qubits
        if gates.dim() not in (3, 4) or gates.shape[-3:] != (n, 2, 2):
            raise ValueError(f"a layer must have shape ({n}, 2, 2) or (B, {n}, 2, 2), got {tuple(gates.shape)}")
        if gates.dim() == 4 and gates.shape[0] != self.batch:
            raise ValueError(f"per-sample layer has batch {gates.shape[0]}, the state has batch {self.batch}")
        gates = gates.to(self.device)
        if not _all_finite(gates):
            raise ValueError("layer contains NaN or infinite entries")
        return gates

    def _gate_dtype(self, gate: torch.Tensor) -> torch.dtype:
        """The dtype the state must have to hold ``gate @ state``; promotes real -> complex."""
        if gate.is_complex() and not self.dtype.is_complex:
            return complex_dtype_of(self.dtype)
        return self.dtype

    # ------------------------------------------------------------------ public API shared
    def apply(self, gate, qubits, validate: bool = False):
        """Apply a 1- or 2-qubit gate in place and return ``self``.

        Args:
            gate: ``(2, 2)`` / ``(4, 4)``, or per-sample ``(B, 2, 2)`` / ``(B, 4, 4)``.
                A two-qubit gate's row index is ``2*b(q0) + b(q1)`` for ``qubits=(q0, q1)``.
            qubits: an int or a pair ``(q0, q1)``, any distance, any order.
            validate: reject a gate that is not unitary. Without it, non-unitary gates are
                allowed (projectors, noise-free Kraus factors): the MPS then applies a
                single-qubit one at the orthogonality centre, so its canonical form stays true.
        """
        qs = self._check_qubits(qubits)
        g = self._check_gate(gate, len(qs), validate)
        # A one-qubit gate's unitarity decides where it applies, and a non-unitary gate's result is
        # checked for zero norm, except where the backend's two-qubit step refuses it itself.
        two_checked = len(qs) == 2 and self.splits_refuse_zero_norm
        unitary = validate or two_checked or self._unitary(g)
        with self._kept_if_it_fails(check_norm=not unitary):
            new_dtype = self._gate_dtype(g)
            if new_dtype != self.dtype:
                self.promote(new_dtype)
            g = g.to(self.dtype)
            if len(qs) == 1:
                self._apply_1q(g, qs[0], unitary=unitary)
            else:
                self._apply_2q(g, qs[0], qs[1])
        return self

    def apply_sequence(self, ops: Sequence[tuple], validate: bool = False):
        """Apply ``ops``, a sequence of ``(gate, qubits)`` pairs as :meth:`apply` takes them, in
        order and in place; return ``self``. Every gate and qubit tuple is checked before the state
        changes, and a sequence that fails part-way leaves the state as it was.

        This is the plain reference (one :meth:`apply` per gate); the MPS plans a unitary sequence
        as a whole instead (``MPS.apply_sequence``: fused gates, a tracked qubit layout).
        """
        checked = self._check_sequence(ops, validate)
        with self._kept_if_it_fails(check_norm=False):
            for gate, qs in checked:
                self.apply(gate, qs)
        return self

    def _check_sequence(self, ops: Sequence[tuple], validate: bool) -> List[tuple]:
        checked = []
        for item in ops:
            try:
                gate, qubits = item
            except (TypeError, ValueError):
                raise TypeError(f"each op must be a (gate, qubits) pair, got {item!r}") from None
            qs = self._check_qubits(qubits)
            checked.append((self._check_gate(gate, len(qs), validate), qs))
        return checked

    def apply_layer(self, gates):
        """Apply one single-qubit gate to every qubit: ``(n, 2, 2)`` or ``(B, n, 2, 2)``."""
        g = self._check_layer(gates)
        unitary = self._unitary(g)
        with self._kept_if_it_fails(check_norm=not unitary):
            new_dtype = self._gate_dtype(g)
            if new_dtype != self.dtype:
                self.promote(new_dtype)
            g = g.to(self.dtype)
            self._apply_layer(g, unitary=unitary)
        return self

    def expect(self, pauli, shots=None, generator=None) -> torch.Tensor:
        """Expectation ``<ψ|P|ψ> / <ψ|ψ>`` of a Pauli string (see ``parse_pauli``) -> ``(B,)`` real.

        With ``shots=S`` (a positive int) it is the mean of ``S`` simulated ±1 outcomes of ``P``
        per sample instead: ``(2k - S) / S`` with ``k ~ Binomial(S, (1 + <P>) / 2)``, the exact
        distribution of the count of +1 outcomes of ``S`` independent measurements. Unbiased, with
        variance ``(1 - <P>²) / S``; reproducible with a ``torch.Generator``. The state does not
        change (each shot is a fresh copy of it, as on hardware). Its gradient is the exact
        value's (straight-through), so a model can train through shot noise.
        """
        if shots is not None:
            shots = check_shots(shots)
            check_generator(generator)
        ops = parse_pauli(pauli, self.n_qubits)
        exact = self._expect_ops(ops)
        if shots is None:
            return exact
        return shot_mean(exact, shots, generator)

    # ------------------------------------------------------------------ measurement and jumps
    def apply_kraus(self, kraus, qubit, generator=None, plain: bool = False) -> torch.Tensor:
        """One quantum-trajectory step of a single-qubit channel on ``qubit``, in place.

        ``kraus`` is ``(K, 2, 2)`` (``Σ K_k† K_k = I``, checked) or per-sample ``(B, K, 2, 2)``.
        Each sample draws its own ``k`` with probability ``||K_k ψ||² / ||ψ||²`` (read off the
        qubit's reduced density matrix), is left in ``K_k ψ`` rescaled to the norm it had, and the
        drawn ``(B,)`` int64 indices are returned. Averaged over draws, ``|ψ><ψ|`` evolves as the
        channel's ``Σ K_k ρ K_k†``. The MPS applies ``K_k`` at its orthogonality centre, so its
        canonical form stays true. A mixture of unitaries (depolarising, dephasing) skips reading
        the state: its probabilities do not depend on it; ``plain=True`` reads it anyway (the
        general path, the reference of that shortcut).
        """
        q = self._check_qubits(qubit)
        if len(q) != 1:
            raise ValueError(f"apply_kraus acts on one qubit, got {q}")
        ks = check_kraus(kraus, self.batch)
        check_generator(generator)
        with self._kept_if_it_fails(check_norm=False):
            return self._jump(ks.to(self.device), q[0], generator, plain=plain)

    def measure(self, qubits, generator=None, basis: str = "Z") -> torch.Tensor:
        """Projective measurement of ``qubits`` (an int or a sequence) -> ``(B, k)`` int64 outcomes.

        The qubits are measured one after another, each from its marginal given the outcomes
        before it (the Born rule for the joint outcome); each sample is left in its
        post-measurement state, rescaled to the norm it had. ``basis`` ``"Z"`` (outcome ``b`` is
        the eigenvalue ``(-1)**b`` of Z: ``|0>`` gives 0), ``"X"`` (``|+>`` gives 0) or ``"Y"``
        (``|+i>`` gives 0); the measured qubit is left in that basis state.
        """
        qs = self._check_measured(qubits)
        if basis not in _BASES:
            raise ValueError(f"basis must be one of {tuple(_BASES)}, got {basis!r}")
        check_generator(generator)
        projectors = _projectors(basis)
        with self._kept_if_it_fails(check_norm=False):
            out = [self._jump(projectors.to(self.device), q, generator) for q in qs]
        return torch.stack(out, dim=-1)

    def weak_measure(self, qubit, strength, generator=None) -> torch.Tensor:
        """Two-outcome weak Z measurement of ``qubit`` -> ``(B,)`` int64 outcomes, in place.

        Kraus operators ``M_b = sqrt((1 + (-1)**b g Z) / 2)`` for strength ``g`` in ``[0, 1]``:
        ``g = 1`` is the projective Z measurement (outcome 0 projects on ``|0>``), ``g = 0`` draws a
        fair coin and leaves the state alone. Outcome ``b`` has probability ``(1 + (-1)**b g <Z>) / 2``.
        """
        q = self._check_qubits(qubit)
        if len(q) != 1:
            raise ValueError(f"weak_measure acts on one qubit, got {q}")
        g = check_probability(strength, "strength")
        check_generator(generator)
        with self._kept_if_it_fails(check_norm=False):
            return self._jump(weak_kraus(g).to(self.device), q[0], generator)

    def reset(self, qubits, generator=None) -> "QuantumState":
        """Measure ``qubits`` in the Z basis and flip each outcome 1 to ``|0>``, in place; returns
        ``self``. Each sample ends with those qubits in ``|0>`` and the rest in the state the
        measurement left (a reset is the channel ``ρ -> |0><0| tr_q ρ``)."""
        qs = self._check_measured(qubits)
        check_generator(generator)
        flips = torch.stack([torch.eye(2, dtype=torch.float64), _gates.X().real.to(torch.float64)])
        with self._kept_if_it_fails(check_norm=False):
            for q in qs:
                bits = self._jump(_projectors("Z").to(self.device), q, generator)
                g = flips.to(self.device)[bits]
                self._apply_1q(g.to(self.dtype), q, unitary=True)
        return self

    def _check_measured(self, qubits) -> Tuple[int, ...]:
        """Distinct in-range qubit indices, an int or a non-empty sequence of them."""
        if isinstance(qubits, (tuple, list)) and not qubits:
            raise ValueError("no qubits to measure")
        return self._distinct_qubits(qubits)

    def _jump(self, kraus: torch.Tensor, q: int, generator, plain: bool = False) -> torch.Tensor:
        """Draw and apply one Kraus operator per sample on qubit ``q`` (inputs already checked):
        ``kraus (K, 2, 2)`` or ``(B, K, 2, 2)``; returns the ``(B,)`` indices drawn.

        A mixture of unitaries (every ``K_k† K_k = c_k I``: the depolarising and dephasing
        channels, unlike a projector or amplitude damping) is drawn with the state-independent
        ``c_k`` and applied as the unitary ``K_k / sqrt(c_k)``, without reading the state;
        ``plain=True`` takes the general path (the reference the fast one is tested against)."""
        gram = kraus.mH @ kraus  # (..., K, 2, 2)
        c = gram[..., 0, 0].real
        if not plain and bool(torch.allclose(gram, c[..., None, None] * torch.eye(2, dtype=gram.dtype,
                                                                                  device=gram.device),
                                             atol=1e-12, rtol=0)):
            probs = c.expand(self.batch, -1) if c.dim() == 1 else c
            idx = draw_categorical(probs, generator).to(self.device)
            rows = torch.arange(self.batch, device=self.device)
            chosen = kraus[rows, idx] if kraus.dim() == 4 else kraus[idx]
            chosen = chosen / probs.to(self.device)[rows, idx].sqrt().to(chosen.dtype)[:, None, None]
            new_dtype = self._gate_dtype(chosen)
            if new_dtype != self.dtype:
                self.promote(new_dtype)
            self._apply_1q(chosen.to(self.dtype), q, unitary=True)
            return idx
        rho = self._rdm1_at(q)  # (B, 2, 2), trace 1; for the MPS, the centre is now at q
        work = complex_dtype_of(rho.dtype) if (kraus.is_complex() or rho.is_complex()) else rho.dtype
        # p_k = tr(K_k ρ K_k†) = Σ_ij (K_k† K_k)_ij ρ_ji: one small matmul, no einsum path search
        g = gram.to(work).reshape(gram.shape[:-2] + (4,))  # (K, 4) or (B, K, 4)
        r = rho.detach().to(work).mT.reshape(self.batch, 4, 1)
        probs = (g @ r).squeeze(-1).real.clamp_min(0)  # (B, K) either way
        k = kraus.to(work)
        idx = draw_categorical(probs, generator).to(self.device)
        chosen = k[torch.arange(self.batch, device=self.device), idx] if k.dim() == 4 else k[idx]
        new_dtype = self._gate_dtype(chosen)
        if new_dtype != self.dtype:
            self.promote(new_dtype)
        before = self.norm()
        self._apply_1q(chosen.to(self.dtype), q, unitary=False)
        after = self.norm()
        self._scale(before / after.clamp_min(torch.finfo(after.dtype).tiny))
        return idx

    def entropy(self, base: float = 2.0) -> torch.Tensor:
        """Von Neumann entanglement entropy at every bond -> ``(B, n-1)`` (bits by default)."""
        spectra = self._schmidt_spectra(range(self.n_qubits - 1))
        if not spectra:
            return torch.zeros(self.batch, 0, dtype=self._real_dtype, device=self.device)
        return torch.stack([entropy_from_schmidt(s, base) for s in spectra], dim=-1)

    def renyi(self, alpha: float, base: float = 2.0) -> torch.Tensor:
        """Renyi-α entropy at every bond -> ``(B, n-1)``."""
        spectra = self._schmidt_spectra(range(self.n_qubits - 1))
        if not spectra:
            return torch.zeros(self.batch, 0, dtype=self._real_dtype, device=self.device)
        return torch.stack([renyi_from_schmidt(s, alpha, base) for s in spectra], dim=-1)

    def schmidt_values(self, bond: int) -> torch.Tensor:
        """Normalised Schmidt values across bond ``bond`` (between qubits bond and bond+1) -> ``(B, k)``."""
        try:
            bond = as_int(bond, "bond")
        except TypeError:
            bond = None
        if bond is None or not 0 <= bond < self.n_qubits - 1:
            raise ValueError(f"bond must be an int in [0, {self.n_qubits - 2}], got {bond!r}")
        s = self._schmidt_spectra([bond])[0]
        return s / torch.linalg.vector_norm(s, dim=-1, keepdim=True).clamp_min(torch.finfo(s.dtype).tiny)

    def rdm2(self, i: int, j: int) -> torch.Tensor:
        """Two-qubit reduced density matrix of ``(i, j)`` -> ``(B, 4, 4)``, row index ``2*b_i + b_j``."""
        qs = self._check_qubits((i, j))
        return self._rdm2(qs[0], qs[1])

    def sample(self, shots: int, generator=None) -> torch.Tensor:
        """Measure every qubit in the Z basis ``shots`` times -> ``(B, shots, n)`` int64 bits."""
        shots = check_shots(shots)
        with torch.no_grad():
            return self._sample(shots, generator)

    @property
    def _real_dtype(self) -> torch.dtype:
        return self.dtype.to_real() if self.dtype.is_complex else self.dtype

    def promote(self, dtype: torch.dtype) -> "QuantumState":
        """Hold the state in ``dtype`` from now on, in place (e.g. real -> complex before complex
        gates). Refused: a dtype the engine does not hold, and complex -> real (it would drop the
        imaginary parts)."""
        check_dtype(dtype)
        if self.dtype.is_complex and not dtype.is_complex:
            raise TypeError(f"promote: {self.dtype} -> {dtype} would drop the imaginary parts")
        self._convert(dtype)
        return self

    def apply_neighbour_gates(self, gates: torch.Tensor, firsts: Sequence[int]) -> "QuantumState":
        """Apply ``gates[..., k, :, :]`` to qubits ``(firsts[k], firsts[k] + 1)`` in order, in place.

        ``gates (P, 4, 4)`` or per-sample ``(B, P, 4, 4)`` in this state's dtype (a model's own
        gates: not checked for unitarity or finiteness)."""
        (_, gates, firsts), = self._check_program([("2q", gates, firsts)])
        for k, q in enumerate(firsts):
            self._apply_2q(gates[..., k, :, :], q, q + 1)
        return self

    def apply_program(self, ops: Sequence[tuple]) -> "QuantumState":
        """Layers in turn, in place, each in this state's dtype (a model's own gates, e.g. a QLAM
        token): ``("1q", gates)``, a unitary one-qubit layer ``(n, 2, 2)`` or ``(B, n, 2, 2)``, or
        ``("2q", gates, firsts)``, neighbour gates as ``apply_neighbour_gates``."""
        for op in self._check_program(ops):
            if op[0] == "1q":
                self._apply_layer(op[1])
            else:
                for k, q in enumerate(op[2]):
                    self._apply_2q(op[1][..., k, :, :], q, q + 1)
        return self

    def _check_program(self, ops: Sequence[tuple]) -> List[tuple]:
        """The layers as the routes take them (gates as tensors, ``firsts`` as a list of ints);
        layers of the wrong form, kind, shape, batch or dtype are refused before anything changes."""
        n, b = self.n_qubits, self.batch
        checked = []
        for op in ops:
            if not isinstance(op, (tuple, list)) or len(op) != {"1q": 2, "2q": 3}.get(op[0] if op else None, -1):
                raise ValueError(f"a layer is ('1q', gates) or ('2q', gates, firsts), got {op!r:.80}")
            kind, gates = op[0], op[1] if isinstance(op[1], torch.Tensor) else torch.as_tensor(op[1])
            if kind == "1q":
                shape = (n, 2, 2)
                checked.append((kind, gates))
            else:
                firsts = [as_int(q, "a neighbour gate's first qubit") for q in op[2]]
                if any(not 0 <= q < n - 1 for q in firsts):
                    raise ValueError(f"neighbour gates must start in [0, {n - 2}], got {firsts}")
                shape = (len(firsts), 4, 4)
                checked.append((kind, gates, firsts))
            if gates.shape[-3:] != shape or gates.dim() not in (3, 4) or (gates.dim() == 4 and gates.shape[0] != b):
                raise ValueError(f"a {kind} layer's gates must be {shape} or ({b}, *{shape}), got {tuple(gates.shape)}")
            if gates.dtype != self.dtype:
                raise TypeError(f"{kind} gates of dtype {gates.dtype} on a state of dtype {self.dtype}: "
                                f"convert the gates or promote the state first")
        return checked

    # ------------------------------------------------------------------ backend hooks
    def _convert(self, dtype: torch.dtype) -> None:
        raise NotImplementedError


    def _apply_1q(self, gate, q, unitary: bool = True):
        raise NotImplementedError

    def _apply_2q(self, gate, q0, q1):
        raise NotImplementedError

    def _apply_layer(self, gates, unitary: bool = True):
        raise NotImplementedError

    def _expect_ops(self, ops) -> torch.Tensor:
        raise NotImplementedError

    def _schmidt_spectra(self, bonds: Sequence[int]) -> List[torch.Tensor]:
        raise NotImplementedError

    def _rdm2(self, i, j):
        raise NotImplementedError

    def _sample(self, shots, generator):
        raise NotImplementedError

    def _rdm1_at(self, q: int) -> torch.Tensor:
        """Reduced density matrix of qubit ``q`` -> ``(B, 2, 2)``, trace 1."""
        raise NotImplementedError

    def _scale(self, factor: torch.Tensor) -> None:
        """Multiply each sample's amplitudes by the real ``factor`` ``(B,)``."""
        raise NotImplementedError


# ---------------------------------------------------------------------- measurement helpers

_BASES = ("Z", "X", "Y")


def _projectors(basis: str) -> torch.Tensor:
    """``(2, 2, 2)``: the projectors on the basis states of outcome 0 and 1 of ``basis``."""
    if basis == "Z":
        return torch.tensor([[[1.0, 0.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 1.0]]], dtype=torch.float64)
    v = (torch.tensor([[1, 1], [1, -1]], dtype=torch.complex128) if basis == "X"
         else torch.tensor([[1, 1j], [1, -1j]], dtype=torch.complex128)) / math.sqrt(2)
    out = torch.einsum("ki,kj->kij", v, v.conj())
    return out.real.contiguous() if basis == "X" else out


def weak_kraus(g: float) -> torch.Tensor:
    """``(2, 2, 2)``: ``M_b = sqrt((1 + (-1)**b g Z) / 2)`` for ``b = 0, 1``."""
    a, c = math.sqrt((1 + g) / 2), math.sqrt((1 - g) / 2)
    return torch.tensor([[[a, 0.0], [0.0, c]], [[c, 0.0], [0.0, a]]], dtype=torch.float64)


def check_shots(shots) -> int:
    """``shots`` as a positive int; anything else is a ValueError."""
    if isinstance(shots, bool):
        raise ValueError(f"shots must be a positive int, got {shots!r}")
    try:
        shots = as_int(shots, "shots")
    except TypeError:
        raise ValueError(f"shots must be a positive int, got {shots!r}") from None
    if shots < 1:
        raise ValueError(f"shots must be a positive int, got {shots!r}")
    return shots


def shot_mean(exact: torch.Tensor, shots, generator=None) -> torch.Tensor:
    """The mean of ``shots`` simulated ±1 outcomes of observables with expectations ``exact``
    (any shape, values in [-1, 1]: Pauli strings, Bloch components), drawn independently per
    entry: ``(2k - S) / S`` with ``k ~ Binomial(S, (1 + exact) / 2)``. Unbiased, variance
    ``(1 - exact²) / S``; the gradient is ``exact``'s (straight-through). What
    ``QuantumState.expect(pauli, shots=S)`` returns, for readouts computed some other way (e.g.
    from ``rdm1``)."""
    shots = check_shots(shots)
    check_generator(generator)
    if not isinstance(exact, torch.Tensor) or exact.is_complex() or not exact.is_floating_point():
        raise TypeError("shot_mean needs a real floating tensor of exact expectations")
    p_plus = ((1 + exact.detach()) / 2).clamp(0, 1)
    at = generator.device if generator is not None else p_plus.device
    k = torch.binomial(torch.full_like(p_plus, float(shots)).to(at), p_plus.to(at), generator=generator)
    mean = (2 * k.to(exact.device, exact.dtype) - shots) / shots
    return exact + (mean - exact.detach())


def check_generator(generator) -> None:
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")


def check_probability(p, name: str) -> float:
    """``p`` as a float in ``[0, 1]``; a ValueError otherwise."""
    if isinstance(p, bool):
        raise ValueError(f"{name} must be a number in [0, 1], got {p!r}")
    try:
        value = float(p)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number in [0, 1], got {p!r}") from None
    if not 0.0 <= value <= 1.0:  # NaN fails too
        raise ValueError(f"{name} must be in [0, 1], got {p!r}")
    return value


def check_kraus(kraus, batch: int) -> torch.Tensor:
    """Kraus operators ``(K, 2, 2)`` or per-sample ``(B, K, 2, 2)``, finite and trace-preserving
    (``Σ K_k† K_k = I`` to 1e-8); returned as a float64/complex128 tensor."""
    k = torch.as_tensor(kraus)
    if not (k.is_complex() or k.is_floating_point()):
        k = k.to(torch.float64)
    k = k.to(torch.complex128 if k.is_complex() else torch.float64)
    if k.dim() not in (3, 4) or k.shape[-2:] != (2, 2) or k.shape[-3] < 1:
        raise ValueError(f"Kraus operators must be (K, 2, 2) or (B, K, 2, 2), got {tuple(k.shape)}")
    if k.dim() == 4 and k.shape[0] != batch:
        raise ValueError(f"per-sample Kraus operators have batch {k.shape[0]}, the state has batch {batch}")
    if k.device.type == "cpu" and k.numel() <= 1024:
        # A channel's few 2x2 operators, checked at every jump of a noisy circuit: numpy's one
        # call each beats torch's dispatch on such small arrays.
        a = k.detach().resolve_conj().numpy()
        finite = bool(np.isfinite(a).all())
        total = (np.conj(np.swapaxes(a, -1, -2)) @ a).sum(-3) if finite else None
        preserving = finite and bool(np.abs(total - np.eye(2)).max() <= 1e-8)
    else:
        finite = bool(torch.isfinite(k).all())
        total = (k.mH @ k).sum(-3) if finite else None
        preserving = finite and bool((total - torch.eye(2, dtype=k.dtype, device=k.device)).abs().max() <= 1e-8)
    if not finite:
        raise ValueError("Kraus operators contain NaN or infinite entries")
    if not preserving:
        raise ValueError("Kraus operators are not trace-preserving: sum_k K_k^dag K_k != I")
    return k.detach()


def draw_categorical(probs: torch.Tensor, generator=None) -> torch.Tensor:
    """One index per row of ``probs (B, K)`` (nonnegative, any positive sum) -> ``(B,)`` int64,
    drawn with ``generator`` on its device."""
    p = probs.detach().to(torch.float64)
    if generator is not None:
        p = p.to(generator.device)
    return torch.multinomial(p, 1, generator=generator).squeeze(-1)
