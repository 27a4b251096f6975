"""Token inputs and per-position outputs for any registered model (the memory tasks' front and back).

The memory tasks (``qlam_tn.experiments.tasks``) give int64 tokens ``(B, T)`` and a label at some
positions ``(B, T)`` (``IGNORE_INDEX`` = -100 elsewhere). ``SequenceModel`` puts a
``TokenEmbedding`` in front of a model and chooses its outputs::

    tokens (B, T) int64 --Embedding(V, F)--> (B, T, F) --model--> outputs="sequence":     (B, C)
                                                                   outputs="per_position": (B, T, C)

``build(name, input_dim=F, num_classes=C, vocab_size=V, outputs="per_position")`` makes one (F is
then the embedding width the model reads). Per-position logits come from the model's own
``forward_sequence`` (causal: position ``t`` sees tokens ``<= t``), and ``step`` streams them.
The loss counts labelled positions only (``per_position_loss``, ``count_correct``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .common import check_input, check_positive_int

IGNORE_INDEX = -100   # label of an unasked position: PyTorch's cross-entropy default ignore_index
OUTPUTS = ("sequence", "per_position")


def check_tokens(tokens: torch.Tensor, vocab_size: int, token: bool = False) -> None:
    """Raise a clear error unless ``tokens`` is an integer ``(B, T)`` tensor (T >= 1) with values
    in ``[0, vocab_size)`` (or, with ``token=True``, one position ``(B,)``)."""
    shape, rank = ("(B,)", 1) if token else ("(B, T)", 2)
    if not isinstance(tokens, torch.Tensor):
        raise TypeError(f"expected int64 tokens of shape {shape}, got {type(tokens).__name__}")
    if tokens.dtype == torch.bool or tokens.is_floating_point() or tokens.is_complex():
        raise TypeError(f"expected integer tokens of shape {shape}, got dtype {tokens.dtype}")
    if tokens.dim() != rank:
        raise ValueError(f"expected tokens of shape {shape} (rank {rank}), got shape {tuple(tokens.shape)}")
    if tokens.numel() == 0:
        raise ValueError(f"expected at least one token, got shape {tuple(tokens.shape)}")
    low, high = int(tokens.min()), int(tokens.max())
    if low < 0 or high >= vocab_size:
        raise ValueError(f"token ids must lie in [0, vocab_size={vocab_size}), got values from {low} to {high}")


class TokenEmbedding(nn.Module):
    """``nn.Embedding(vocab_size, dim)`` behind a check: int tokens ``(B, T)`` -> ``(B, T, dim)``
    (or ``(B,)`` -> ``(B, dim)``); ids outside ``[0, vocab_size)`` raise a ``ValueError``."""

    def __init__(self, vocab_size: int, dim: int):
        super().__init__()
        check_positive_int("vocab_size", vocab_size)
        check_positive_int("dim", dim)
        self.vocab_size = vocab_size
        self.table = nn.Embedding(vocab_size, dim)

    def forward(self, tokens: torch.Tensor, token: bool = False) -> torch.Tensor:
        check_tokens(tokens, self.vocab_size, token=token)
        return self.table(tokens.long())


class SequenceModel(nn.Module):
    """A model behind an optional token embedding, with sequence or per-position outputs.

    ``SequenceModel(body, input_dim, num_classes, vocab_size=None, outputs="sequence")``, where
    ``body`` maps ``(B, T, input_dim)`` features to logits (``forward``: ``(B, C)``,
    ``forward_sequence``: ``(B, T, C)``) and streams (``init_state``/``step``). Usually made by
    ``build(..., vocab_size=V, outputs=...)``.

    forward(x)          x: int tokens (B, T) with ``vocab_size``, else float (B, T, input_dim);
                        -> (B, C) (``sequence``) or (B, T, C) (``per_position``)
    forward_sequence(x) -> (B, T, C) whatever ``outputs`` is
    step(x_t, state)    x_t: (B,) tokens or (B, input_dim) -> (logits (B, C) at this position, state)
    state_floats(L)     the body's streaming state size (an embedding carries nothing)

    A body that needs a setting for per-position outputs offers ``check_per_position()`` (QLAM:
    ``readout_at="last"``), called here at construction.
    """

    def __init__(self, body: nn.Module, input_dim: int, num_classes: int, vocab_size: int | None = None,
                 outputs: str = "sequence"):
        super().__init__()
        if outputs not in OUTPUTS:
            raise ValueError(f"outputs must be one of {OUTPUTS}, got {outputs!r}")
        check_positive_int("input_dim", input_dim)
        check_positive_int("num_classes", num_classes)
        if vocab_size is not None:
            check_positive_int("vocab_size", vocab_size)
        if outputs == "per_position":
            if not callable(getattr(body, "forward_sequence", None)):
                raise TypeError(f"{type(body).__name__} has no forward_sequence: it cannot give per-position outputs")
            check = getattr(body, "check_per_position", None)
            if check is not None:
                check()
        self.body = body
        self.input_dim = input_dim
        self.num_classes = num_classes
        self.vocab_size = vocab_size
        self.outputs = outputs
        self.embedding = TokenEmbedding(vocab_size, input_dim) if vocab_size is not None else None

    def _features(self, x: torch.Tensor, token: bool = False) -> torch.Tensor:
        if self.embedding is not None:
            return self.embedding(x, token=token)
        check_input(x, self.input_dim, token=token)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C)`` logits (``outputs="sequence"``) or ``(B, T, C)`` (``per_position``)."""
        if self.outputs == "per_position":
            return self.forward_sequence(x)
        return self.body(self._features(x))

    def forward_sequence(self, x: torch.Tensor) -> torch.Tensor:
        """Logits at every position, ``(B, T, C)``; position ``t`` depends on inputs ``<= t`` only."""
        return self.body.forward_sequence(self._features(x))

    def init_state(self, batch_size: int):
        return self.body.init_state(batch_size)

    def step(self, x_t: torch.Tensor, state):
        """One position: ``x_t`` tokens ``(B,)`` (or features ``(B, input_dim)``) -> ``(logits (B, C), state)``."""
        return self.body.step(self._features(x_t, token=True), state)

    def state_floats(self, seq_len: int | None = None) -> int:
        return self.body.state_floats(seq_len)


