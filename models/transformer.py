"""Causal pre-norm Transformer encoder classifier (GPT-style blocks), with a KV cache for streaming.

::

    x (B, T, F) --Linear(F, d)--> + positions (learned or sinusoidal) --> dropout
        --> num_layers x Block --> LayerNorm --> [:, -1] --> Linear(d, C) --> (B, C)

    Block:  h = h + Attn(LN1(h))            causal multi-head self-attention, nhead heads
            h = h + MLP(LN2(h))             Linear(d, d_ff) -> GELU -> Linear(d_ff, d)

A block computes exactly what ``nn.TransformerEncoderLayer(d, nhead, d_ff, dropout,
activation="gelu", norm_first=True, batch_first=True)`` computes with a causal mask (tested with
copied weights); it is written out so that streaming can reuse the projections with a KV cache.

Streaming keeps, for every layer, the keys and values of all tokens seen so far,
``(B, nhead, t, d/nhead)`` each: **memory and time per token grow linearly with t**, unlike the
constant-size state of the RNNs, the SSM and QLAM.

Parameters (F inputs, d = d_model, f = dim_feedforward, L layers, C classes, P = max_len when
positions are learned, else 0)::

    (F + 1)·d + P·d + L·(4d² + 4d + 2·d·f + f + d + 4d) + 2d + (d + 1)·C
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .common import SequenceClassifier, check_positive_int, check_probability, require_seq_len

POSITIONS = ("learned", "sinusoidal")


@dataclass(frozen=True)
class TransformerConfig:
    """Configuration of the causal Transformer classifier, validated at construction.

    ``dim_feedforward=None`` means ``4 * d_model``. ``positions="learned"`` needs ``max_len``
    (longest sequence, and a ``max_len x d_model`` table of parameters); the default sinusoidal
    codes add no parameters, which matters at the small budgets the baselines are matched to
    (a learned table for T=784 at d_model=20 alone is 15,680 parameters). One layer and two
    heads by default: the count grows like ``12·L·d_model²`` and ``d_model`` moves in steps of
    ``nhead``, so at budgets of a few thousand parameters a deeper or wider-headed model cannot be
    matched within 10% (two layers at ~6k would be ``d_model`` 14, heads of width 7).
    """
    input_dim: int
    num_classes: int
    d_model: int = 64
    nhead: int = 2
    num_layers: int = 1
    dim_feedforward: int | None = None
    dropout: float = 0.0
    positions: str = "sinusoidal"
    max_len: int | None = None

    def __post_init__(self):
        check_positive_int("d_model", self.d_model)
        check_positive_int("nhead", self.nhead)
        check_positive_int("num_layers", self.num_layers)
        if self.d_model % self.nhead:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by nhead ({self.nhead})")
        if self.dim_feedforward is None:
            object.__setattr__(self, "dim_feedforward", 4 * self.d_model)
        check_positive_int("dim_feedforward", self.dim_feedforward)
        check_probability("dropout", self.dropout)
        if self.positions not in POSITIONS:
            raise ValueError(f"positions must be one of {POSITIONS}, got {self.positions!r}")
        if self.positions == "learned":
            if self.max_len is None:
                raise ValueError("positions='learned' needs max_len (the longest sequence)")
            check_positive_int("max_len", self.max_len)
        elif self.max_len is not None:
            check_positive_int("max_len", self.max_len)


def sinusoidal_positions(start: int, length: int, dim: int, dtype: torch.dtype, device=None) -> torch.Tensor:
    """``(length, dim)`` position codes of Vaswani et al. for positions ``start .. start+length-1``.

    Column ``2i`` holds ``sin(p / 10000^(2i/dim))``, column ``2i+1`` the matching cosine.
    Computed in float64, then cast, so a streamed token gets the same code as in a full pass.
    """
    pos = torch.arange(start, start + length, dtype=torch.float64, device=device).unsqueeze(1)
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float64, device=device) * (-math.log(10000.0) / dim))
    pe = torch.zeros(length, dim, dtype=torch.float64, device=device)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq[: dim // 2])
    return pe.to(dtype)


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention, ``(B, T, d) -> (B, T, d)``, one fused ``qkv`` projection.

    The weight layout is ``nn.MultiheadAttention``'s (``qkv`` = ``in_proj``, ``proj`` = ``out_proj``).
    """

    def __init__(self, d_model: int, nhead: int, dropout: float):
        super().__init__()
        self.nhead = nhead
        self.dropout = dropout
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)

    def _heads(self, h: torch.Tensor):
        """``(B, T, d) -> q, k, v``, each ``(B, nhead, T, d/nhead)``."""
        B, T, d = h.shape
        q, k, v = self.qkv(h).split(d, dim=-1)
        return [t.view(B, T, self.nhead, d // self.nhead).transpose(1, 2) for t in (q, k, v)]

    def _merge(self, y: torch.Tensor) -> torch.Tensor:
        B, _, T, hd = y.shape
        return self.proj(y.transpose(1, 2).reshape(B, T, self.nhead * hd))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        q, k, v = self._heads(h)
        p = self.dropout if self.training else 0.0
        return self._merge(F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True))

    def step(self, h_t: torch.Tensor, cache: tuple[torch.Tensor, torch.Tensor] | None):
        """One token ``h_t (B, 1, d)`` against the cached keys/values; returns ``(out (B, 1, d), cache)``."""
        q, k, v = self._heads(h_t)
        if cache is not None:
            k = torch.cat([cache[0], k], dim=2)
            v = torch.cat([cache[1], v], dim=2)
        p = self.dropout if self.training else 0.0
        return self._merge(F.scaled_dot_product_attention(q, k, v, dropout_p=p)), (k, v)


class Block(nn.Module):
    """Pre-norm Transformer block, ``(B, T, d) -> (B, T, d)``."""

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int, dropout: float):
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model)
        self.attn = CausalSelfAttention(d_model, nhead, dropout)
        self.ln2 = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(nn.Linear(d_model, dim_feedforward), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(dim_feedforward, d_model))
        self.drop = nn.Dropout(dropout)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        h = h + self.drop(self.attn(self.ln1(h)))
        return h + self.drop(self.mlp(self.ln2(h)))

    def step(self, h_t: torch.Tensor, cache):
        a, cache = self.attn.step(self.ln1(h_t), cache)
        h_t = h_t + self.drop(a)
        return h_t + self.drop(self.mlp(self.ln2(h_t))), cache


