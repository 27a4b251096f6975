"""Diagonal linear state-space classifier: stacked Linear Recurrent Units (LRU, Orvieto et al. 2023).

One LRU maps ``u (B, T, H)`` to ``y (B, T, H)`` through a complex diagonal state ``h_t ∈ C^N``::

    h_t = λ ⊙ h_{t-1} + γ ⊙ (B u_t)              λ, γ ∈ C^N / R^N,  B ∈ C^{N×H},  h_0 = 0
    y_t = Re(C h_t) + D ⊙ u_t                     C ∈ C^{H×N},  D ∈ R^H

with the stable exponential parameterisation ``λ = exp(-exp(ν) + i·exp(θ))``: ``|λ| =
exp(-exp(ν)) ≤ 1`` for every real ``ν`` (strictly below 1 until ``exp(ν)`` underflows the dtype's
resolution near 1, ``ν ≲ -36`` in float64), and the normalisation ``γ`` initialised to
``sqrt(1 - |λ|²)`` and trained in log space. ``|λ|`` starts uniform on the ring ``[r_min, r_max]``
and the phase ``θ`` on ``[0, max_phase]``.

The full sequence runs in parallel: ``h_t = Σ_{s≤t} λ^{t-s} v_s`` with ``v = γ ⊙ (B u)`` is a causal
convolution with the kernel ``λ^k = exp(k log λ)`` (which only decays, so no overflow), done by FFT
in ``O(T log T)``; ``diagonal_recurrence`` is the plain reference loop, used by streaming.

The classifier (S5/LRU architecture, pre-norm residual blocks, GLU between layers)::

    x (B, T, F) --Linear(F, H)--> num_layers x [ u + GLU(GELU(LRU(LayerNorm(u)))) ]
        --> [:, -1] --> LayerNorm --> Linear(H, C) --> (B, C)

    GLU(z) = a ⊙ σ(b),  (a, b) = Linear(H, 2H)(z)

Parameters (F inputs, H = d_model, N = state_size, L layers, C classes)::

    (F + 1)·H + L·(4·N·H + 3N + H + 2H + 2H² + 2H) + 2H + (H + 1)·C
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .common import SequenceClassifier, check_positive_int, check_probability


def diagonal_recurrence(log_lam: torch.Tensor, v: torch.Tensor, h0: torch.Tensor | None = None) -> torch.Tensor:
    """Reference scan ``h_t = λ h_{t-1} + v_t``: ``log_lam (N,)``, ``v (B, T, N)`` -> ``h (B, T, N)``."""
    lam = torch.exp(log_lam)
    h = torch.zeros_like(v[:, 0]) if h0 is None else h0
    out = []
    for t in range(v.shape[1]):
        h = lam * h + v[:, t]
        out.append(h)
    return torch.stack(out, dim=1)


def diagonal_scan_fft(log_lam: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Parallel form of ``diagonal_recurrence`` from ``h_0 = 0``, by FFT convolution with ``λ^k``.

    ``log_lam (N,)`` complex, ``v (B, T, N)`` complex -> ``h (B, T, N)``; ``O(B N T log T)``.
    """
    T = v.shape[1]
    k = torch.arange(T, dtype=log_lam.real.dtype, device=v.device)
    kernel = torch.exp(k.unsqueeze(1) * log_lam)  # (T, N) = λ^k, |λ^k| ≤ 1
    n = 1 << (2 * T - 1).bit_length()  # linear, not circular, convolution
    h = torch.fft.ifft(torch.fft.fft(v, n=n, dim=1) * torch.fft.fft(kernel, n=n, dim=0), n=n, dim=1)
    return h[:, :T]


