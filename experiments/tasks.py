"""Synthetic memory tasks: offline, seeded generators of recall and copying sequences.

Each task probes whether a sequence model keeps *which token came with which*, not only a summary
of its input. One call draws a whole data set::

    from qlam_tn.experiments import tasks
    x, y = tasks.make("mqar", n=1000, seed=0, seq_len=256, num_pairs=16, vocab_size=512)
    tasks.available()                       # ("mqar", "selective_copy", "induction", ...)
    tasks.spec("mqar", seq_len=256, num_pairs=16, vocab_size=512)   # what a model needs
    tasks.baseline("copy_memory", seq_len=120)                      # the memoryless score
    tasks.split_seed(0, "val")              # the seed of run-seed 0's validation set

    name            parameters                              x                   y
    mqar            seq_len, num_pairs, vocab_size          int64 (n, L)        int64 (n, L)
                    [power_a=0.01]
    selective_copy  seq_len, num_tokens, vocab_size         int64 (n, L)        int64 (n, L)
    induction       seq_len, vocab_size                     int64 (n, L)        int64 (n, L)
    copy_memory     seq_len (= T + 20)                      int64 (n, L)        int64 (n, L)
    adding          seq_len                                 float32 (n, L, 2)   float32 (n,)

For the token tasks ``y[i, t]`` is the class expected from the model's output at position ``t``
(after it has read ``x[i, :t+1]``) and :data:`IGNORE` (-100, PyTorch's ``ignore_index``) where
nothing is asked: the loss and the accuracy count labelled positions only.

Determinism: the data depend only on ``(name, n, seed, params)`` (and numpy's generator
streams): the same call gives the same arrays (one ``numpy.random.default_rng(seed)`` drawn
from in a fixed order; numpy's global state is neither read nor changed); another seed gives
other data. A smaller ``n`` is not a prefix of a larger one. Train, validation and test sets come from one run seed through
:func:`split_seed`, which mixes the split's name into the seed, so run seed 1's training set is
not run seed 0's validation set (as ``seed + 1`` would make it).

Every parameter is checked before anything is drawn: a missing or unknown parameter name, or a
value of the wrong type, raises ``TypeError``; a value out of range raises ``ValueError`` naming
the limit and the published definition it comes from; a data set over :data:`MAX_BYTES` is
refused before it is allocated.

The definitions, and where each follows its reference implementation:

- ``mqar``, multi-query associative recall (Arora, Eyuboglu et al. 2023, "Zoology: measuring
  and improving recall in efficient language models", ``zoology/data/associative_recall.py``,
  ``_mqar``). :func:`mqar_layout` documents the layout.
- ``selective_copy``, selective copying (Gu & Dao 2023, "Mamba", App. E.1; the generator
  ``torch_copying_data(..., variable=True)`` of state-spaces/s4
  ``src/dataloaders/datasets/copying.py``). :func:`selective_copy_layout`.
- ``induction``, induction heads (Fu, Dao et al. 2023, "Hungry Hungry Hippos", the generator
  ``generate_induction_head`` of HazyResearch/safari ``src/dataloaders/synthetics.py``, used by
  Gu & Dao 2023 Sec. 4.1.2 and App. E.1). :func:`induction_layout`.
- ``copy_memory`` and ``adding`` (Arjovsky, Shah & Bengio 2016, "Unitary evolution recurrent
  neural networks", Sec. 4.1 and 4.2; the adding problem after Hochreiter & Schmidhuber 1997).
  :func:`copy_memory_layout`, :func:`adding_layout`.

The ``*_layout`` functions assemble the arrays from given draws (no randomness), so each
task's structure can be checked against a hand-built example.
"""
from __future__ import annotations

import dataclasses
import math
import numbers

import numpy as np

IGNORE = -100                 # label of an unasked position (PyTorch's cross-entropy ignore_index)
MAX_BYTES = 4 * 2**30         # largest data set make() allocates (x and y together); raise it here
SPLITS = ("train", "val", "test")
CHUNK_ELEMENTS = 2**22        # the (rows, width) scratch arrays are drawn this many entries at a time

