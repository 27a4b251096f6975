"""LSTM and GRU classifiers: ``torch.nn.LSTM`` / ``torch.nn.GRU`` with a linear head on the last hidden state.

::

    x (B, T, F) --nn.LSTM/nn.GRU (num_layers, batch_first)--> h (B, T, H) --h[:, -1]--> Linear(H, C) --> (B, C)

Streaming runs the same ``nn.LSTM``/``nn.GRU`` on length-1 sequences, carrying its hidden state:
``(h, c)`` for the LSTM, ``h`` for the GRU, each ``(num_layers, B, H)``: constant memory per token.

Parameters (F inputs, H hidden, L layers, C classes; ``nn.LSTM``/``nn.GRU`` keep two bias vectors):

* LSTM: ``4·(H·(F + H) + 2H) + (L − 1)·4·(2H² + 2H) + (H + 1)·C``
* GRU:  ``3·(H·(F + H) + 2H) + (L − 1)·3·(2H² + 2H) + (H + 1)·C``

e.g. a GRU with H=32 on F=28, C=10 has 6,282.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .common import SequenceClassifier, check_positive_int, check_probability


@dataclass(frozen=True)
class RNNConfig:
    """Configuration of an LSTM/GRU classifier, validated at construction.

    ``dropout`` is ``nn.LSTM``'s: applied between stacked layers, so it needs ``num_layers > 1``.
    """
    input_dim: int
    num_classes: int
    hidden_size: int = 64
    num_layers: int = 1
    dropout: float = 0.0

    def __post_init__(self):
        check_positive_int("hidden_size", self.hidden_size)
        check_positive_int("num_layers", self.num_layers)
        check_probability("dropout", self.dropout)
        if self.dropout > 0 and self.num_layers == 1:
            raise ValueError("dropout acts between stacked layers; it needs num_layers > 1")


class _RNNClassifier(SequenceClassifier):
    _rnn_type: type[nn.RNNBase]

    def __init__(self, input_dim: int, num_classes: int, hidden_size: int = 64, num_layers: int = 1,
                 dropout: float = 0.0):
        super().__init__(input_dim, num_classes)
        self.config = RNNConfig(input_dim, num_classes, hidden_size, num_layers, dropout)
        self.rnn = self._rnn_type(input_dim, hidden_size, num_layers, batch_first=True, dropout=dropout)
        self.head = nn.Linear(hidden_size, num_classes)

    def forward_sequence(self, x: torch.Tensor) -> torch.Tensor:
        """Logits after every token: ``(B, T, F) -> (B, T, C)``."""
        self._check_sequence(x)
        out, _ = self.rnn(x)
        return self.head(out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, T, F) -> (B, C)`` logits from the last token's top-layer hidden state."""
        self._check_sequence(x)
        out, _ = self.rnn(x)
        return self.head(out[:, -1])

    def _zeros(self, batch_size: int) -> torch.Tensor:
        check_positive_int("batch_size", batch_size)
        p = self._param_like()
        return torch.zeros(self.config.num_layers, batch_size, self.config.hidden_size,
                           dtype=p.dtype, device=p.device)

    def state_floats(self, seq_len: int | None = None) -> int:
        """Floats carried token to token per sequence: ``h`` (GRU) or ``h`` and ``c`` (LSTM) of
        every layer, ``num_layers · hidden_size`` each; ``seq_len`` is not needed."""
        parts = 2 if self._rnn_type is nn.LSTM else 1
        return parts * self.config.num_layers * self.config.hidden_size

    def step(self, x_t: torch.Tensor, state):
        """One token ``x_t (B, F)`` -> ``(logits (B, C), new state)``; the state is never modified in place."""
        self._check_token(x_t)
        out, state = self.rnn(x_t.unsqueeze(1), state)
        return self.head(out[:, 0]), state


class LSTMClassifier(_RNNClassifier):
    """``nn.LSTM`` classifier. ``forward``: ``(B, T, F) -> (B, C)``.

    ``LSTMClassifier(input_dim, num_classes, hidden_size=64, num_layers=1, dropout=0.0)``;
    streaming state: ``(h, c)``, each ``(num_layers, B, hidden_size)``.
    """
    _rnn_type = nn.LSTM

    def init_state(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Zero ``(h, c)``, each ``(num_layers, batch_size, hidden_size)``."""
        return self._zeros(batch_size), self._zeros(batch_size)


class GRUClassifier(_RNNClassifier):
    """``nn.GRU`` classifier. ``forward``: ``(B, T, F) -> (B, C)``.

    ``GRUClassifier(input_dim, num_classes, hidden_size=64, num_layers=1, dropout=0.0)``;
    streaming state: ``h`` of shape ``(num_layers, B, hidden_size)``.
    """
    _rnn_type = nn.GRU

    def init_state(self, batch_size: int) -> torch.Tensor:
        """Zero ``h`` of shape ``(num_layers, batch_size, hidden_size)``."""
        return self._zeros(batch_size)