@dataclass(frozen=True)
class KVCache:
    """Streaming state: ``layers[i] = (k, v)``, each ``(B, nhead, t, d/nhead)``, or None before the first token."""
    t: int
    layers: tuple


class TransformerClassifier(SequenceClassifier):
    """Causal pre-norm Transformer encoder classifier. ``forward``: ``(B, T, F) -> (B, C)``.

    ``TransformerClassifier(input_dim, num_classes, d_model=64, nhead=2, num_layers=1,
    dim_feedforward=None, dropout=0.0, positions="sinusoidal", max_len=None)``.
    Position t attends to positions ``<= t`` only; the logits are read at the last position.
    Streaming (``init_state``/``step``) uses a KV cache whose memory grows with the number of
    tokens seen (see the module docstring).
    """

    def __init__(self, input_dim: int, num_classes: int, d_model: int = 64, nhead: int = 2,
                 num_layers: int = 1, dim_feedforward: int | None = None, dropout: float = 0.0,
                 positions: str = "sinusoidal", max_len: int | None = None):
        super().__init__(input_dim, num_classes)
        self.config = cfg = TransformerConfig(input_dim, num_classes, d_model, nhead, num_layers,
                                              dim_feedforward, dropout, positions, max_len)
        self.embed = nn.Linear(input_dim, d_model)
        self.pos = nn.Parameter(torch.randn(cfg.max_len, d_model) * 0.02) if positions == "learned" else None
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(d_model, nhead, cfg.dim_feedforward, dropout) for _ in range(num_layers))
        self.ln_f = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, num_classes)

    def _positions(self, start: int, length: int, like: torch.Tensor) -> torch.Tensor:
        if self.config.max_len is not None and start + length > self.config.max_len:
            raise ValueError(f"sequence of length {start + length} exceeds max_len={self.config.max_len}")
        if self.pos is not None:
            return self.pos[start:start + length]
        return sinusoidal_positions(start, length, self.config.d_model, like.dtype, like.device)

    def _embed(self, x: torch.Tensor, start: int) -> torch.Tensor:
        h = self.embed(x)
        return self.drop(h + self._positions(start, x.shape[1], h))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Final-norm hidden states at every position: ``(B, T, F) -> (B, T, d)``, causal."""
        self._check_sequence(x)
        h = self._embed(x, 0)
        for block in self.blocks:
            h = block(h)
        return self.ln_f(h)

    def forward_sequence(self, x: torch.Tensor) -> torch.Tensor:
        """Logits at every position: ``(B, T, F) -> (B, T, C)``; position t sees tokens ``<= t``."""
        return self.head(self.features(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, T, F) -> (B, C)`` logits at the last position."""
        return self.head(self.features(x)[:, -1])

    def state_floats(self, seq_len: int | None = None) -> int:
        """Floats the KV cache holds per sequence after ``seq_len`` tokens (required): keys and
        values of every token in every layer, ``2 · num_layers · d_model · seq_len``."""
        seq_len = require_seq_len(seq_len, "Transformer's KV cache")
        return 2 * self.config.num_layers * self.config.d_model * seq_len

    def init_state(self, batch_size: int) -> KVCache:
        """An empty cache (``batch_size`` is checked; the cache takes its batch from the first token)."""
        check_positive_int("batch_size", batch_size)
        return KVCache(0, (None,) * self.config.num_layers)

    def step(self, x_t: torch.Tensor, state: KVCache):
        """One token ``x_t (B, F)`` -> ``(logits (B, C), new cache)``, the cache one token longer."""
        self._check_token(x_t)
        h = self._embed(x_t.unsqueeze(1), state.t)
        layers = []
        for block, cache in zip(self.blocks, state.layers):
            h, cache = block.step(h, cache)
            layers.append(cache)
        return self.head(self.ln_f(h[:, 0])), KVCache(state.t + 1, tuple(layers))