COPY_SYMBOLS = 8              # copy_memory: the symbols to remember are 0..7
COPY_BLANK = 8                # a_8 of Arjovsky et al.
COPY_DELIMITER = 9            # a_9
COPY_LENGTH = 10              # symbols to remember
COPY_CLASSES = 10


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """What a model needs to read a task's inputs and score its targets.

    inputs:       "tokens" (x int64 (n, L), through an embedding of ``vocab_size`` rows) or
                  "real" (x float32 (n, L, input_dim))
    targets:      "per_position" (y (n, L), logits of ``num_classes`` at every position, scored
                  where y != IGNORE) or "sequence" (y float32 (n,), one real number per sequence)
    metric:       "accuracy" over labelled positions, or "mse"
    labelled:     labelled positions per sequence (1 for a sequence target)
    """

    name: str
    seq_len: int
    inputs: str
    vocab_size: int | None
    input_dim: int | None
    targets: str
    num_classes: int | None
    metric: str
    labelled: int


@dataclasses.dataclass(frozen=True)
class Baseline:
    """A score reached without any memory of the sequence.

    metric: "accuracy", "cross_entropy" (nats per labelled position) or "mse"; value: the score;
    what: the strategy that reaches it.
    """

    metric: str
    value: float
    what: str


# ----------------------------------------------------------------------------------------------
# public API
# ----------------------------------------------------------------------------------------------

def available() -> tuple[str, ...]:
    """The task names :func:`make` knows."""
    return tuple(TASKS)


def make(name: str, n: int, seed: int, **params):
    """Draw ``n`` sequences of task ``name`` from ``seed``; see the module docstring.

    Returns ``(x, y)`` as numpy arrays: int64 (n, L) and int64 (n, L) for the token tasks,
    float32 (n, L, 2) and float32 (n,) for ``adding``.
    """
    task, params = _checked(name, params)
    n = _integer("n", n, 1, name)
    seed = _integer("seed", seed, 0, name)
    size = task.nbytes(n, **params)
    if size > MAX_BYTES:
        raise ValueError(
            f"{name}: n={n} sequences of seq_len={params['seq_len']} take {size / 2**30:.2f} GiB, "
            f"over tasks.MAX_BYTES = {MAX_BYTES / 2**30:.2f} GiB: draw fewer sequences (or several "
            f"sets with different seeds), or raise qlam_tn.experiments.tasks.MAX_BYTES")
    return task.draw(np.random.default_rng(seed), n, **params)


def spec(name: str, **params) -> TaskSpec:
    """The :class:`TaskSpec` of task ``name`` with these parameters (checked as :func:`make` does)."""
    task, params = _checked(name, params)
    return task.spec(**params)


def baseline(name: str, **params) -> Baseline:
    """The memoryless score of task ``name``: for ``copy_memory`` the cross-entropy
    10·log 8/(T+20) and for ``adding`` the MSE 1/6 ≈ 0.167 (Arjovsky et al. 2016); for the recall
    tasks the chance accuracy of guessing among the tokens a target can be."""
    task, params = _checked(name, params)
    return task.baseline(**params)


def split_seed(seed: int, split: str) -> int:
    """The seed of one split (``"train"``, ``"val"``, ``"test"``) of run seed ``seed``.

    Mixed by ``numpy.random.SeedSequence([seed, index of split])``, so the three splits of one run
    and the splits of different runs draw from unrelated streams.
    """
    seed = _integer("seed", seed, 0, "split_seed")
    if split not in SPLITS:
        raise ValueError(f"split_seed: split must be one of {SPLITS}, got {split!r}")
    state = np.random.SeedSequence([seed, SPLITS.index(split)]).generate_state(1, np.uint64)
    return int(state[0]) >> 2          # 62 bits: fits a signed int64 wherever it is recorded


# ----------------------------------------------------------------------------------------------
# layouts (deterministic: the arrays from given draws)
# ----------------------------------------------------------------------------------------------

