"""A model's memory apart from its readout head: a slower or frozen memory, the frozen memory's
features computed once, and the head fitted on them by L-BFGS.

``qlam train`` calls this module for three options and knows nothing else of the model:

- ``--memory-lr-scale X`` (:func:`memory_param_groups`): the memory trains at ``X·lr`` while the
  head keeps ``lr``; at ``0`` the memory stays at its initialisation (a random reservoir);
- ``--cache-memory`` (:func:`cache_features`): a frozen memory gives every sequence the same
  features in every epoch, so it runs once over each split before the first epoch and the head
  trains on those features; the result is the run that recomputes them every batch;
- ``--optimizer lbfgs`` (:func:`lbfgs_optimizer`, :func:`lbfgs_epoch`): the head fitted on all
  cached training features at once. With a linear head on BatchNorm-standardised features and an
  L2 penalty ``wd/2·‖W‖²`` this is the logistic regression scikit-learn fits with
  ``C = 1/(wd·N)``.

A model takes part by holding its sequence memory and its head as two submodules with
``model(x) == model.head(model.qlam(x))``, as ``models.qlam.QLAMClassifier`` does::

    x (B, T, F) --memory--> features (B, D) --head--> logits (B, C)
"""
from __future__ import annotations

import sys

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset
from tqdm import tqdm

# BatchNorm layers whose running statistics a full-batch fit sets to a cumulative average.
_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


def memory_and_head(model: nn.Module) -> tuple[nn.Module, nn.Module]:
    """``(memory, head)`` of ``model``: ``x (B, T, F) -> (B, D)`` and ``(B, D) -> (B, C)``."""
    memory, head = getattr(model, "qlam", None), getattr(model, "head", None)
    if not (isinstance(memory, nn.Module) and isinstance(head, nn.Module)):
        raise ValueError(f"{type(model).__name__} has no separate memory and readout head (a QLAM "
                         f"classifier's .qlam and .head): a memory learning rate, a cached memory "
                         f"and an L-BFGS head apply to QLAM models only")
    return memory, head


def memory_param_groups(model: nn.Module, lr: float, memory_lr_scale: float) -> list[dict]:
    """The optimiser's parameter groups: every parameter outside the memory at ``lr``, then the
    memory's at ``lr · memory_lr_scale``; at scale ``0`` the memory is frozen
    (``requires_grad=False``, so that DDP and the optimiser leave it alone) and has no group."""
    memory, _ = memory_and_head(model)
    mine = {id(q) for q in memory.parameters()}
    groups = [{"params": [q for q in model.parameters() if id(q) not in mine], "lr": lr}]
    if memory_lr_scale == 0:
        for q in memory.parameters():
            q.requires_grad_(False)
    else:
        groups.append({"params": list(memory.parameters()), "lr": lr * memory_lr_scale})
    return groups


def memory_features(memory: nn.Module, dataset: Dataset, batch: int, device, dtype,
                    desc: str = "memory features", progress: bool = False) -> TensorDataset:
    """What ``memory`` (e.g. ``models.qlam.QLAM``) gives the head for every sequence of
    ``dataset``, in the dataset's order, without gradients: a dataset of ``((D,), label)``
    pairs, ``D = memory.feature_dim``, features in ``dtype`` on the CPU."""
    feats, labels = [], []
    with torch.no_grad(), tqdm(total=len(dataset), desc=desc, unit="seq", file=sys.stderr,
                               disable=not progress, leave=False, dynamic_ncols=True) as bar:
        for x, y in DataLoader(dataset, batch_size=batch):
            feats.append(memory(x.to(device=device, dtype=dtype)).cpu())
            labels.append(y)
            bar.update(len(y))
    return TensorDataset(torch.cat(feats), torch.cat(labels))


def cache_features(model: nn.Module, sets: dict, batch: int, device, dtype,
                   progress: bool = False) -> tuple[nn.Module, dict]:
    """``(head, feature sets)``: the frozen memory of ``model`` run once over each dataset of
    ``sets`` (``{name: dataset or None}``, token sequences ``(T, F)``), giving the same names
    with :func:`memory_features` datasets; from then on the head trains and scores on those."""
    memory, head = memory_and_head(model)
    features = {name: None if data is None else
                memory_features(memory, data, batch, device, dtype, f"memory features ({name})",
                                progress)
                for name, data in sets.items()}
    return head, features


def lbfgs_optimizer(model: nn.Module, lr: float, iters: int) -> torch.optim.LBFGS:
    """L-BFGS over ``model``'s head (strong-Wolfe line search, step ``lr``, ``iters`` iterations
    per ``step``). The head's BatchNorm layers switch to a cumulative average: every full-batch
    forward sees the same features, so their running statistics are exactly those features'
    from the first step on."""
    _, head = memory_and_head(model)
    optimizer = torch.optim.LBFGS(list(head.parameters()), lr=lr, max_iter=iters, history_size=50,
                                  line_search_fn="strong_wolfe", tolerance_grad=1e-10,
                                  tolerance_change=1e-14)
    for layer in head.modules():
        if isinstance(layer, _BATCH_NORMS):
            layer.momentum = None
    return optimizer


def lbfgs_epoch(head: nn.Module, optimizer: torch.optim.LBFGS, x: torch.Tensor, y: torch.Tensor,
                weight_decay: float) -> dict:
    """One ``optimizer.step`` of ``head`` on all features ``x (N, D)`` with labels ``y (N,)`` at
    once (on the head's device and dtype): mean cross-entropy plus ``weight_decay/2`` times the
    squared norm of the head's weight matrices. Returns the training loss sum, correct
    predictions and count after it (``{"loss_sum", "correct", "n"}``)."""
    weights = [q for q in head.parameters() if q.ndim > 1]

    def closure():
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(head(x), y) + 0.5 * weight_decay * sum((w * w).sum() for w in weights)
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        logits = head(x)
    return {"loss_sum": F.cross_entropy(logits, y, reduction="sum").item(),
            "correct": int((logits.argmax(-1) == y).sum()), "n": len(y)}
