"""QLAM: a sequence model whose hidden state is an n-qubit quantum memory.

Per token ``x_t (B, F)``::

    a_t = W_e x_t + b_e                       encoding angles, k per qubit
    |ψ_t> = U_ent(θ) · ⊗_i R(a_{t,i}) |ψ_{t-1}>   (with re-uploading: R before every layer)
    features_t = [ m_t·b_i  (query),  b_i (local X/Y/Z),  <Z_i Z_{i+1}> ]
    logits = head(features_T)  or  head(mean_t features_t)  or  head(Σ_t α_t features_t)
             or  head([mean_{t in segment s} features_t  for s = 1..S])

with ``α = softmax_t(w_p·x_t + b_p [+ p_t] [+ u·features_t])`` for ``readout_at="attn"``: by
default the pooling weights depend on the tokens only; a learned bias per position
(``pool_positions``) and a score from the memory's own readout (``pool_memory``) are options.
Streaming keeps a running (max, normaliser, weighted sum) of constant size in every case.
``readout_at="segments"`` reads the memory per segment of ``segment_length`` tokens instead: the
head sees *when* the memory held what (S running sums, still constant size).

where ``b_i`` is qubit i's Bloch vector and ``m_t`` the query-dependent measurement
direction ``m_{t,i}(W_q x_t)`` on the Bloch sphere. The memory is held by the engine's
``StateVector`` (exact, fast for small n) or ``MPS`` (bond-dimension truncation, many qubits).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass
from typing import NamedTuple, Optional

import torch
import torch.nn as nn
from torch.utils.checkpoint import checkpoint

from qlam_tn import MPS, StateVector
from qlam_tn import gates as G
from qlam_tn.linalg import SPLIT_METHODS
from qlam_tn import statevector
from qlam_tn.dense_scan import dense_ry_scan, factored_ry_scan
from qlam_tn.memory import (apply_dense, bloch_vectors, brickwork_factors, dense_unitary, neighbour_zz, token_layers,
                             rotation_layer)
from qlam_tn.models.common import check_input
from qlam_tn.models.readout_protocols import check_protocol, protocol_features

ENCODINGS = {"ry": "y", "ry_rz": "yz", "rz_ry_rz": "zyz"}
ENTANGLERS = ("cz", "cnot", "su4")
READOUT_PARTS = ("query", "xyz", "zz")
BACKENDS = ("auto", "mps", "statevector")
READOUT_AT = ("last", "every", "attn", "segments")
HEAD_NORMS = ("layer", "batch")

# Largest n for which backend="auto" picks the dense StateVector: set when both backends were
# written (2e3d059); `qlam scale` times both against n (docs/results/scaling.md).
AUTO_STATEVECTOR_MAX_QUBITS = 12
# Up to this n the statevector backend multiplies by the entangler as one dense (2^n x 2^n)
# matrix (2^20 entries at n = 10); above it, gate by gate.
DENSE_ENTANGLER_MAX_QUBITS = 10


@dataclass
class QLAMConfig:
    """Every choice of the QLAM cell, validated at construction.

    Attributes:
        n_qubits: qubits in the memory (>= 1; >= 2 for entanglers and ``zz``).
        bond_dim: MPS bond cap (``None``: exact, no cap).
        cutoff: MPS singular-value cutoff (quimb's ``rsum2`` mode).
        depth: brickwork layers per token (alternating even/odd pairs), >= 1.
        encoding: rotations per qubit from ``W_e x_t + b_e``: ``ry`` | ``ry_rz`` | ``rz_ry_rz``.
        reupload: re-apply the token's rotations before every entangling layer.
        encoding_scale: init std of ``W_e`` times √F (small: the encoding starts near the
            identity). 0.1 gave 90.2 ± 1.0 % test on row-level mnist10k against 68.3 ± 4.4 %
            for 0.5 (3 seeds, docs/results/row_mnist10k.md).
        entangler: ``cz`` | ``cnot`` (fixed gate + trainable single-qubit rotations per layer) or
            ``su4`` (a trainable general two-qubit unitary per pair: SO(4) in real mode).
        readout: ``+``-joined parts of ``query`` (query-dependent directions), ``xyz`` (local
            Bloch vectors), ``zz`` (neighbour correlators).
        query_heads: measurement directions per qubit computed from each token (``query`` part):
            ``n · query_heads`` query features.
        readout_at: ``last`` (features of the final token), ``every`` (mean over tokens) or
            ``attn`` (softmax-weighted sum over tokens, weights scored from each token by a
            linear map: ``F + 1`` extra parameters) or ``segments`` (the mean over each of
            ``segments`` consecutive segments of ``segment_length`` tokens, concatenated: ``S·D``
            features; at pixel level, 28 segments of 28 tokens are the image's rows).
        pool_positions: with ``readout_at="attn"``, a learned score bias for each of the first
            ``pool_positions`` token positions (0: none). At pixel level a token is one scalar, so
            token-only scores cannot say *when* to read the memory; this lets them
            (``pool_positions`` extra parameters; longer sequences are refused).
        pool_memory: with ``readout_at="attn"``, add ``u·f_t`` to the scores: the weights then
            depend on what the memory reads at each token, not only on the token (``D`` extra
            parameters, zero init). Still streamable: ``f_t`` is computed at every token anyway.
        segments, segment_length: with ``readout_at="segments"``, the number of segments and
            their length in tokens (both >= 1; longer sequences than their product are refused;
            a segment not yet complete is its partial sum over ``segment_length``).
        backend: ``mps`` | ``statevector`` | ``auto`` (statevector up to 12 qubits).
        real: real-amplitude circuits (RY encodings, real entanglers): float arithmetic.
        checkpoint_every: recompute token chunks of this length in backward (bounded memory).
        head_hidden: hidden width of the classifier MLP; ``0`` makes the head linear (a
            normalisation without its own affine parameters, which the linear layer absorbs,
            then one linear layer): the end-to-end counterpart of a logistic-regression probe.
        head_norm: the classifier's input normalisation: ``layer`` (LayerNorm: across the
            features of a sample) or ``batch`` (BatchNorm: each feature over the batch, running
            statistics at evaluation). Pooled readouts of a gentle memory are small variations
            around per-feature offsets, which LayerNorm leaves in place and BatchNorm removes.
        grad_eps: Lorentzian broadening of the MPS SVD backward.
        split: how the MPS memory splits a two-site update (``TruncationPolicy.split``, the one
            decision): ``auto`` (the SVD under autograd and in float32), ``gram`` (``eigh`` of the
            smaller Gram matrix everywhere, also in training: faster, and exact wherever
            ``bond_dim`` or a cutoff above ~1e-7 of the weight decides the cut; see
            ``qlam_tn.linalg.gram_split``) or ``svd`` (always the SVD, the reference).
        fast_path: use the hand-differentiated dense scan (``qlam_tn.dense_scan``) where it
            applies (statevector backend, real, ``ry`` encoding, no re-uploading, readout
            without ``zz``); ``False`` forces the plain autograd path it is tested against.
        readout_protocol: how the memory is read (``qlam_tn.models.readout_protocols``):
            ``exact`` (expectations, free: the default), ``restart`` (the same reads from
            ``shots`` shots each), ``end`` (one read after the last token; ``readout_at="last"``
            sequence outputs only), ``window`` (the read at t from the last ``window`` tokens run
            from a fresh memory), ``collapse`` (``shots`` copies measured projectively at every
            read, carried on from the collapsed state), ``weak`` (as collapse, a weak
            measurement of strength ``weak_strength``). Evaluation settings: the weights do not
            depend on them.
        shots: shots per read and setting (``None``: expectations), copies for collapse/weak.
        window: tokens per read for ``readout_protocol="window"``.
        weak_strength: ``g`` in (0, 1] for ``readout_protocol="weak"``.
        noise: ``None``, a depolarising rate ``p``, or ``"kind:p"`` (``depolarizing``,
            ``amplitude_damping``, ``dephasing``): that channel after every gate of the token
            circuit, as quantum trajectories.
        trajectories: noisy runs averaged per read when ``noise`` is set and ``shots`` is not.
    """

    n_qubits: int = 8
    bond_dim: Optional[int] = None
    cutoff: float = 1e-12
    depth: int = 2
    encoding: str = "ry"
    reupload: bool = False
    encoding_scale: float = 0.1
    entangler: str = "cz"
    readout: str = "query+xyz"
    query_heads: int = 1
    readout_at: str = "every"
    pool_positions: int = 0
    pool_memory: bool = False
    segments: int = 0
    segment_length: int = 0
    backend: str = "auto"
    real: bool = True
    checkpoint_every: Optional[int] = None
    head_hidden: int = 64
    head_norm: str = "layer"
    grad_eps: float = 1e-12
    split: str = "auto"
    fast_path: bool = True
    readout_protocol: str = "exact"
    shots: Optional[int] = None
    window: Optional[int] = None
    weak_strength: Optional[float] = None
    noise: Optional[object] = None
    trajectories: int = 16

    def __post_init__(self):
        def _int(name, lo):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int):
                raise TypeError(f"{name} must be an int, got {v!r}")
            if v < lo:
                raise ValueError(f"{name} must be >= {lo}, got {v}")

        _int("n_qubits", 1)
        _int("depth", 1)
        _int("head_hidden", 0)
        _int("query_heads", 1)
        _int("pool_positions", 0)
        _int("segments", 0)
        _int("segment_length", 0)
        if self.bond_dim is not None:
            _int("bond_dim", 1)
        if self.checkpoint_every is not None:
            _int("checkpoint_every", 1)
        if self.encoding not in ENCODINGS:
            raise ValueError(f"unknown encoding {self.encoding!r}; choose one of {sorted(ENCODINGS)}")
        if self.entangler not in ENTANGLERS:
            raise ValueError(f"unknown entangler {self.entangler!r}; choose one of {ENTANGLERS}")
        if self.backend not in BACKENDS:
            raise ValueError(f"unknown backend {self.backend!r}; choose one of {BACKENDS}")
        if self.head_norm not in HEAD_NORMS:
            raise ValueError(f"unknown head_norm {self.head_norm!r}; choose one of {HEAD_NORMS}")
        if self.readout_at not in READOUT_AT:
            raise ValueError(f"unknown readout_at {self.readout_at!r}; choose one of {READOUT_AT}")
        parts = self.readout.split("+")
        bad = [p for p in parts if p not in READOUT_PARTS]
        if bad or not parts or len(set(parts)) != len(parts):
            raise ValueError(f"unknown or repeated readout part(s) {bad or parts}; "
                             f"join parts of {READOUT_PARTS} with '+', e.g. 'query+xyz'")
        if "zz" in parts and self.n_qubits < 2:
            raise ValueError("readout 'zz' needs n_qubits >= 2")
        if self.real and self.encoding != "ry":
            raise ValueError(f"real=True needs encoding='ry' (got {self.encoding!r}: RZ is complex)")
        for name in ("pool_positions", "pool_memory"):
            if getattr(self, name) and self.readout_at != "attn":
                raise ValueError(f"{name} needs readout_at='attn' (got {self.readout_at!r})")
        by_segment = self.readout_at == "segments"
        if by_segment != bool(self.segments) or by_segment != bool(self.segment_length):
            raise ValueError("readout_at='segments' needs segments >= 1 and segment_length >= 1, and "
                             f"they apply only to it (got readout_at={self.readout_at!r}, "
                             f"segments={self.segments}, segment_length={self.segment_length})")
        if not isinstance(self.pool_memory, bool):
            raise TypeError(f"pool_memory must be a bool, got {self.pool_memory!r}")
        if not (self.cutoff >= 0):
            raise ValueError(f"cutoff must be >= 0, got {self.cutoff}")
        if not (self.encoding_scale >= 0):
            raise ValueError(f"encoding_scale must be >= 0, got {self.encoding_scale}")
        if self.split not in SPLIT_METHODS:
            raise ValueError(f"unknown split {self.split!r}; choose one of {SPLIT_METHODS}")
        check_protocol(self)
        self.check_memory_size()

    @property
    def readout_parts(self):
        return tuple(self.readout.split("+"))

    def check_memory_size(self) -> None:
        """Refuse a statevector memory too large for ``qlam_tn.statevector.MAX_STATE_BYTES`` at
        one sample in the smallest dtype, before any parameter is made."""
        if self.resolved_backend == "statevector":
            statevector.check_size(self.n_qubits, 1, torch.complex64 if not self.real else torch.float32)

    @property
    def resolved_backend(self) -> str:
        if self.backend != "auto":
            return self.backend
        return "statevector" if self.n_qubits <= AUTO_STATEVECTOR_MAX_QUBITS else "mps"

    def to_dict(self) -> dict:
        return asdict(self)


class TokenGates(NamedTuple):
    """What a token update needs besides the token: the entangler built from its parameters
    (``QLAM.token_gates()``). Build it once per sequence and pass it to every ``QLAM.update`` of
    that sequence; build it afresh once the parameters change.

    ``kind == "dense"``: ``payload`` is the whole entangler as one ``(2^n, 2^n)`` matrix (the
    statevector backend up to ``DENSE_ENTANGLER_MAX_QUBITS`` qubits, without re-uploading).
    ``kind == "layers"``: ``payload`` is a list with, per brickwork layer, the two-qubit gates
    ``(P, 4, 4)`` (``P`` pairs) and the one-qubit rotations after them ``(n, 2, 2)`` or ``None``.
    """

    kind: str
    payload: object

    def tensors(self) -> list:
        """Every tensor held (the ones autograd records from the parameters when built with
        gradients enabled)."""
        if self.kind == "dense":
            return [self.payload]
        return [t for pair in self.payload for t in pair if t is not None]


@dataclass
class QLAMState:
    """Streaming state: the quantum memory, the running (weighted) feature sum, the token count,
    the running softmax max and normaliser of ``attn`` pooling, and the entangler built once for
    the parameter values it was built from."""

    memory: object
    feature_sum: Optional[torch.Tensor] = None
    score_max: Optional[torch.Tensor] = None
    score_norm: Optional[torch.Tensor] = None
    tokens: int = 0
    entangler: Optional[TokenGates] = None
    param_versions: Optional[tuple] = None


def _antisymmetric(p: torch.Tensor, dim: int) -> torch.Tensor:
    """``(..., dim(dim-1)/2)`` parameters -> ``(..., dim, dim)`` antisymmetric matrices."""
    iu = torch.triu_indices(dim, dim, offset=1, device=p.device)
    a = p.new_zeros(p.shape[:-1] + (dim, dim))
    a[..., iu[0], iu[1]] = p
    return a - a.transpose(-2, -1)


def _hermitian(p: torch.Tensor, dim: int) -> torch.Tensor:
    """``(..., dim²)`` real parameters -> ``(..., dim, dim)`` Hermitian matrices."""
    iu = torch.triu_indices(dim, dim, offset=1, device=p.device)
    n_off = iu.shape[1]
    re, im, diag = p[..., :n_off], p[..., n_off:2 * n_off], p[..., 2 * n_off:]
    h = torch.zeros(p.shape[:-1] + (dim, dim), dtype=torch.complex128 if p.dtype == torch.float64 else torch.complex64,
                    device=p.device)
    h[..., iu[0], iu[1]] = torch.complex(re, im)
    h = h + h.conj().transpose(-2, -1)
    return h + torch.diag_embed(diag.to(h.dtype))


class QLAM(nn.Module):
    """The quantum memory layer: ``(B, T, F)`` tokens -> ``(B, D)`` readout features.

    Per token ``D_t = n·query_heads`` (query) ``+ 3n`` (xyz; ``2n`` in real mode, where ``<Y> = 0``)
    ``+ (n-1)`` (zz) features (``token_feature_dim``); ``D = D_t``, or ``S·D_t`` with ``S`` segments.

    The cell, for callers that drive the memory token by token (``forward``, ``step`` and the
    studies are built from it)::

        gates = qlam.token_gates()               # the entangler, once per sequence
        memory = qlam.new_memory(B)              # |0…0>: StateVector or MPS (``qlam.backend``)
        for t in range(T):
            qlam.update(memory, x[:, t], gates)  # token x_t (B, F), in place
            f_t = qlam.read(memory, x[:, t])     # (B, D_t)
    """

    def __init__(self, input_dim: int, config: Optional[QLAMConfig] = None, **overrides):
        super().__init__()
        if isinstance(input_dim, bool) or not isinstance(input_dim, int) or input_dim < 1:
            raise ValueError(f"input_dim must be a positive int, got {input_dim!r}")
        cfg = config or QLAMConfig(**overrides)
        if config is not None and overrides:
            cfg = QLAMConfig(**{**config.to_dict(), **overrides})
        self.config = cfg
        self.input_dim = input_dim
        n, k = cfg.n_qubits, len(ENCODINGS[cfg.encoding])
        self.encoder = nn.Linear(input_dim, n * k)
        nn.init.normal_(self.encoder.weight, std=cfg.encoding_scale / math.sqrt(input_dim))
        nn.init.zeros_(self.encoder.bias)
        n_layers = cfg.depth
        self._pairs = [len(range(l % 2, n - 1, 2)) for l in range(n_layers)]
        if cfg.entangler == "su4":
            per_gate = 6 if cfg.real else 16
            self.entangler_params = nn.ParameterList(
                [nn.Parameter(0.1 * torch.randn(p, per_gate)) for p in self._pairs])
        else:
            rot = 1 if cfg.real else 2  # RY (and RZ) after every layer
            self.entangler_params = nn.ParameterList(
                [nn.Parameter(0.1 * torch.randn(n, rot)) for _ in range(n_layers)])
        parts = cfg.readout_parts
        h = cfg.query_heads
        self.query = nn.Linear(input_dim, n * h * (1 if cfg.real else 2)) if "query" in parts else None
        # Token-scored pooling weights; zero init starts as the plain mean ("every").
        self.pool = nn.Linear(input_dim, 1) if cfg.readout_at == "attn" else None
        if self.pool is not None:
            nn.init.zeros_(self.pool.weight)
            nn.init.zeros_(self.pool.bias)
        # Per-position score bias (zero init: the token-only scores at the start).
        self.pool_position_bias = nn.Parameter(torch.zeros(cfg.pool_positions)) if cfg.pool_positions else None
        self.token_feature_dim = (n * h if "query" in parts else 0) \
            + ((2 if cfg.real else 3) * n if "xyz" in parts else 0) + (n - 1 if "zz" in parts else 0)
        self.feature_dim = self.token_feature_dim * (cfg.segments or 1)
        # Memory-dependent score term u·f_t (zero init: the token-only scores at the start).
        self.pool_memory = nn.Linear(self.token_feature_dim, 1, bias=False) if cfg.pool_memory else None
        if self.pool_memory is not None:
            nn.init.zeros_(self.pool_memory.weight)

    # ------------------------------------------------------------------ circuit pieces
    @property
    def _real_dtype(self) -> torch.dtype:
        return self.encoder.weight.dtype

    @property
    def _state_dtype(self) -> torch.dtype:
        r = self._real_dtype
        if self.config.real:
            return r
        return torch.complex64 if r == torch.float32 else torch.complex128

    def layer_gates(self):
        """Per brickwork layer: the two-qubit gates ``(P, 4, 4)`` and the rotations after them
        ``(n, 2, 2)`` or None, from the current parameters (what a gate-by-gate run applies)."""
        return self._layer_gates()

    @property
    def protocol_active(self) -> bool:
        """Whether reads follow a readout protocol other than free exact expectations."""
        return self.config.readout_protocol != "exact" or self.config.noise is not None

    def _layer_gates(self):
        """Per layer: two-qubit gates ``(P, 4, 4)`` and the rotations after them ``(n, 2, 2)`` or None."""
        cfg, dt = self.config, self._state_dtype
        out = []
        for l, p in enumerate(self.entangler_params):
            if cfg.entangler == "su4":
                if cfg.real:
                    gates = torch.linalg.matrix_exp(_antisymmetric(p, 4))
                else:
                    gates = torch.linalg.matrix_exp(1j * _hermitian(p, 4))
                out.append((gates.to(dt), None))
            else:
                fixed = (G.CZ if cfg.entangler == "cz" else G.CNOT)(dtype=dt, device=p.device)
                gates = fixed.expand(self._pairs[l], 4, 4)
                kinds = "y" if cfg.real else "yz"
                rots = rotation_layer(p.unsqueeze(0), kinds)[0].to(dt)
                out.append((gates, rots))
        return out

    # ------------------------------------------------------------------ the cell
    @property
    def backend(self) -> str:
        """The memory's backend, ``"statevector"`` or ``"mps"`` (``auto`` resolved by qubit count)."""
        return self.config.resolved_backend

    def token_gates(self) -> TokenGates:
        """The entangler as a token update takes it, built from the current parameters: a dense
        ``(2^n, 2^n)`` matrix (statevector backend, ``n <= DENSE_ENTANGLER_MAX_QUBITS``, no
        re-uploading) or the brickwork layer gates. Built with gradients when they are enabled."""
        layers = self._layer_gates()
        if (self.backend == "statevector" and not self.config.reupload
                and self.config.n_qubits <= DENSE_ENTANGLER_MAX_QUBITS):
            parities = [l % 2 for l in range(len(layers))]
            rots = [r for _, r in layers]
            U = dense_unitary(self.config.n_qubits, [g for g, _ in layers], parities,
                              rots if rots[0] is not None else None)
            return TokenGates("dense", U)
        return TokenGates("layers", layers)

    def new_memory(self, batch: int, device=None):
        """A fresh memory ``|0…0>`` for ``batch`` sequences: a ``StateVector`` (``(B, 2, …, 2)``)
        or an ``MPS`` (sites ``(B, 1, 2, 1)``, truncating with this model's ``bond_dim``,
        ``cutoff`` and ``grad_eps``) as ``backend`` says, in this model's state dtype (real or
        complex of the parameters' precision), on ``device`` (default: the parameters' device)."""
        cfg = self.config
        device = self.encoder.weight.device if device is None else device
        if self.backend == "statevector":
            return StateVector.zeros(cfg.n_qubits, batch=batch, dtype=self._state_dtype, device=device)
        memory = MPS.zeros(cfg.n_qubits, batch=batch, max_bond=cfg.bond_dim, cutoff=cfg.cutoff,
                           dtype=self._state_dtype, device=device, grad_eps=cfg.grad_eps)
        if cfg.split != memory.policy.split:  # MPS.zeros takes no split: the policy's field set here
            memory.policy = dataclasses.replace(memory.policy, split=cfg.split)
        return memory

    def update(self, memory, x_t: torch.Tensor, gates: Optional[TokenGates] = None) -> None:
        """Apply one token ``x_t (B, F)`` to ``memory`` (batch B, from ``new_memory``) in place:
        the encoding rotations ``R(W_e x_t + b_e)``, then the entangler (with ``reupload``, the
        rotations again before every layer). ``gates``: ``token_gates()``, built here when None
        (pass it to every token of a sequence to build it once). Unchecked: ``forward`` and
        ``step`` validate their inputs, this is their inner step."""
        cfg = self.config
        if gates is None:
            gates = self.token_gates()
        b = x_t.shape[0]
        angles = self.encoder(x_t).reshape(b, cfg.n_qubits, -1)
        rot = rotation_layer(angles, ENCODINGS[cfg.encoding])
        if rot.dtype != memory.dtype:
            rot = rot.to(memory.dtype)
        kind, payload = gates
        if kind == "dense":
            token_layers(memory, [("1q", rot)])
            apply_dense(memory, payload)
            return
        layers = []
        for l, (two_qubit, after) in enumerate(payload):
            if l == 0 or cfg.reupload:
                layers.append(("1q", rot))
            layers.append(("2q", two_qubit, l % 2))
            if after is not None:
                layers.append(("1q", after))
        token_layers(memory, layers)  # on an MPS outside autograd: one compiled call per sample

    def read(self, memory, x_t: torch.Tensor) -> torch.Tensor:
        """Readout features ``(B, token_feature_dim)`` of ``memory`` as it stands, queried by the
        token ``x_t (B, F)``: query-direction projections ``(B, n·query_heads)``, local Bloch
        vectors ``(B, 2n)`` (real) or ``(B, 3n)``, neighbour ``<Z_i Z_{i+1}> (B, n-1)``, in that
        order, for the parts of ``readout``."""
        cfg = self.config
        parts = cfg.readout_parts
        feats = []
        if "query" in parts or "xyz" in parts:
            bloch = bloch_vectors(memory).to(self._real_dtype)  # (B, n, 3)
            if "query" in parts:
                q = self.query(x_t).reshape(x_t.shape[0], cfg.n_qubits, cfg.query_heads, -1)
                theta = q[..., 0]  # (B, n, heads)
                if cfg.real:
                    m = torch.stack([torch.sin(theta), torch.cos(theta)], dim=-1)
                    feats.append((m * bloch[:, :, None, [0, 2]]).sum(-1).flatten(1))
                else:
                    phi = q[..., 1]
                    m = torch.stack([torch.sin(theta) * torch.cos(phi), torch.sin(theta) * torch.sin(phi),
                                     torch.cos(theta)], dim=-1)
                    feats.append((m * bloch[:, :, None]).sum(-1).flatten(1))
            if "xyz" in parts:
                feats.append((bloch[..., [0, 2]] if cfg.real else bloch).flatten(1))
        if "zz" in parts:
            feats.append(neighbour_zz(memory).to(self._real_dtype))
        return torch.cat(feats, dim=-1)

    # ------------------------------------------------------------------ the sequence model
    def _check_input(self, x: torch.Tensor, rank: int):
        check_input(x, self.input_dim, token=rank == 2)
        # The other models let NaN through to their outputs; a quantum memory would carry it
        # into every later token's state, so it is refused here.
        if not bool(torch.isfinite(x).all()):
            raise ValueError("input contains NaN or infinite values")

    def _adopt(self, memory):
        """A copy of a given ``memory`` that truncates as this model's own would (its bond cap,
        cutoff and gradient broadening) and counts discarded weight from zero."""
        if isinstance(memory, StateVector):
            return memory.copy()
        fresh = self.new_memory(memory.batch, memory.device)
        return MPS(list(memory.tensors), memory.center, fresh.policy)

    def _check_memory(self, memory, batch: int, device):
        kind = StateVector if self.backend == "statevector" else MPS
        if not isinstance(memory, kind):
            raise TypeError(f"memory must be a {kind.__name__} (backend {self.backend!r}), got {type(memory).__name__}")
        if memory.n_qubits != self.config.n_qubits or memory.batch != batch:
            raise ValueError(f"memory has {memory.n_qubits} qubits and batch {memory.batch}; "
                             f"this QLAM needs {self.config.n_qubits} qubits and batch {batch}")
        if memory.device != torch.device(device):
            raise ValueError(f"memory is on {memory.device}, the input on {device}")
        if memory.dtype != self._state_dtype:
            raise ValueError(f"memory dtype {memory.dtype} differs from this QLAM's state dtype {self._state_dtype}")

    @property
    def uses_fast_path(self) -> bool:
        """Whether ``forward`` runs the hand-differentiated dense scan."""
        cfg = self.config
        return (cfg.fast_path and self.backend == "statevector" and cfg.real and cfg.encoding == "ry"
                and not cfg.reupload and "zz" not in cfg.readout_parts
                and cfg.n_qubits <= DENSE_ENTANGLER_MAX_QUBITS)

    def _forward_fast(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.config.readout_at != "last"
        f = self._fast_token_features(x, last_only=not pooled)  # (B, T', D)
        if not pooled:
            return f[:, -1]
        return self._pool(x, f)

    def _fast_token_features(self, x: torch.Tensor, last_only: bool) -> torch.Tensor:
        """Per-token readout features ``(B, T, D_t)`` by the dense scan (``(B, 1, D_t)``, the last
        token's, with ``last_only``): the scan yields every token's Bloch vectors anyway."""
        cfg = self.config
        b, t_len, _ = x.shape
        angles = self.encoder(x)  # (B, T, n)
        layers = self._layer_gates()
        gates, rots = [g for g, _ in layers], [r for _, r in layers]
        rots = rots if rots[0] is not None else None
        parities = [l % 2 for l in range(len(layers))]
        # Depth <= 2 brickworks factor into per-group matrices (folded into the per-token
        # rotations) and a small tail: per token a 2^w instead of a 2^n matmul (w = 5 at n = 8).
        factors = brickwork_factors(cfg.n_qubits, gates, parities, rots)
        if factors is not None:
            bloch = factored_ry_scan(angles, *factors, checkpoint_every=cfg.checkpoint_every)
        else:
            unitary = dense_unitary(cfg.n_qubits, gates, parities, rots)
            bloch = dense_ry_scan(angles, unitary, cfg.checkpoint_every)
        # bloch (B, T, n, 2): <X_q>, <Z_q>
        if last_only:
            bloch, x = bloch[:, -1:], x[:, -1:]
        feats = []
        if "query" in cfg.readout_parts:
            theta = self.query(x).view(b, x.shape[1], cfg.n_qubits, cfg.query_heads)  # (B, T', n, heads)
            m = torch.stack([torch.sin(theta), torch.cos(theta)], dim=-1)
            feats.append((m * bloch[..., None, :]).sum(-1).flatten(2))
        if "xyz" in cfg.readout_parts:
            feats.append(bloch.flatten(2))
        return torch.cat(feats, dim=-1)  # (B, T', D)

    def token_scores(self, x: torch.Tensor) -> torch.Tensor:
        """``attn`` pooling scores from the tokens ``x (B, T, F)`` alone -> ``(B, T)``:
        ``w·x_t + b [+ p_t]`` (without the ``pool_memory`` term, which needs the readout)."""
        scores = self.pool(x).squeeze(-1)
        if self.pool_position_bias is not None:
            scores = scores + self.pool_position_bias[: x.shape[1]]
        return scores

    def _pool(self, x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        """Pool per-token features ``f (B, T, D)`` of tokens ``x (B, T, F)`` into ``(B, D)``:
        the mean (``every``) or ``Σ_t softmax_t(w·x_t + b [+ p_t] [+ u·f_t]) f_t`` (``attn``);
        ``(B, S·D)`` segment means for ``segments``."""
        cfg = self.config
        if cfg.readout_at == "segments":
            b, t_len, d = f.shape
            padded = f.new_zeros(b, cfg.segments * cfg.segment_length, d)
            padded[:, :t_len] = f
            return padded.view(b, cfg.segments, cfg.segment_length, d).sum(2).flatten(1) / cfg.segment_length
        if self.pool is None:
            return f.mean(1)
        scores = self.token_scores(x)
        if self.pool_memory is not None:
            scores = scores + self.pool_memory(f).squeeze(-1)
        return torch.einsum("bt,btd->bd", torch.softmax(scores, dim=1), f)

    def _check_length(self, t_len: int) -> None:
        """Refuse sequences longer than the learned position biases or the segments cover."""
        cfg = self.config
        limit = cfg.pool_positions
        if limit and t_len > limit:
            raise ValueError(f"sequence of {t_len} tokens is longer than pool_positions={limit} "
                             f"(this model learned pooling biases for {limit} positions)")
        covered = cfg.segments * cfg.segment_length
        if covered and t_len > covered:
            raise ValueError(f"sequence of {t_len} tokens is longer than segments={cfg.segments} x "
                             f"segment_length={cfg.segment_length} = {covered} tokens")

    def features(self, x: torch.Tensor, memory=None) -> torch.Tensor:
        """Every token's readout, ``x (B, T, F)`` -> ``(B, T, D_t)``: row ``t`` is
        ``read(memory after x_0..x_t, x_t)``, the memory measured (for the ``query`` part) in
        directions the token itself queries, so it depends on ``x_0..x_t`` only (causal). These are the features the
        pooled readouts (``every``, ``attn``, ``segments``) pool; the dense scan computes them for
        every token at no extra cost. ``memory`` as in ``forward``; ``readout_at`` plays no part.
        """
        self._check_input(x, 3)
        x = x.to(self._real_dtype)
        if self.protocol_active:
            self._check_protocol_call(memory)
            return protocol_features(self, x, every=True, generator=self.readout_generator)
        if memory is None and self.uses_fast_path:
            self._last_memory = None
            return self._fast_token_features(x, last_only=False)
        return self._run(x, memory, every=True)

    # ``torch.Generator`` for the shots, measurements and noise of a readout protocol (None:
    # torch's global generator); set it to make a protocol's evaluation reproducible.
    readout_generator = None

    def _check_protocol_call(self, memory) -> None:
        if memory is not None:
            raise ValueError(f"readout_protocol={self.config.readout_protocol!r} runs each read from "
                             "a fresh memory (or its copies); a given starting memory needs 'exact'")

    def exact_features(self, x: torch.Tensor, every: bool = True) -> torch.Tensor:
        """Free exact reads of ``x (B, T, F)`` from ``|0…0>``, whatever the protocol: every
        token's ``(B, T, D_t)`` (``every``), else the last token's ``(B, 1, D_t)``; the dense
        scan where it applies. What ``readout_protocols`` adds its shot noise to."""
        if self.uses_fast_path:
            self._last_memory = None
            return self._fast_token_features(x, last_only=not every)
        return self._run(x, None, every=every)

    def forward(self, x: torch.Tensor, memory=None) -> torch.Tensor:
        """``x (B, T, F)`` -> readout features ``(B, D)``.

        ``memory``: start from a copy of this state (the backend's ``MPS`` or ``StateVector``,
        batch B, ``n_qubits`` qubits, this model's dtype and the input's device; e.g. one left
        by an earlier sequence) instead of ``|0…0>``. The copy truncates with this model's bond
        cap and cutoff, and ``last_discarded_weight`` counts only this call's cuts. The caller's
        state is not modified. Runs the general (autograd) path.
        """
        self._check_input(x, 3)
        self._check_length(x.shape[1])
        x = x.to(self._real_dtype)
        if self.protocol_active:
            self._check_protocol_call(memory)
            pooled = self.config.readout_at != "last"
            f = protocol_features(self, x, every=pooled, generator=self.readout_generator)
            return self._pool(x, f) if pooled else f[:, -1]
        if memory is None and self.uses_fast_path:
            self._last_memory = None  # the dense scan keeps no state object
            return self._forward_fast(x)
        pooled = self.config.readout_at != "last"
        f = self._run(x, memory, every=pooled)
        return self._pool(x, f) if pooled else f[:, -1]

    def _run(self, x: torch.Tensor, memory, every: bool) -> torch.Tensor:
        """The general (autograd) path: every token's features ``(B, T, D_t)`` (``every``), else
        the last token's ``(B, 1, D_t)``; ``memory`` (or None: ``|0…0>``) as in ``forward``."""
        b, t_len, _ = x.shape
        if memory is not None:
            self._check_memory(memory, b, x.device)
        ent = self.token_gates()
        memory = self.new_memory(b, x.device) if memory is None else self._adopt(memory)
        self._last_memory = memory
        chunk = self.config.checkpoint_every
        if chunk is None or not torch.is_grad_enabled():
            feats = []
            for t in range(t_len):
                self.update(memory, x[:, t], ent)
                if every:
                    feats.append(self.read(memory, x[:, t]))
            return torch.stack(feats, 1) if every else self.read(memory, x[:, -1]).unsqueeze(1)
        return self._forward_checkpointed(x, every, memory, ent, chunk)

    @property
    def last_memory(self):
        """The memory after the last token of the last ``forward`` (``MPS`` or ``StateVector``,
        batch B); ``None`` before any forward and after one on the fast path (``uses_fast_path``),
        which holds no state object."""
        return getattr(self, "_last_memory", None)

    @property
    def last_discarded_weight(self) -> Optional[torch.Tensor]:
        """``(B,)`` weight the MPS truncation cut during the last forward (detached); ``None`` for
        the statevector backend, which never truncates."""
        mem = self.last_memory
        return mem.discarded_weight.detach() if isinstance(mem, MPS) else None

    @property
    def last_fidelity_estimate(self) -> Optional[torch.Tensor]:
        """``(B,)`` product of (1 - fraction cut) over the last forward's truncations (detached)."""
        mem = self.last_memory
        return mem.fidelity_estimate.detach() if isinstance(mem, MPS) else None

    def _forward_checkpointed(self, x, every, memory, ent, chunk):
        """Token chunks recomputed in backward: activations of one chunk plus one state per chunk
        (and, with ``every``, the per-token features ``(B, T, D)``, all returned; else the last
        token's ``(B, 1, D)``)."""
        t_len = x.shape[1]
        is_mps = isinstance(memory, MPS)
        policy = memory.policy if is_mps else None

        def pack(mem):
            return (*mem.tensors, mem.discarded_weight, mem.log_fidelity) if is_mps else (mem.psi,)

        def run(xc, centre, *state):
            if is_mps:
                mem = MPS(list(state[:-2]), centre, policy, state[-2], state[-1])
            else:
                mem = StateVector(state[0])
            feats = []
            for t in range(xc.shape[1]):
                self.update(mem, xc[:, t], ent)
                if every:
                    feats.append(self.read(mem, xc[:, t]))
            chunk_feats = torch.stack(feats, 1) if every else x.new_zeros(())
            return chunk_feats, (mem.center if is_mps else None), *pack(mem)

        state, centre, feats = pack(memory), (memory.center if is_mps else None), []
        for start in range(0, t_len, chunk):
            # The entangler tensors are captured by closure: non-reentrant checkpointing
            # tracks them, and the centre (a Python int) is an explicit input so that the
            # recomputation in backward starts where the forward chunk did.
            out = checkpoint(run, x[:, start:start + chunk], centre, *state, use_reentrant=False)
            feats.append(out[0])
            centre, state = out[1], out[2:]
        mem = MPS(list(state[:-2]), centre, policy, state[-2], state[-1]) if is_mps else StateVector(state[0])
        self._last_memory = mem
        return torch.cat(feats, 1) if every else self.read(mem, x[:, -1]).unsqueeze(1)

    def init_state(self, batch: int, device=None) -> QLAMState:
        """A fresh streaming state for ``batch`` sequences."""
        return QLAMState(self.new_memory(batch, device))

    def memory_floats(self) -> int:
        """Real numbers the memory holds per sequence (a complex amplitude counts twice):
        ``2^n`` for a real statevector, ``2·2^n`` complex; for an MPS the most it can hold,
        ``Σ_i χ_{i-1}·2·χ_i`` over its sites with ``χ_i = min(2^i, 2^(n-i), bond_dim)`` (a state
        that has not yet entangled that much holds less; without a cap this exceeds the statevector's
        ``2^n``: 168 against 64 at n = 6)."""
        cfg = self.config
        scalar = 1 if cfg.real else 2
        n = cfg.n_qubits
        if self.backend == "statevector":
            return scalar * 2 ** n
        cap = cfg.bond_dim

        def chi(i):  # bond between sites i-1 and i; 1 at both ends
            c = min(2 ** i, 2 ** (n - i))
            return c if cap is None else min(c, cap)

        return scalar * sum(chi(i) * 2 * chi(i + 1) for i in range(n))

    def state_floats(self, seq_len: int | None = None) -> int:
        """Floats ``step`` carries token to token per sequence: the memory (``memory_floats``)
        plus the running pooling sums of the sequence readouts: ``D`` for ``every``, ``D + 2``
        for ``attn`` (sum, maximum score, normaliser), ``S·D`` for ``segments``, none for
        ``last`` (the per-position readout). Independent of ``seq_len``."""
        pooled = {"last": 0, "every": self.token_feature_dim, "attn": self.token_feature_dim + 2,
                  "segments": self.feature_dim}[self.config.readout_at]
        return self.memory_floats() + pooled

    def step(self, x_t: torch.Tensor, state: QLAMState):
        """Feed one token ``x_t (B, F)``; returns ``(features (B, D), new state)``.

        The features equal ``forward`` on the sequence fed so far. Memory is constant per token.
        """
        self._check_input(x_t, 2)
        if self.protocol_active:
            raise ValueError(f"step streams free exact reads; readout_protocol="
                             f"{self.config.readout_protocol!r} (noise {self.config.noise!r}) runs "
                             "whole sequences through forward")
        if x_t.shape[0] != state.memory.batch:
            raise ValueError(f"token batch {x_t.shape[0]} does not match the state's batch {state.memory.batch}")
        self._check_length(state.tokens + 1)
        x_t = x_t.to(self._real_dtype)
        versions = tuple(p._version for p in self.parameters())
        ent = state.entangler if state.param_versions == versions else self.token_gates()
        # Gates never modify tensors in place, so a shallow copy keeps the old state intact.
        mem = state.memory.copy()
        self.update(mem, x_t, ent)
        f = self.read(mem, x_t)
        count = state.tokens + 1
        if self.config.readout_at == "every":
            total = f if state.feature_sum is None else state.feature_sum + f
            return total / count, QLAMState(mem, total, tokens=count, entangler=ent, param_versions=versions)
        if self.config.readout_at == "segments":
            sums = f.new_zeros(f.shape[0], self.config.segments, f.shape[1]) if state.feature_sum is None \
                else state.feature_sum.clone()
            sums[:, state.tokens // self.config.segment_length] += f / self.config.segment_length
            return sums.flatten(1), QLAMState(mem, sums, tokens=count, entangler=ent, param_versions=versions)
        if self.config.readout_at == "attn":
            # Online softmax: rescale the running sums to the new maximum score.
            score = self.pool(x_t).squeeze(-1)  # (B,)
            if self.pool_position_bias is not None:
                score = score + self.pool_position_bias[state.tokens]
            if self.pool_memory is not None:
                score = score + self.pool_memory(f).squeeze(-1)
            if state.feature_sum is None:
                top, norm, total = score, torch.ones_like(score), f
            else:
                top = torch.maximum(state.score_max, score)
                old, new = torch.exp(state.score_max - top), torch.exp(score - top)
                norm = state.score_norm * old + new
                total = state.feature_sum * old[:, None] + new[:, None] * f
            return total / norm[:, None], QLAMState(mem, total, top, norm, count, ent, versions)
        return f, QLAMState(mem, tokens=count, entangler=ent, param_versions=versions)


def classifier_head(d: int, hidden: int, num_classes: int, norm: str = "layer") -> nn.Sequential:
    """``(B, d)`` features -> ``(B, num_classes)`` logits: ``norm`` (``layer`` | ``batch``), then an
    MLP of width ``hidden`` with GELU, or with ``hidden=0`` one linear layer (the normalisation
    then without its own affine part, which the linear layer absorbs)."""
    affine = hidden > 0
    layer = (nn.LayerNorm(d, elementwise_affine=affine) if norm == "layer"
             else nn.BatchNorm1d(d, affine=affine))
    if hidden:
        return nn.Sequential(layer, nn.Linear(d, hidden), nn.GELU(), nn.Linear(hidden, num_classes))
    return nn.Sequential(layer, nn.Linear(d, num_classes))


class QLAMClassifier(nn.Module):
    """QLAM memory + MLP head (or a linear one, ``head_hidden=0``): ``(B, T, F)`` -> logits ``(B, num_classes)``."""

    def __init__(self, input_dim: int, num_classes: int, config: Optional[QLAMConfig] = None, **overrides):
        super().__init__()
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}")
        self.qlam = QLAM(input_dim, config, **overrides)
        self.config = self.qlam.config
        self.num_classes = num_classes
        self.head = classifier_head(self.qlam.feature_dim, self.config.head_hidden, num_classes,
                                    self.config.head_norm)

    def forward(self, x: torch.Tensor, memory=None) -> torch.Tensor:
        """``x (B, T, F)`` -> logits ``(B, num_classes)``; ``memory`` as in ``QLAM.forward``."""
        return self.head(self.qlam(x, memory=memory))

    def check_per_position(self) -> None:
        """Refuse per-position outputs unless ``readout_at="last"``: then the head reads each
        position's own features and ``step`` streams exactly ``forward_sequence``; the pooled
        readouts mix earlier positions' features into a sequence-level summary instead."""
        if self.config.readout_at != "last":
            raise ValueError("per-position outputs read the memory at every position with the head of "
                             f"readout_at='last'; this model has readout_at={self.config.readout_at!r} "
                             "(a pooled sequence readout): build it with readout_at='last'")

    def forward_sequence(self, x: torch.Tensor, memory=None) -> torch.Tensor:
        """Logits at every position, ``x (B, T, F)`` -> ``(B, T, num_classes)``: the head on each
        position's readout ``QLAM.features`` (the memory after tokens ``0..t`` measured in the
        directions token ``t`` queries), so position ``t`` sees tokens ``<= t``. Needs
        ``readout_at="last"`` (``check_per_position``), whose ``forward`` is the last position's
        and whose ``step`` streams these logits. A BatchNorm head normalises over all positions."""
        self.check_per_position()
        f = self.qlam.features(x, memory=memory)  # (B, T, D)
        b, t_len, d = f.shape
        return self.head(f.reshape(b * t_len, d)).view(b, t_len, -1)

    def state_floats(self, seq_len: int | None = None) -> int:
        """Floats carried token to token per sequence (``QLAM.state_floats``)."""
        return self.qlam.state_floats(seq_len)

    def init_state(self, batch: int, device=None) -> QLAMState:
        return self.qlam.init_state(batch, device)

    def step(self, x_t: torch.Tensor, state: QLAMState):
        f, state = self.qlam.step(x_t, state)
        return self.head(f), state