def mqar_layout(keys, values, gaps, filler, *, overwrite_filler=False):
    """Zoology's MQAR sequence from its draws.

    keys, values: int (n, K), the K pairs of each sequence; gaps: int (n, K), distinct in
    [0, (L - 2K) // 2); filler: int (n, L), the tokens of every position nothing else takes
    (an int64 ``filler`` becomes x itself with ``overwrite_filler``, sparing a copy of n·L).

    x[:, 0:2K] = k_0 v_0 k_1 v_1 ... (the context); key k_j is asked again at position
    ``2K + 2 * gaps[:, j]``, where y holds v_j; y is IGNORE elsewhere. The generator draws the
    filler uniformly from [0, V) as Zoology does (``random_non_queries=True``), so a key may also
    turn up, unasked, among the filler; the labelled occurrence is the query. With ``filler``
    zero this is the example in Zoology's ``multiquery_ar`` docstring (V=12, K=2)::

        x: 2    8    4    7    0    0    4    0    0    0    0    0    2    0    0    0
        y: -100 -100 -100 -100 -100 -100 7    -100 -100 -100 -100 -100 8    -100 -100 -100

    Returns x, y int64 (n, L).
    """
    keys, values, gaps = (np.asarray(a, dtype=np.int64) for a in (keys, values, gaps))
    filler = np.asarray(filler, dtype=np.int64)
    n, K = keys.shape
    L = filler.shape[1]
    if values.shape != (n, K) or gaps.shape != (n, K) or filler.shape[0] != n:
        raise ValueError(f"mqar_layout: keys {keys.shape}, values {values.shape}, gaps "
                         f"{gaps.shape} must be (n, K) and filler (n, L), got filler {filler.shape}")
    space = (L - 2 * K) // 2
    if gaps.size and (gaps.min() < 0 or gaps.max() >= space or _rows_repeat(gaps).any()):
        raise ValueError(f"mqar_layout: gaps must be distinct in each row and in [0, {space}) "
                         f"for L={L}, K={K}")
    rows = np.arange(n)[:, None]
    where = 2 * K + 2 * gaps
    x = filler if overwrite_filler else filler.copy()
    x[:, 0:2 * K:2] = keys
    x[:, 1:2 * K:2] = values
    x[rows, where] = keys
    y = np.full((n, L), IGNORE, dtype=np.int64)
    y[rows, where] = values
    return x, y


def selective_copy_layout(tokens, positions, seq_len, vocab_size):
    """The selective-copying sequence from its draws (s4's ``torch_copying_data``, variable=True).

    tokens: int (n, M), the data tokens in [1, V-1); positions: int (n, M), increasing in
    [0, L - M). x is the noise token 0 except ``x[:, positions] = tokens`` and the M markers
    ``V - 1`` in the last M positions, where y = tokens in order (IGNORE elsewhere). Example
    (L=8, M=2, V=5, tokens [3, 1] at positions [1, 4])::

        x: 0    3    0    0    1    0    4 4
        y: -100 -100 -100 -100 -100 -100 3 1

    Returns x, y int64 (n, L).
    """
    tokens = np.asarray(tokens, dtype=np.int64)
    positions = np.asarray(positions, dtype=np.int64)
    n, M = tokens.shape
    region = seq_len - M
    if positions.shape != (n, M) or (M > 1 and (np.diff(positions, axis=1) <= 0).any()) or (
            positions.size and (positions.min() < 0 or positions.max() >= region)):
        raise ValueError(f"selective_copy_layout: positions {positions.shape} must be (n, M) = "
                         f"{(n, M)}, increasing in each row, in [0, {region})")
    x = np.zeros((n, seq_len), dtype=np.int64)
    x[np.arange(n)[:, None], positions] = tokens
    x[:, region:] = vocab_size - 1
    y = np.full((n, seq_len), IGNORE, dtype=np.int64)
    y[:, region:] = tokens
    return x, y


