"""Models by name: ``build(name, input_dim, num_classes, **cfg)``, extensible with ``register``.

Each entry is a constructor ``ctor(input_dim, num_classes, **cfg)``, the keyword that sets its
width (which ``match_hidden_size`` varies to match a parameter budget) and the settings it needs
for per-position outputs. ``build(..., vocab_size=V, outputs="per_position")`` wraps the model in
a ``heads.SequenceModel``: int64 tokens through an embedding of width ``input_dim``, logits at
every position. Without those two keywords ``build`` returns the bare model, as before.

``mamba`` and ``llama`` import ``transformers`` when built (the ``baselines`` and ``test`` extras
install it).
"""
from __future__ import annotations

from collections.abc import Callable

from torch import nn

from .heads import OUTPUTS, SequenceModel
from .llama import LlamaClassifier
from .mamba import MambaClassifier
from .rnn import GRUClassifier, LSTMClassifier
from .ssm import SSMClassifier
from .transformer import TransformerClassifier

_MODELS: dict[str, tuple[Callable[..., nn.Module], str, dict]] = {}


def register(name: str, ctor: Callable[..., nn.Module], width: str = "hidden_size",
             per_position: dict | None = None) -> None:
    """Make ``build(name, ...)`` call ``ctor(input_dim, num_classes, **cfg)``; ``width`` names its
    width keyword; ``per_position``: config defaults that ``outputs="per_position"`` applies where
    ``cfg`` does not set them (QLAM: ``readout_at="last"``)."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"model name must be a non-empty str, got {name!r}")
    if name in _MODELS:
        raise ValueError(f"model {name!r} is already registered")
    _MODELS[name] = (ctor, width, dict(per_position or {}))


def available() -> tuple[str, ...]:
    """Registered model names, in registration order."""
    return tuple(_MODELS)


def _entry(name: str):
    try:
        return _MODELS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown model {name!r}; choose from {', '.join(available())}") from None


def width_key(name: str) -> str:
    """The constructor keyword that sets the width of model ``name``."""
    return _entry(name)[1]


def build(name: str, input_dim: int, num_classes: int, vocab_size: int | None = None,
          outputs: str = "sequence", **cfg) -> nn.Module:
    """A new model ``name`` (one of ``available()``) mapping ``(B, T, input_dim)`` to ``(B, num_classes)``.

    ``vocab_size``: read int tokens ``(B, T)`` through an embedding of width ``input_dim``;
    ``outputs="per_position"``: logits ``(B, T, num_classes)`` at every position. Either one
    returns a ``heads.SequenceModel`` around the model.
    """
    ctor, _, per_position = _entry(name)
    if outputs not in OUTPUTS:
        raise ValueError(f"outputs must be one of {OUTPUTS}, got {outputs!r}")
    if vocab_size is None and outputs == "sequence":
        return ctor(input_dim, num_classes, **cfg)
    if outputs == "per_position":
        cfg = {**per_position, **cfg}
    return SequenceModel(ctor(input_dim, num_classes, **cfg), input_dim, num_classes, vocab_size, outputs)


register("lstm", LSTMClassifier, width="hidden_size")
register("gru", GRUClassifier, width="hidden_size")
register("transformer", TransformerClassifier, width="d_model")
register("ssm", SSMClassifier, width="d_model")
register("mamba", MambaClassifier, width="hidden_size")
register("llama", LlamaClassifier, width="hidden_size")
