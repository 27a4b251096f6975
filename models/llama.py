"""Llama-style decoder baseline (RoPE, SwiGLU, RMSNorm), from Hugging Face ``transformers``.

Not hand-written: the layers are ``transformers.LlamaModel`` (Touvron et al. 2023), built from a
small ``LlamaConfig`` (never ``from_pretrained``: no download, works offline); it is imported when
a model is built, not with ``qlam_tn.models``.

::

    x (B, T, F) --Linear(F, d)--> LlamaModel (num_layers x Block, RMSNorm) --> (B, T, d)
        --Linear(d, C)--> per-position logits (B, T, C); ``forward``: the last position

    Block:  h = h + Attn(RMSNorm(h))     causal, H heads of width d/H, rotary positions (RoPE),
                                         K = num_kv_heads key/value heads (grouped-query if K < H)
            h = h + W_down(SiLU(W_gate RMSNorm(h)) ⊙ W_up RMSNorm(h))      SwiGLU of width I

RoPE encodes positions in the attention itself: no position table, and no length limit of its
own. Parameters (F inputs, d = hidden_size, h = d/H, I = intermediate_size, L layers, C classes;
no biases; the library's unused token table is removed)::

    (F + 1)·d + L·(2d + d·H·h + 2·d·K·h + H·h·d + 3·d·I) + d + (d + 1)·C

Streaming uses the library's KV cache: keys and values of every token seen, ``2·L·K·h`` floats per
token, so **memory and time per token grow with t** (as for the Transformer baseline). ``step``
copies the cache first, so a state is never changed, and needs gradients off
(``torch.no_grad()``); training runs whole sequences (``forward``).
"""
from __future__ import annotations

from dataclasses import dataclass


from .common import LibraryBackboneClassifier, check_positive_int, optional_import, require_seq_len

EXTRA = "baselines"   # the pyproject extra that installs transformers (test has it too)


@dataclass(frozen=True)
class LlamaBaselineConfig:
    """Configuration of the Llama-style classifier, validated at construction.

    ``intermediate_size=None`` is ``ceil(8·d/3)``: a SwiGLU of three ``d x I`` matrices then has
    the ``8d²`` parameters of a ``4d`` two-matrix MLP. ``num_kv_heads=None`` is ``num_heads``
    (plain multi-head attention). The head width ``d / num_heads`` must be even (RoPE rotates
    pairs of dimensions). ``rope_theta`` is the rotary base.
    """
    input_dim: int
    num_classes: int
    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 2
    num_kv_heads: int | None = None
    intermediate_size: int | None = None
    rope_theta: float = 10000.0

    def __post_init__(self):
        for name in ("hidden_size", "num_layers", "num_heads"):
            check_positive_int(name, getattr(self, name))
        if self.num_kv_heads is None:
            object.__setattr__(self, "num_kv_heads", self.num_heads)
        if self.intermediate_size is None:
            object.__setattr__(self, "intermediate_size", -(-8 * self.hidden_size // 3))
        check_positive_int("num_kv_heads", self.num_kv_heads)
        check_positive_int("intermediate_size", self.intermediate_size)
        if self.hidden_size % self.num_heads or (self.hidden_size // self.num_heads) % 2:
            raise ValueError(f"hidden_size ({self.hidden_size}) must be num_heads ({self.num_heads}) times an "
                             "even head width (RoPE rotates pairs of dimensions)")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"num_heads ({self.num_heads}) must be a multiple of num_kv_heads ({self.num_kv_heads})")
        if isinstance(self.rope_theta, bool) or not isinstance(self.rope_theta, (int, float)) or not self.rope_theta > 1:
            raise ValueError(f"rope_theta must be a number > 1, got {self.rope_theta!r}")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads


class LlamaClassifier(LibraryBackboneClassifier):
    """``transformers.LlamaModel`` between a linear input map and a linear head.

    ``LlamaClassifier(input_dim, num_classes, hidden_size=64, num_layers=2, num_heads=2,
    num_kv_heads=None, intermediate_size=None, rope_theta=10000.0)``; ``forward``: ``(B, T, F)
    -> (B, C)`` at the last position, ``forward_sequence``: ``(B, T, C)``, causal.
    """

    library_name = "Llama"

    def __init__(self, input_dim: int, num_classes: int, hidden_size: int = 64, num_layers: int = 2,
                 num_heads: int = 2, num_kv_heads: int | None = None, intermediate_size: int | None = None,
                 rope_theta: float = 10000.0):
        super().__init__(input_dim, num_classes)
        self.config = cfg = LlamaBaselineConfig(input_dim, num_classes, hidden_size, num_layers, num_heads,
                                                num_kv_heads, intermediate_size, rope_theta)
        transformers = optional_import("transformers", EXTRA)
        library_cfg = transformers.LlamaConfig(
            vocab_size=1, hidden_size=hidden_size, intermediate_size=cfg.intermediate_size,
            num_hidden_layers=num_layers, num_attention_heads=num_heads, num_key_value_heads=cfg.num_kv_heads,
            head_dim=cfg.head_dim, rope_parameters={"rope_type": "default", "rope_theta": float(rope_theta)},
            use_cache=False, pad_token_id=None, bos_token_id=None, eos_token_id=None)
        self.attach(transformers.LlamaModel, library_cfg, hidden_size)

    def state_floats(self, seq_len: int | None = None) -> int:
        """Floats the KV cache holds per sequence after ``seq_len`` tokens (required):
        ``2 · num_layers · num_kv_heads · head_dim · seq_len``."""
        seq_len = require_seq_len(seq_len, "Llama KV cache")
        cfg = self.config
        return 2 * cfg.num_layers * cfg.num_kv_heads * cfg.head_dim * seq_len
