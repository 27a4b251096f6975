"""Mamba baseline: the selective state-space model of Gu & Dao (2023), from Hugging Face ``transformers``.

Not hand-written: the layers are ``transformers.MambaModel``, built from a small ``MambaConfig``
(never ``from_pretrained``: no download, works offline). On a machine without the CUDA kernels
(``mamba_ssm``, ``causal_conv1d``) the library runs its pure-PyTorch path, on CPU or GPU alike; with
``parallel_scan=True`` and ``mambapy`` installed, that path scans the sequence with mambapy's
parallel (Blelloch) scan instead of a Python loop over tokens (the same numbers up to rounding).
``transformers`` (and ``mambapy``) are imported when a model is built, not with ``qlam_tn.models``.

::

    x (B, T, F) --Linear(F, d)--> MambaModel (num_layers x [x + Mixer(RMSNorm(x))], RMSNorm)
        --> (B, T, d) --Linear(d, C)--> per-position logits (B, T, C); ``forward``: the last position

    Mixer (per layer, e = expand·d inner channels, N = state_size, r = dt_rank, k = conv_kernel):
        (u, z) = in_proj(x)                       d -> 2e
        u = SiLU(causal depthwise conv_k(u))
        Δ, B_t, C_t = softplus(dt_proj(x_proj(u))), x_proj(u)      input-dependent ("selective")
        h_t = exp(Δ A) h_{t-1} + Δ B_t u_t        per channel, A = -exp(A_log) (e, N)
        y_t = (C_t h_t + D u_t) · SiLU(z_t)   --out_proj-->  d

Parameters (F inputs, d = hidden_size, e = expand·d, N = state_size, r = dt_rank, k = conv_kernel,
L layers, C classes; the library's unused token table is removed)::

    (F + 1)·d + L·(d + 2de + ek + e + e(r + 2N) + re + e + eN + e + ed) + d + (d + 1)·C

Streaming uses the library's cache (the convolution window and the SSM state of every layer,
constant in the sequence length): ``step`` copies it first, so a state is never changed, and
needs gradients off (``torch.no_grad()``): the cache is updated in place and a copy of tensors
with autograd history cannot be made. Training runs whole sequences (``forward``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass


from .common import LibraryBackboneClassifier, check_positive_int, optional_import

EXTRA = "baselines"   # the pyproject extra that installs transformers and mambapy (test has them too)


@dataclass(frozen=True)
class MambaBaselineConfig:
    """Configuration of the Mamba classifier, validated at construction.

    ``dt_rank=None`` is Mamba's default ``ceil(hidden_size / 16)``; ``expand`` sets the inner
    width ``e = expand · hidden_size``; ``conv_kernel`` the causal convolution's width.
    """
    input_dim: int
    num_classes: int
    hidden_size: int = 64
    state_size: int = 16
    num_layers: int = 2
    expand: int = 2
    conv_kernel: int = 4
    dt_rank: int | None = None
    parallel_scan: bool = True

    def __post_init__(self):
        for name in ("hidden_size", "state_size", "num_layers", "expand", "conv_kernel"):
            check_positive_int(name, getattr(self, name))
        if self.dt_rank is None:
            object.__setattr__(self, "dt_rank", math.ceil(self.hidden_size / 16))
        check_positive_int("dt_rank", self.dt_rank)
        if not isinstance(self.parallel_scan, bool):
            raise TypeError(f"parallel_scan must be a bool, got {self.parallel_scan!r}")

    @property
    def inner_size(self) -> int:
        return self.expand * self.hidden_size


class MambaClassifier(LibraryBackboneClassifier):
    """``transformers.MambaModel`` between a linear input map and a linear head.

    ``MambaClassifier(input_dim, num_classes, hidden_size=64, state_size=16, num_layers=2,
    expand=2, conv_kernel=4, dt_rank=None, parallel_scan=True)``; ``forward``: ``(B, T, F) ->
    (B, C)`` at the last position, ``forward_sequence``: ``(B, T, C)``, causal.
    """

    library_name = "Mamba"

    def __init__(self, input_dim: int, num_classes: int, hidden_size: int = 64, state_size: int = 16,
                 num_layers: int = 2, expand: int = 2, conv_kernel: int = 4, dt_rank: int | None = None,
                 parallel_scan: bool = True):
        super().__init__(input_dim, num_classes)
        self.config = cfg = MambaBaselineConfig(input_dim, num_classes, hidden_size, state_size, num_layers,
                                                expand, conv_kernel, dt_rank, parallel_scan)
        transformers = optional_import("transformers", EXTRA)
        library_cfg = transformers.MambaConfig(
            vocab_size=1, hidden_size=hidden_size, state_size=state_size, num_hidden_layers=num_layers,
            expand=expand, conv_kernel=conv_kernel, time_step_rank=cfg.dt_rank, use_mambapy=parallel_scan,
            # the residual stream in the model's own dtype: float64 tests stay float64
            residual_in_fp32=False, use_cache=False, pad_token_id=None, bos_token_id=None, eos_token_id=None)
        self.attach(transformers.MambaModel, library_cfg, hidden_size)

    def state_floats(self, seq_len: int | None = None) -> int:
        """Floats carried token to token per sequence: per layer the SSM state ``e·N`` and the
        convolution's last ``k - 1`` inputs ``e·(k - 1)``: ``L·e·(N + k - 1)``. (The library's
        cache keeps a ``k``-wide window, ``L·e`` floats more.) Independent of ``seq_len``."""
        cfg = self.config
        return cfg.num_layers * cfg.inner_size * (cfg.state_size + cfg.conv_kernel - 1)

