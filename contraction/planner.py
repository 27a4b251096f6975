"""Planned einsum contractions for the engine's fixed-shape hot path.

``contract(equation, *operands)`` validates and plans a contraction once per
(equation, shapes, dtypes) signature, keeps the :class:`Plan` in a bounded LRU cache, and
runs it with torch ops, so autograd and every device work. ``plan(equation, *shapes,
dtype=...)`` returns the same cached :class:`Plan` without operands, for its path and costs.

How a plan runs. ``qlam bench contraction --threads 1`` times plain ``torch.einsum``, an
``opt_einsum`` expression and ``contract`` side by side on six engine contractions; its tables
are in docs/benchmarks.md ("Planned contractions"). Small contractions are dominated by per-call
overhead, not arithmetic, so:

- 1-2 operands: plain ``torch.einsum`` is fastest (it needs no path and dispatches to one bmm);
  an ``opt_einsum`` expression only adds its own dispatch. Such plans call ``torch.einsum``
  directly, behind one cache lookup.
- 3+ operands: ``torch.einsum`` re-runs ``opt_einsum.contract_path`` on every call, and
  ``opt_einsum.ContractExpression(..., backend="torch")`` spends time of its own per call in its
  dispatch. Such plans take the path ``opt_einsum.contract_path`` found once and run it as a
  fixed sequence of pairwise ``torch.einsum`` calls: the expression's arithmetic with less of
  its overhead.
At the largest sizes the arithmetic dominates and the three agree within noise.

The cache is process-wide (plans are pure functions of the signature, not settings):
``cache_info()``, ``clear_cache()``, ``set_cache_maxsize(n)``.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

import opt_einsum
import torch

from .cost import flops_per_multiply_add
from .equation import parse_equation

DEFAULT_CACHE_MAXSIZE = 1024


class Plan:
    """A validated, planned contraction for one (equation, shapes, dtype) signature.

    Call it with operands of exactly ``shapes`` and ``dtype``: ``plan(*operands)``.

    Attributes:
        equation: the equation as given.
        explicit: the equation with ``...`` expanded and an explicit output.
        shapes: operand shapes.
        dtype: operand dtype.
        path: opt_einsum path, a list of operand-position tuples contracted in turn.
        flops: real FLOPs of the planned path in ``dtype`` (see ``cost.py`` for the convention).
        naive_flops: real FLOPs of one un-planned einsum loop over all labels.
        largest_intermediate: elements of the largest intermediate (the output included).
        strategy: ``"einsum"`` (one ``torch.einsum`` call) or ``"pairwise"`` (``torch.einsum``
            per step of ``path``).
    """

    __slots__ = (
        "equation", "explicit", "shapes", "dtype", "path", "flops", "naive_flops",
        "largest_intermediate", "strategy", "_steps",
    )

    def __init__(self, equation: str, shapes, dtypes):
        parsed = parse_equation(equation, shapes)
        for k, d in enumerate(dtypes):
            if d != dtypes[0]:
                raise ValueError(
                    f"equation {equation!r}: operand 0 is {dtypes[0]} but operand {k} is {d}; "
                    "cast the operands to one dtype"
                )
        self.equation = equation
        self.explicit = parsed.explicit
        self.shapes = tuple(tuple(int(d) for d in s) for s in shapes)
        self.dtype = dtype = dtypes[0]
        path, info = opt_einsum.contract_path(
            self.explicit, *self.shapes, shapes=True, optimize="auto"
        )
        factor = flops_per_multiply_add(dtype) // 2  # opt_einsum counts 2 per real madd
        self.path = [tuple(p) for p in path]
        self.flops = int(info.opt_cost) * factor
        self.naive_flops = int(info.naive_cost) * factor
        self.largest_intermediate = int(info.largest_intermediate)
        if len(self.shapes) <= 2:
            self.strategy = "einsum"
            self._steps = ()
        else:
            self.strategy = "pairwise"
            self._steps = tuple((tuple(c[0]), c[2]) for c in info.contraction_list)

    @property
    def largest_intermediate_bytes(self) -> int:
        """Bytes of the largest intermediate in ``dtype``."""
        return self.largest_intermediate * self.dtype.itemsize

    def __call__(self, *operands: torch.Tensor) -> torch.Tensor:
        if not self._steps:
            return torch.einsum(self.explicit, *operands)
        ops = list(operands)
        for positions, sub in self._steps:
            # positions are in descending order, so popping keeps the others in place
            ops.append(torch.einsum(sub, *[ops.pop(p) for p in positions]))
        return ops[0]

    def __repr__(self) -> str:
        return (
            f"Plan({self.explicit!r}, shapes={self.shapes}, dtype={self.dtype}, "
            f"path={self.path}, flops={self.flops}, "
            f"largest_intermediate={self.largest_intermediate}, strategy={self.strategy!r})"
        )


@dataclass(frozen=True)
class CacheInfo:
    """Plan cache statistics: lookups that found a plan (hits), that had to plan (misses),
    plans dropped to respect the bound (evictions), plans held (size) and the bound."""

    hits: int
    misses: int
    evictions: int
    size: int
    maxsize: int


class _PlanCache:
    """An LRU map from a signature ``(equation, (shape, dtype), ...)`` to its :class:`Plan`.

    Hits take no lock: under the GIL ``dict.get`` and ``move_to_end`` are atomic, and a hit
    counted twice at once may lose one count, which only touches the statistics. Inserting
    and evicting hold the lock. A lookup precedes every contraction, so a lock taken on every hit
    would be a visible share of the cheapest ones (docs/benchmarks.md, "Measured once").
    """

    def __init__(self, maxsize: int):
        self._plans: OrderedDict = OrderedDict()
        self._lock = threading.Lock()
        self.maxsize = maxsize
        self.hits = self.misses = self.evictions = 0

    def lookup(self, key):
        """The cached plan for ``key``, or ``None``."""
        plan = self._plans.get(key)
        if plan is not None:
            try:
                self._plans.move_to_end(key)
            except KeyError:  # evicted by another thread in between; still a valid plan
                pass
            self.hits += 1
        return plan

    def get(self, key, equation: str) -> Plan:
        """The cached plan for ``key``, planned and cached first if absent."""
        plan = self.lookup(key)
        if plan is not None:
            return plan
        # raises on bad input, and then nothing is cached
        plan = Plan(equation, [k[0] for k in key[1:]], [k[1] for k in key[1:]])
        with self._lock:
            self.misses += 1
            self._plans[key] = plan
            self._evict()
        return plan

    def _evict(self) -> None:
        while len(self._plans) > self.maxsize:
            self._plans.popitem(last=False)
            self.evictions += 1

    def resize(self, maxsize: int) -> None:
        with self._lock:
            self.maxsize = maxsize
            self._evict()

    def clear(self) -> None:
        with self._lock:
            self._plans.clear()
            self.hits = self.misses = self.evictions = 0

    def info(self) -> CacheInfo:
        with self._lock:
            return CacheInfo(self.hits, self.misses, self.evictions, len(self._plans), self.maxsize)


_CACHE = _PlanCache(DEFAULT_CACHE_MAXSIZE)


def contract(equation: str, *operands: torch.Tensor) -> torch.Tensor:
    """Contract torch tensors by an einsum equation, planned once per signature.

    Same semantics as ``torch.einsum(equation, *operands)`` (see ``equation.py`` for the two
    stricter rules: no size-1 broadcasting of labels, one dtype for all operands).

    Args:
        equation: einsum equation, e.g. ``'bixj,bjyk->bixyk'``.
        *operands: torch tensors, e.g. two sites ``(B, χ, 2, χ)``.

    Returns:
        The contracted tensor, e.g. ``(B, χ, 2, 2, χ)``.

    Raises:
        ValueError: the equation does not parse, does not fit the operands (count, rank,
            index sizes), or the dtypes differ.
        TypeError: an operand is not a torch tensor.
    """
    try:
        key = (equation, *[(op.shape, op.dtype) for op in operands])
    except AttributeError:
        key = None
    plan_ = None if key is None else _CACHE.lookup(key)
    if plan_ is None:
        # checked on a miss only: a non-tensor's dtype never equals a torch dtype, so it
        # cannot hit a key planned for tensors
        for op in operands:
            if not isinstance(op, torch.Tensor):
                raise TypeError(f"contract takes torch tensors, got a {type(op).__name__}")
        plan_ = _CACHE.get(key, equation)
    return plan_(*operands)


def plan(equation: str, *shapes, dtype: torch.dtype = torch.float64) -> Plan:
    """The cached :class:`Plan` that ``contract`` runs for operands of these shapes and dtype.

    Example::

        p = plan('bixj,bjyk->bixyk', (8, 32, 2, 32), (8, 32, 2, 32), dtype=torch.complex128)
        p.flops, p.largest_intermediate, p.path

    Raises:
        ValueError: as :func:`contract`, or a shape is not a sequence of non-negative ints.
    """
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"dtype must be a torch.dtype, got {dtype!r}")
    clean = []
    for k, s in enumerate(shapes):
        try:
            s = tuple(s)
            ok = all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in s)
        except TypeError:
            ok = False
        if not ok:
            raise ValueError(f"shape {k} must be a sequence of non-negative ints, got {shapes[k]!r}")
        clean.append(s)
    return _CACHE.get((equation, *[(s, dtype) for s in clean]), equation)


def cache_info() -> CacheInfo:
    """Hits, misses, evictions, size and bound of the plan cache."""
    return _CACHE.info()


def clear_cache() -> None:
    """Drop every cached plan and reset the counters."""
    _CACHE.clear()


def set_cache_maxsize(maxsize: int) -> None:
    """Bound the plan cache to ``maxsize`` plans (>= 1), evicting the least recently used."""
    if not isinstance(maxsize, int) or isinstance(maxsize, bool) or maxsize < 1:
        raise ValueError(f"maxsize must be an int >= 1, got {maxsize!r}")
    _CACHE.resize(maxsize)