def _check_labels(logits: torch.Tensor, targets: torch.Tensor, ignore_index: int) -> torch.Tensor:
    """The mask of labelled positions ``(B, T)``, after checking shapes and label values."""
    if logits.dim() != 3:
        raise ValueError(f"expected per-position logits (B, T, C), got shape {tuple(logits.shape)}")
    if targets.shape != logits.shape[:2]:
        raise ValueError(f"targets of shape {tuple(targets.shape)} do not match logits {tuple(logits.shape)} "
                         "(expected (B, T))")
    if targets.is_floating_point() or targets.dtype == torch.bool:
        raise TypeError(f"expected integer targets, got {targets.dtype}")
    labelled = targets != ignore_index
    if not bool(labelled.any()):
        raise ValueError(f"no labelled position in the batch: every target is ignore_index={ignore_index}")
    values = targets[labelled]
    if int(values.min()) < 0 or int(values.max()) >= logits.shape[-1]:
        raise ValueError(f"labels must lie in [0, {logits.shape[-1]}) or equal ignore_index={ignore_index}, "
                         f"got values from {int(values.min())} to {int(values.max())}")
    return labelled


def per_position_loss(logits: torch.Tensor, targets: torch.Tensor, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Mean cross-entropy over the labelled positions: ``logits (B, T, C)``, ``targets (B, T)``
    with ``ignore_index`` where nothing is asked. A batch without labels raises ``ValueError``."""
    _check_labels(logits, targets, ignore_index)
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten().long(), ignore_index=ignore_index)


def count_correct(logits: torch.Tensor, targets: torch.Tensor, ignore_index: int = IGNORE_INDEX) -> tuple[int, int]:
    """``(correct, labelled)``: how many labelled positions the arg-max of ``logits (B, T, C)``
    gets right, and how many are labelled (sum both over batches for an accuracy)."""
    labelled = _check_labels(logits, targets, ignore_index)
    hits = (logits.argmax(-1) == targets) & labelled
    return int(hits.sum()), int(labelled.sum())