def induction_layout(tokens, trigger, vocab_size):
    """The induction-heads sequence from its draws (safari's ``generate_induction_head``).

    tokens: int (n, L) in [0, V-1), the sequence before the trigger is placed; trigger: int (n,)
    in [0, L-3). The special token ``V - 1`` replaces ``tokens[:, trigger]`` and ends the
    sequence; y at the last position is the token that followed the first special token
    (``tokens[:, trigger + 1]``), IGNORE elsewhere. Example (L=6, V=4, trigger 1)::

        x: 2    3    0    1    2    3
        y: -100 -100 -100 -100 -100 0

    Returns x, y int64 (n, L).
    """
    x = np.array(tokens, dtype=np.int64)
    trigger = np.asarray(trigger, dtype=np.int64)
    n, L = x.shape
    if trigger.shape != (n,) or (n and (trigger.min() < 0 or trigger.max() >= L - 3)):
        raise ValueError(f"induction_layout: trigger must be (n,) = ({n},) in [0, {L - 3})")
    rows = np.arange(n)
    x[rows, trigger] = vocab_size - 1
    x[:, -1] = vocab_size - 1
    y = np.full((n, L), IGNORE, dtype=np.int64)
    y[:, -1] = x[rows, trigger + 1]
    return x, y


def copy_memory_layout(symbols, seq_len):
    """Arjovsky et al.'s copy-memory sequence from its draws.

    symbols: int (n, 10) in [0, 8). With T = L - 20: x = the 10 symbols, T - 1 blanks (8), the
    delimiter (9), 10 blanks; y = T + 10 blanks, then the 10 symbols. Every position is labelled
    (the published loss averages over all T + 20); the recall positions are the last 10, the only
    ones whose label is not the blank. Example (T=2, L=22, symbols s0 .. s9)::

        x: s0 s1 .. s9 8 9 8 8 .. 8       (10 symbols, T-1 = 1 blank, the delimiter, 10 blanks)
        y: 8  8  .. 8  8 8 s0 s1 .. s9    (T+10 = 12 blanks, then the 10 symbols)

    Returns x, y int64 (n, L).
    """
    symbols = np.asarray(symbols, dtype=np.int64)
    n = symbols.shape[0]
    T = seq_len - 2 * COPY_LENGTH
    x = np.full((n, seq_len), COPY_BLANK, dtype=np.int64)
    x[:, :COPY_LENGTH] = symbols
    x[:, COPY_LENGTH + T - 1] = COPY_DELIMITER
    y = np.full((n, seq_len), COPY_BLANK, dtype=np.int64)
    y[:, -COPY_LENGTH:] = symbols
    return x, y


def adding_layout(values, first, second):
    """The adding problem from its draws (Arjovsky et al. 2016, Sec. 4.2).

    values: float (n, L) in [0, 1); first: int (n,) in [0, L // 2); second: int (n,) in
    [L // 2, L). x[..., 0] = values, x[..., 1] the indicator with ones at ``first`` and
    ``second``; y = values[first] + values[second].

    Returns x float32 (n, L, 2), y float32 (n,).
    """
    values = np.asarray(values, dtype=np.float32)
    n, L = values.shape
    rows = np.arange(n)
    marks = np.zeros((n, L), dtype=np.float32)
    marks[rows, first] = 1.0
    marks[rows, second] = 1.0
    x = np.stack([values, marks], axis=-1)
    y = values[rows, first] + values[rows, second]
    return x, y


# ----------------------------------------------------------------------------------------------
# the tasks: parameter checks, draws, specs, baselines
# ----------------------------------------------------------------------------------------------