class LRU(nn.Module):
    """Linear Recurrent Unit, ``(B, T, H) -> (B, T, H)``; see the module docstring for the maths."""

    def __init__(self, d_model: int, state_size: int, r_min: float, r_max: float, max_phase: float):
        super().__init__()
        H, N = d_model, state_size
        u1, u2 = torch.rand(N), torch.rand(N)
        # |λ|² uniform on [r_min², r_max²] (uniform on the ring's area), as in the paper
        nu_log = torch.log(-0.5 * torch.log(u1 * (r_max ** 2 - r_min ** 2) + r_min ** 2))
        theta_log = torch.log(max_phase * u2)
        self.nu_log = nn.Parameter(nu_log)
        self.theta_log = nn.Parameter(theta_log)
        self.gamma_log = nn.Parameter(0.5 * torch.log(-torch.expm1(-2 * torch.exp(nu_log))))
        self.B_re = nn.Parameter(torch.randn(N, H) / math.sqrt(2 * H))
        self.B_im = nn.Parameter(torch.randn(N, H) / math.sqrt(2 * H))
        self.C_re = nn.Parameter(torch.randn(H, N) / math.sqrt(N))
        self.C_im = nn.Parameter(torch.randn(H, N) / math.sqrt(N))
        self.D = nn.Parameter(torch.randn(H))

    def log_eigenvalues(self) -> torch.Tensor:
        """``log λ = -exp(ν) + i·exp(θ)``, ``(N,)`` complex."""
        return torch.complex(-torch.exp(self.nu_log), torch.exp(self.theta_log))

    def eigenvalues(self) -> torch.Tensor:
        """``λ``, ``(N,)`` complex, ``|λ| ≤ 1`` for any parameter values."""
        return torch.exp(self.log_eigenvalues())

    def _input(self, u: torch.Tensor) -> torch.Tensor:
        """``v = γ ⊙ (B u)``: ``(..., H)`` real -> ``(..., N)`` complex."""
        gamma = torch.exp(self.gamma_log)
        return torch.complex(F.linear(u, self.B_re) * gamma, F.linear(u, self.B_im) * gamma)

    def _output(self, h: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """``Re(C h) + D ⊙ u``."""
        return F.linear(h.real, self.C_re) - F.linear(h.imag, self.C_im) + self.D * u

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return self._output(diagonal_scan_fft(self.log_eigenvalues(), self._input(u)), u)

    def forward_recurrent(self, u: torch.Tensor) -> torch.Tensor:
        """The same map as ``forward``, by the sequential recurrence (reference)."""
        return self._output(diagonal_recurrence(self.log_eigenvalues(), self._input(u)), u)

    def step(self, u_t: torch.Tensor, h: torch.Tensor):
        """``u_t (B, H)``, ``h (B, N)`` complex -> ``(y_t (B, H), h_t)``."""
        h = self.eigenvalues() * h + self._input(u_t)
        return self._output(h, u_t), h


class SSMBlock(nn.Module):
    """Pre-norm residual block ``u + Dropout(GLU(GELU(LRU(LayerNorm(u)))))``, ``(B, T, H) -> (B, T, H)``."""

    def __init__(self, d_model: int, state_size: int, dropout: float, r_min: float, r_max: float,
                 max_phase: float):
        super().__init__()
        self.norm = nn.LayerNorm(d_model)
        self.lru = LRU(d_model, state_size, r_min, r_max, max_phase)
        self.glu = nn.Linear(d_model, 2 * d_model)
        self.drop = nn.Dropout(dropout)

    def _mix(self, y: torch.Tensor) -> torch.Tensor:
        return self.drop(F.glu(self.glu(self.drop(F.gelu(y))), dim=-1))

    def forward(self, u: torch.Tensor, recurrent: bool = False) -> torch.Tensor:
        z = self.norm(u)
        return u + self._mix(self.lru.forward_recurrent(z) if recurrent else self.lru(z))

    def step(self, u_t: torch.Tensor, h: torch.Tensor):
        y, h = self.lru.step(self.norm(u_t), h)
        return u_t + self._mix(y), h


@dataclass(frozen=True)
class SSMConfig:
    """Configuration of the LRU classifier, validated at construction.

    ``state_size=None`` means ``d_model``. ``r_min``/``r_max`` bound the initial ``|λ|``
    (``0 ≤ r_min < r_max < 1``; values near 1 keep long memory, as long sequences need),
    ``max_phase`` the initial phase (``0 < max_phase ≤ 2π``).
    """
    input_dim: int
    num_classes: int
    d_model: int = 64
    state_size: int | None = None
    num_layers: int = 2
    dropout: float = 0.0
    r_min: float = 0.9
    r_max: float = 0.999
    max_phase: float = 2 * math.pi

    def __post_init__(self):
        check_positive_int("d_model", self.d_model)
        if self.state_size is None:
            object.__setattr__(self, "state_size", self.d_model)
        check_positive_int("state_size", self.state_size)
        check_positive_int("num_layers", self.num_layers)
        check_probability("dropout", self.dropout)
        if not 0.0 <= self.r_min < self.r_max < 1.0:
            raise ValueError(f"need 0 <= r_min < r_max < 1, got r_min={self.r_min}, r_max={self.r_max}")
        if not 0.0 < self.max_phase <= 2 * math.pi:
            raise ValueError(f"max_phase must be in (0, 2π], got {self.max_phase}")


class SSMClassifier(SequenceClassifier):
    """Stacked-LRU diagonal state-space classifier. ``forward``: ``(B, T, F) -> (B, C)``.

    ``SSMClassifier(input_dim, num_classes, d_model=64, state_size=None, num_layers=2,
    dropout=0.0, r_min=0.9, r_max=0.999, max_phase=2π)``. ``forward`` runs each layer in
    parallel over the sequence (FFT); streaming carries one complex state ``(B, N)`` per layer:
    constant memory per token.
    """

    def __init__(self, input_dim: int, num_classes: int, d_model: int = 64, state_size: int | None = None,
                 num_layers: int = 2, dropout: float = 0.0, r_min: float = 0.9, r_max: float = 0.999,
                 max_phase: float = 2 * math.pi):
        super().__init__(input_dim, num_classes)
        self.config = cfg = SSMConfig(input_dim, num_classes, d_model, state_size, num_layers, dropout,
                                      r_min, r_max, max_phase)
        self.embed = nn.Linear(input_dim, d_model)
        self.blocks = nn.ModuleList(SSMBlock(d_model, cfg.state_size, dropout, r_min, r_max, max_phase)
                                    for _ in range(num_layers))
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, num_classes)

    def features(self, x: torch.Tensor, recurrent: bool = False) -> torch.Tensor:
        """Top-layer outputs at every position, ``(B, T, F) -> (B, T, H)``; ``recurrent=True`` uses the loop."""
        self._check_sequence(x)
        u = self.embed(x)
        for block in self.blocks:
            u = block(u, recurrent)
        return u

    def forward_sequence(self, x: torch.Tensor) -> torch.Tensor:
        """Logits at every position: ``(B, T, F) -> (B, T, C)``."""
        return self.head(self.norm(self.features(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, T, F) -> (B, C)`` logits from the last position's output."""
        return self.head(self.norm(self.features(x)[:, -1]))

    def eigenvalues(self) -> torch.Tensor:
        """``(num_layers, N)`` complex: every layer's ``λ``."""
        return torch.stack([b.lru.eigenvalues() for b in self.blocks])

    def state_floats(self, seq_len: int | None = None) -> int:
        """Floats carried token to token per sequence: one complex state of ``state_size`` per
        layer, ``2 · num_layers · state_size`` (a complex number counts twice); ``seq_len`` is not needed."""
        return 2 * self.config.num_layers * self.config.state_size

    def init_state(self, batch_size: int) -> tuple[torch.Tensor, ...]:
        """One zero complex state ``(batch_size, N)`` per layer."""
        check_positive_int("batch_size", batch_size)
        p = self._param_like()
        cdtype = torch.complex128 if p.dtype == torch.float64 else torch.complex64
        return tuple(torch.zeros(batch_size, self.config.state_size, dtype=cdtype, device=p.device)
                     for _ in self.blocks)

    def step(self, x_t: torch.Tensor, state: tuple[torch.Tensor, ...]):
        """One token ``x_t (B, F)`` -> ``(logits (B, C), new state)``."""
        self._check_token(x_t)
        u = self.embed(x_t)
        new = []
        for block, h in zip(self.blocks, state):
            u, h = block.step(u, h)
            new.append(h)
        return self.head(self.norm(u)), tuple(new)
