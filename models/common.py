"""Pieces every sequence classifier shares: the input contract, parameter counting, width matching.

The contract (baselines and QLAM alike)::

    forward(x)                 x (B, T, F) float  ->  logits (B, C), read from the last token
    init_state(B)              ->  state (model-specific; a fresh object, never mutated in place)
    step(x_t, state)           x_t (B, F)  ->  (logits (B, C), new state)

Feeding the T tokens of ``x`` through ``step`` one at a time gives the logits of ``forward(x)``.

Every model also reports ``state_floats(seq_len=None)``: the real numbers its streaming state
carries from one token to the next (``state_size(model)`` below).
"""
from __future__ import annotations

import copy
import importlib
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of real parameters of ``model``.

    Shared (tied) tensors count once. A complex parameter counts twice (real and imaginary
    part), so models with complex weights are compared with real ones by degrees of freedom.
    """
    return sum(p.numel() * (2 if p.is_complex() else 1)
               for p in model.parameters() if p.requires_grad or not trainable_only)


def state_size(model: nn.Module, seq_len: int | None = None) -> int:
    """Real numbers one sequence's streaming state carries from token to token (per sample).

    A complex number counts twice. Constant for the recurrent models (LSTM: ``h`` and ``c``;
    GRU: ``h``; the LRU SSM; Mamba; QLAM's memory, at its largest for a capped MPS); for
    attention (the Transformer's and Llama's KV cache) it grows with the tokens seen, so
    ``seq_len`` (the tokens already read) is required there. See each model's ``state_floats``.
    """
    method = getattr(model, "state_floats", None)
    if method is None:
        raise TypeError(f"{type(model).__name__} does not report its state size (no state_floats method)")
    if seq_len is not None:
        check_positive_int("seq_len", seq_len)
    return method(seq_len)


def require_seq_len(seq_len: int | None, what: str) -> int:
    """``seq_len`` for a state that grows with the tokens seen; a clear error when it is missing."""
    if seq_len is None:
        raise ValueError(f"the {what} grows with the tokens seen: pass seq_len (tokens already read)")
    check_positive_int("seq_len", seq_len)
    return seq_len


def optional_import(module: str, extra: str):
    """Import an optional dependency, or raise an ``ImportError`` that says how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(f"{module} is needed here and is not installed: pip install -e \".[{extra}]\" "
                          f"(or pip install {module})") from err


def copy_library_cache(model: nn.Module, cache, what: str):
    """A copy of a library's streaming cache (None stays None), for a ``step`` that updates the
    cache in place but must leave the caller's state as it was. Refused while gradients flow into
    ``model``'s parameters: tensors with autograd history cannot be deep-copied."""
    if torch.is_grad_enabled() and any(p.requires_grad for p in model.parameters()):
        raise RuntimeError(f"{what} streaming updates the library's cache in place: run step under "
                           "torch.no_grad() (inference); training runs whole sequences (forward)")
    return None if cache is None else copy.deepcopy(cache)


def check_positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


def check_probability(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be a float in [0, 1), got {value!r}")


def check_input(x: torch.Tensor, input_dim: int, token: bool = False) -> None:
    """Raise a clear error unless ``x`` is a floating-point ``(B, T, input_dim)`` sequence with T >= 1
    (or, with ``token=True``, one ``(B, input_dim)`` token)."""
    what, shape = ("token", f"(B, F={input_dim})") if token else ("input", f"(B, T, F={input_dim})")
    rank = 2 if token else 3
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"expected a torch.Tensor of shape {shape}, got {type(x).__name__}")
    if x.dim() != rank:
        raise ValueError(f"expected {'a token' if token else 'input'} of shape {shape} (rank {rank}), "
                         f"got rank {x.dim()} with shape {tuple(x.shape)}")
    if x.shape[-1] != input_dim:
        raise ValueError(f"expected feature size F={input_dim}, got {x.shape[-1]} "
                         f"({what} shape {tuple(x.shape)})")
    if not token and x.shape[1] == 0:
        raise ValueError(f"expected at least one token, got T=0 (input shape {tuple(x.shape)})")
    if not x.is_floating_point():
        raise ValueError(f"expected a floating-point {what}, got {x.dtype}")


class SequenceClassifier(nn.Module):
    """Base of the sequence classifiers: holds ``input_dim``/``num_classes`` and checks inputs.

    Subclasses implement ``forward(x)``, ``init_state(batch_size)`` and ``step(x_t, state)``
    (see the module docstring); they call ``_check_sequence`` / ``_check_token`` first, so a
    wrong rank or feature size raises a ``ValueError`` that names what was expected.
    """

    def __init__(self, input_dim: int, num_classes: int):
        super().__init__()
        check_positive_int("input_dim", input_dim)
        check_positive_int("num_classes", num_classes)
        if num_classes < 2:
            raise ValueError(f"num_classes must be at least 2, got {num_classes}")
        self.input_dim = input_dim
        self.num_classes = num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def init_state(self, batch_size: int):  # pragma: no cover - interface
        raise NotImplementedError

    def step(self, x_t: torch.Tensor, state):  # pragma: no cover - interface
        raise NotImplementedError

    def _check_sequence(self, x: torch.Tensor) -> None:
        check_input(x, self.input_dim)

    def _check_token(self, x_t: torch.Tensor) -> None:
        check_input(x_t, self.input_dim, token=True)

    def _param_like(self) -> torch.Tensor:
        """A parameter, whose device and dtype the streaming state follows."""
        return next(self.parameters())


@dataclass(frozen=True)
class LibraryState:
    """Streaming state of a library decoder: its cache after ``tokens`` tokens (None before the first)."""
    tokens: int
    cache: Any


class LibraryBackboneClassifier(SequenceClassifier):
    """A library's decoder (``transformers``' ``MambaModel``, ``LlamaModel``) between a linear input
    map ``embed (F -> d)`` and a linear ``head (d -> C)``, fed features through ``inputs_embeds``."""

    def attach(self, backbone_class, library_config, hidden_size: int) -> None:
        """Build ``backbone_class(library_config)`` (width ``hidden_size``) with the input map and the
        head around it, in that order (so a seed draws the same initial weights)."""
        self.embed = nn.Linear(self.input_dim, hidden_size)
        self.backbone = backbone_class(library_config)
        # The inputs are features, not the library's token ids: drop its token table.
        self.backbone.set_input_embeddings(None)
        self.head = nn.Linear(hidden_size, self.num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Final-norm hidden states at every position: ``(B, T, F) -> (B, T, d)``, causal."""
        self._check_sequence(x)
        return self.backbone(inputs_embeds=self.embed(x), use_cache=False).last_hidden_state

    def forward_sequence(self, x: torch.Tensor) -> torch.Tensor:
        """Logits at every position: ``(B, T, F) -> (B, T, C)``; position t sees tokens ``<= t``."""
        return self.head(self.features(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, T, F) -> (B, C)`` logits at the last position."""
        return self.head(self.features(x)[:, -1])

    library_name = "library"  # for messages

    def init_state(self, batch_size: int) -> LibraryState:
        """An empty cache (``batch_size`` is checked; the cache takes its batch from the first token)."""
        check_positive_int("batch_size", batch_size)
        return LibraryState(0, None)

    def step(self, x_t: torch.Tensor, state: LibraryState):
        """One token ``x_t (B, F)`` -> ``(logits (B, C), new state)``; needs ``torch.no_grad()``."""
        self._check_token(x_t)
        cache = copy_library_cache(self, state.cache, self.library_name)
        out = self.backbone(inputs_embeds=self.embed(x_t).unsqueeze(1), cache=cache, use_cache=True)
        return self.head(out.last_hidden_state[:, 0]), LibraryState(state.tokens + 1, out.cache)


def _count_built(name: str, input_dim: int, num_classes: int, cfg: dict) -> int | None:
    """Parameter count of ``build(name, ...)``, or None where the config is invalid.

    Models are built on the meta device (no memory, no random numbers drawn); a model that
    cannot be built there is built on the CPU with the global RNG state restored afterwards.
    """
    from .registry import build

    try:
        with torch.device("meta"):
            return count_parameters(build(name, input_dim, num_classes, **cfg))
    except ValueError:
        return None
    except (NotImplementedError, RuntimeError):
        with torch.random.fork_rng(devices=[]):
            try:
                return count_parameters(build(name, input_dim, num_classes, **cfg))
            except ValueError:
                return None


def match_hidden_size(name: str, target_params: int, input_dim: int, num_classes: int,
                      tol: float = 0.1, max_width: int = 1 << 14, **cfg) -> int:
    """The width of model ``name`` whose parameter count is closest to ``target_params``.

    The width is the registered width keyword of ``name`` (``hidden_size`` for the RNNs,
    ``d_model`` for the Transformer and the SSM); ``cfg`` fixes everything else. Widths that
    make the config invalid (a Transformer ``d_model`` not divisible by ``nhead``) are skipped.
    Raises ``ValueError`` if the closest count is more than ``tol`` (relative) from the target.

    The count grows with the width, so a galloping then binary search finds the first valid
    width at or above the target; the answer is it or the valid width just below.
    """
    from .registry import width_key

    check_positive_int("target_params", target_params)
    key = width_key(name)
    if key in cfg:
        raise ValueError(f"{key!r} is what match_hidden_size chooses for {name!r}; do not pass it")
    counts: dict[int, int | None] = {}

    def count(w: int) -> int | None:
        if w not in counts:
            counts[w] = _count_built(name, input_dim, num_classes, {**cfg, key: w})
        return counts[w]

    def first_valid(w: int) -> tuple[int, int] | None:
        """The smallest valid width >= w and its count (invalid widths come in short runs)."""
        for v in range(w, min(w + 256, max_width) + 1):
            c = count(v)
            if c is not None:
                return v, c
        return None

    lo, hi = 1, 1
    while True:
        found = first_valid(hi)
        if found is None:
            raise ValueError(f"no valid {key} in [{hi}, {min(hi + 256, max_width)}] for {name!r} with config {cfg}")
        if found[1] >= target_params or 2 * hi > max_width:
            break
        lo, hi = hi + 1, 2 * hi
    while lo < hi:
        mid = (lo + hi) // 2
        found_mid = first_valid(mid)
        if found_mid is not None and found_mid[1] >= target_params:
            hi = mid
        else:
            lo = mid + 1
    w_up, c_up = first_valid(hi)
    candidates = [(w_up, c_up)]
    below = next(((v, count(v)) for v in range(w_up - 1, max(0, w_up - 257), -1) if count(v) is not None), None)
    if below is not None:
        candidates.append(below)
    best_w, best_c = min(candidates, key=lambda wc: abs(wc[1] - target_params))
    if abs(best_c - target_params) > tol * target_params:
        raise ValueError(f"{name!r}: closest {key}={best_w} gives {best_c} parameters, "
                         f"{100 * (best_c / target_params - 1):+.1f}% from the target {target_params} "
                         f"(tolerance {100 * tol:.0f}%); change the fixed config (num_layers, nhead, state_size, ...)")
    return best_w