def _check_mqar(seq_len, num_pairs, vocab_size, power_a):
    # Zoology's _mqar asserts exactly these three (input_seq_len % 2 == 0, vocab_size >
    # input_seq_len, num_kv_pairs * 4 <= input_seq_len); they also imply enough distinct keys
    # (K <= V/2 - 1) and values (K <= V - V/2).
    if seq_len % 2:
        raise ValueError(f"mqar: seq_len={seq_len} must be even (queries sit at even offsets "
                         f"after the context; Zoology's input_seq_len % 2 == 0)")
    if 4 * num_pairs > seq_len:
        raise ValueError(f"mqar: seq_len={seq_len} must be at least 4 * num_pairs = "
                         f"{4 * num_pairs} (2K context tokens, then a distinct query slot per key "
                         f"among (L - 2K)/2; Zoology's num_kv_pairs * 4 <= input_seq_len): "
                         f"lower num_pairs to {seq_len // 4} or raise seq_len")
    if vocab_size <= seq_len:
        raise ValueError(f"mqar: vocab_size={vocab_size} must exceed seq_len={seq_len} "
                         f"(Zoology's vocab_size > input_seq_len): use vocab_size >= {seq_len + 1}")
    if not (math.isfinite(power_a) and power_a > 0):
        raise ValueError(f"mqar: power_a={power_a} must be a finite number > 0 (gap g is drawn "
                         f"with weight (g+1)^(power_a-1); 1 is uniform, Zoology's default 0.01)")


def _check_selective_copy(seq_len, num_tokens, vocab_size):
    if seq_len < 2 * num_tokens:
        raise ValueError(f"selective_copy: seq_len={seq_len} must be at least 2 * num_tokens = "
                         f"{2 * num_tokens} (num_tokens data tokens among the first "
                         f"seq_len - num_tokens positions, then num_tokens markers)")
    if vocab_size < 3:
        raise ValueError(f"selective_copy: vocab_size={vocab_size} must be at least 3 (the noise "
                         f"token 0, the marker vocab_size - 1, and data tokens in between)")


def _check_induction(seq_len, vocab_size):
    if seq_len < 4:
        raise ValueError(f"induction: seq_len={seq_len} must be at least 4 (the special token, "
                         f"its follower, one more token, the closing special token)")
    if vocab_size < 3:
        raise ValueError(f"induction: vocab_size={vocab_size} must be at least 3 (the special "
                         f"token vocab_size - 1 and two ordinary tokens, else the answer is known)")


def _check_copy_memory(seq_len):
    if seq_len < 2 * COPY_LENGTH + 1:
        raise ValueError(f"copy_memory: seq_len={seq_len} must be at least 21: seq_len = T + 20 "
                         f"for T >= 1 blanks (Arjovsky et al. 2016; T=100 is seq_len=120)")


def _check_adding(seq_len):
    if seq_len < 2:
        raise ValueError(f"adding: seq_len={seq_len} must be at least 2 (one marked number in "
                         f"each half)")


