"""Models by name: ``build(name, input_dim, num_classes, **cfg)``, extensible with ``register``.

Each entry is a constructor ``ctor(input_dim, num_classes, **cfg)`` and the keyword that sets its
width, which ``match_hidden_size`` varies to match a parameter budget.
"""
from __future__ import annotations

from collections.abc import Callable

from torch import nn

from .rnn import GRUClassifier, LSTMClassifier
from .ssm import SSMClassifier
from .transformer import TransformerClassifier

_MODELS: dict[str, tuple[Callable[..., nn.Module], str]] = {}


def register(name: str, ctor: Callable[..., nn.Module], width: str = "hidden_size") -> None:
    """Make ``build(name, ...)`` call ``ctor(input_dim, num_classes, **cfg)``; ``width`` names its width keyword."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"model name must be a non-empty str, got {name!r}")
    if name in _MODELS:
        raise ValueError(f"model {name!r} is already registered")
    _MODELS[name] = (ctor, width)


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


def build(name: str, input_dim: int, num_classes: int, **cfg) -> nn.Module:
    """A new model ``name`` (one of ``available()``) mapping ``(B, T, input_dim)`` to ``(B, num_classes)``."""
    ctor, _ = _entry(name)
    return ctor(input_dim, num_classes, **cfg)


register("lstm", LSTMClassifier, width="hidden_size")
register("gru", GRUClassifier, width="hidden_size")
register("transformer", TransformerClassifier, width="d_model")
register("ssm", SSMClassifier, width="d_model")