def _draw_mqar(rng, n, seq_len, num_pairs, vocab_size, power_a):
    # Zoology's order of draws: keys, values, gaps, then the filler of every free position.
    half = vocab_size // 2
    keys = distinct_integers(rng, n, num_pairs, 1, half)
    values = distinct_integers(rng, n, num_pairs, half, vocab_size)
    gaps = power_law_gaps(rng, n, num_pairs, (seq_len - 2 * num_pairs) // 2, power_a)
    filler = rng.integers(0, vocab_size, size=(n, seq_len))
    return mqar_layout(keys, values, gaps, filler, overwrite_filler=True)


def _draw_selective_copy(rng, n, seq_len, num_tokens, vocab_size):
    tokens = rng.integers(1, vocab_size - 1, size=(n, num_tokens))
    positions = np.sort(distinct_integers(rng, n, num_tokens, 0, seq_len - num_tokens), axis=1)
    return selective_copy_layout(tokens, positions, seq_len, vocab_size)


def _draw_induction(rng, n, seq_len, vocab_size):
    tokens = rng.integers(0, vocab_size - 1, size=(n, seq_len))
    trigger = rng.integers(0, seq_len - 3, size=n)
    return induction_layout(tokens, trigger, vocab_size)


def _draw_copy_memory(rng, n, seq_len):
    return copy_memory_layout(rng.integers(0, COPY_SYMBOLS, size=(n, COPY_LENGTH)), seq_len)


def _draw_adding(rng, n, seq_len):
    half = seq_len // 2
    first = rng.integers(0, half, size=n)
    second = rng.integers(half, seq_len, size=n)
    return adding_layout(rng.random((n, seq_len)), first, second)


@dataclasses.dataclass(frozen=True)
class _Task:
    required: tuple
    optional: dict
    check: object
    draw: object
    spec: object
    baseline: object
    nbytes: object


def _tokens_bytes(n, seq_len, **_):
    return 2 * 8 * n * seq_len


TASKS = {
    "mqar": _Task(
        ("seq_len", "num_pairs", "vocab_size"), {"power_a": 0.01}, _check_mqar, _draw_mqar,
        lambda seq_len, num_pairs, vocab_size, power_a: TaskSpec(
            "mqar", seq_len, "tokens", vocab_size, None, "per_position", vocab_size, "accuracy",
            num_pairs),
        lambda seq_len, num_pairs, vocab_size, power_a: Baseline(
            "accuracy", 1 / (vocab_size - vocab_size // 2),
            f"a uniform guess among the {vocab_size - vocab_size // 2} value tokens"),
        _tokens_bytes),
    "selective_copy": _Task(
        ("seq_len", "num_tokens", "vocab_size"), {}, _check_selective_copy, _draw_selective_copy,
        lambda seq_len, num_tokens, vocab_size: TaskSpec(
            "selective_copy", seq_len, "tokens", vocab_size, None, "per_position", vocab_size,
            "accuracy", num_tokens),
        lambda seq_len, num_tokens, vocab_size: Baseline(
            "accuracy", 1 / (vocab_size - 2),
            f"a uniform guess among the {vocab_size - 2} data tokens"),
        _tokens_bytes),
    "induction": _Task(
        ("seq_len", "vocab_size"), {}, _check_induction, _draw_induction,
        lambda seq_len, vocab_size: TaskSpec(
            "induction", seq_len, "tokens", vocab_size, None, "per_position", vocab_size,
            "accuracy", 1),
        lambda seq_len, vocab_size: Baseline(
            "accuracy", 1 / (vocab_size - 1),
            f"a uniform guess among the {vocab_size - 1} ordinary tokens"),
        _tokens_bytes),
    "copy_memory": _Task(
        ("seq_len",), {}, _check_copy_memory, _draw_copy_memory,
        lambda seq_len: TaskSpec(
            "copy_memory", seq_len, "tokens", COPY_CLASSES, None, "per_position", COPY_CLASSES,
            "accuracy", seq_len),
        lambda seq_len: Baseline(
            "cross_entropy", COPY_LENGTH * math.log(COPY_SYMBOLS) / seq_len,
            "the blank for the first T+10 outputs, then a uniform guess among the 8 symbols: "
            "10·log 8/(T+20) nats per position (Arjovsky et al. 2016)"),
        _tokens_bytes),
    "adding": _Task(
        ("seq_len",), {}, _check_adding, _draw_adding,
        lambda seq_len: TaskSpec(
            "adding", seq_len, "real", None, 2, "sequence", None, "mse", 1),
        lambda seq_len: Baseline(
            "mse", 1 / 6, "predicting 1 whatever the input: the variance 2/12 of a sum of two "
                          "independent uniforms, 0.167 (Arjovsky et al. 2016)"),
        lambda n, seq_len: 4 * n * (2 * seq_len + 1)),
}


def params(name: str, **given) -> dict:
    """``given``'s parameters of task ``name``, checked, with the defaults filled in, in the task's
    own order (required, then optional): one spelling per setting, for run records and reports."""
    task, out = _checked(name, given)
    return {k: out[k] for k in (*task.required, *task.optional)}


def _checked(name, params):
    """The task and its complete, checked parameters (defaults filled in)."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}: the tasks are {', '.join(TASKS)}")
    task = TASKS[name]
    missing = [p for p in task.required if p not in params]
    unknown = sorted(set(params) - set(task.required) - set(task.optional))
    if missing or unknown:
        wanted = ", ".join(task.required) + "".join(f", [{k}={v}]" for k, v in task.optional.items())
        raise TypeError(f"{name}: " + "; ".join(
            ([f"missing parameter(s) {', '.join(missing)}"] if missing else [])
            + ([f"unknown parameter(s) {', '.join(unknown)}"] if unknown else []))
            + f" (it takes {wanted})")
    out = dict(task.optional)
    out.update(params)
    for key in task.required:
        out[key] = _integer(key, out[key], 1, name)
    for key, default in task.optional.items():
        value = out[key]
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"{name}: {key} must be a number, got {value!r}")
        out[key] = float(value)
    task.check(**out)
    return task, out


def _integer(key, value, low, where):
    """``value`` as an int >= ``low``; bools and floats are refused (a float length is a typo)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{where}: {key} must be an int, got {value!r} ({type(value).__name__})")
    if value < low:
        raise ValueError(f"{where}: {key}={value} must be at least {low}")
    return int(value)


# ----------------------------------------------------------------------------------------------
# vectorised sampling
# ----------------------------------------------------------------------------------------------

def distinct_integers(rng, n, k, low, high):
    """int64 (n, k): in each row k distinct integers of [low, high), every ordered k-tuple
    equally likely (as ``numpy`` ``choice(range(low, high), k, replace=False)`` per row).

    Few draws from a wide range (k² <= high - low): draw with replacement and redraw the rows
    that repeat a value (each row is accepted with probability >= e^-1/2). Else the range is
    narrow (under k² values): the k smallest of uniform keys, in the order of their keys.
    """
    width = high - low
    if k > width:
        raise ValueError(f"distinct_integers: cannot draw {k} distinct values from [{low}, {high})")
    if k * k <= width:
        out = rng.integers(low, high, size=(n, k))
        redo = np.flatnonzero(_rows_repeat(out))
        while redo.size:
            out[redo] = rng.integers(low, high, size=(redo.size, k))
            redo = redo[_rows_repeat(out[redo])]
        return out
    out = np.empty((n, k), dtype=np.int64)
    step = max(1, CHUNK_ELEMENTS // width)
    for start in range(0, n, step):
        keys = rng.random((min(step, n - start), width))
        top = np.argpartition(keys, k - 1, axis=1)[:, :k]
        order = np.argsort(np.take_along_axis(keys, top, axis=1), axis=1)
        out[start:start + step] = low + np.take_along_axis(top, order, axis=1)
    return out


def power_law_gaps(rng, n, k, space, power_a):
    """int64 (n, k): in each row k distinct gaps of [0, space), drawn one after another without
    replacement with weight (g + 1)^(power_a - 1) (Zoology's ``np.random.choice(space, k,
    replace=False, p=p)`` with p = a·(g+1)^(a-1) normalised), in the order drawn.

    Gumbel top-k: the k largest of log w_g + Gumbel noise, by decreasing score, are a draw of
    that successive sampling, order included; the order matters, since Zoology gives the j-th
    drawn gap to the j-th pair, so earlier pairs tend to be asked sooner.
    """
    log_w = (power_a - 1.0) * np.log(np.arange(1, space + 1, dtype=np.float64))
    out = np.empty((n, k), dtype=np.int64)
    step = max(1, CHUNK_ELEMENTS // max(space, 1))
    for start in range(0, n, step):
        score = log_w + rng.gumbel(size=(min(step, n - start), space))
        top = np.argpartition(-score, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(score, top, axis=1), axis=1)
        out[start:start + step] = np.take_along_axis(top, order, axis=1)
    return out


def _rows_repeat(a):
    """bool (n,): whether row i of int (n, k) holds a value twice."""
    if a.shape[1] < 2:
        return np.zeros(a.shape[0], dtype=bool)
    s = np.sort(a, axis=1)
    return (s[:, 1:] == s[:, :-1]).any(axis=1)
