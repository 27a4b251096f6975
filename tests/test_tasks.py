"""The synthetic memory tasks (qlam_tn.experiments.tasks): each layout against a hand-built
example, each generator's invariants on random draws checked by plain loops over the arrays, the
distributions of the random parts against their exact laws, determinism, the baselines, and the
refusal of bad parameters before anything is drawn.

The random-draw checks are hypothesis-driven and bounded; a longer run by hand::

    QLAM_FUZZ_EXAMPLES=2000 python -m pytest tests/test_tasks.py
"""
import dataclasses
import itertools
import math
import os

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from qlam_tn.experiments import tasks

EXAMPLES = int(os.environ.get("QLAM_FUZZ_EXAMPLES", 150))
FUZZ = settings(max_examples=EXAMPLES, deadline=None)
IGN = -100

SMALL = {
    "mqar": dict(seq_len=32, num_pairs=4, vocab_size=40),
    "selective_copy": dict(seq_len=24, num_tokens=4, vocab_size=8),
    "induction": dict(seq_len=16, vocab_size=6),
    "copy_memory": dict(seq_len=30),
    "adding": dict(seq_len=10),
}


# ----------------------------------------------------------------------------------------------
# hand-built examples of each layout
# ----------------------------------------------------------------------------------------------

def test_mqar_layout_is_zoologys_docstring_example():
    # Zoology's multiquery_ar docstring (V=12, K=2, L=16, random_non_queries=False): key 4 is
    # asked at position 6 (gap 1), key 2 at position 12 (gap 4).
    x, y = tasks.mqar_layout([[2, 4]], [[8, 7]], [[4, 1]], np.zeros((1, 16), np.int64))
    assert x.tolist() == [[2, 8, 4, 7, 0, 0, 4, 0, 0, 0, 0, 0, 2, 0, 0, 0]]
    assert y.tolist() == [[IGN] * 6 + [7] + [IGN] * 5 + [8] + [IGN] * 3]
    assert x.dtype == y.dtype == np.int64


def test_mqar_layout_keeps_the_filler_elsewhere_and_copies_it():
    filler = np.arange(100, 116).reshape(1, 16)
    x, y = tasks.mqar_layout([[2, 4]], [[8, 7]], [[0, 5]], filler)
    assert x.tolist() == [[2, 8, 4, 7, 2, 105, 106, 107, 108, 109, 110, 111, 112, 113, 4, 115]]
    assert y[0, 4] == 8 and y[0, 14] == 7 and (y != IGN).sum() == 2
    assert filler[0, 0] == 100   # the caller's filler is untouched


def test_mqar_layout_refuses_repeated_or_out_of_range_gaps():
    with pytest.raises(ValueError, match="distinct"):
        tasks.mqar_layout([[2, 4]], [[8, 7]], [[1, 1]], np.zeros((1, 16), np.int64))
    with pytest.raises(ValueError, match=r"\[0, 6\)"):
        tasks.mqar_layout([[2, 4]], [[8, 7]], [[0, 6]], np.zeros((1, 16), np.int64))


def test_selective_copy_layout_example():
    x, y = tasks.selective_copy_layout([[3, 1]], [[1, 4]], seq_len=8, vocab_size=5)
    assert x.tolist() == [[0, 3, 0, 0, 1, 0, 4, 4]]
    assert y.tolist() == [[IGN] * 6 + [3, 1]]


def test_induction_layout_example():
    x, y = tasks.induction_layout([[2, 1, 0, 1, 2, 0]], [1], vocab_size=4)
    assert x.tolist() == [[2, 3, 0, 1, 2, 3]]
    assert y.tolist() == [[IGN] * 5 + [0]]


def test_copy_memory_layout_example():
    symbols = [[7, 6, 5, 4, 3, 2, 1, 0, 1, 2]]
    x, y = tasks.copy_memory_layout(symbols, seq_len=22)      # T = 2
    assert x.tolist() == [symbols[0] + [8, 9] + [8] * 10]
    assert y.tolist() == [[8] * 12 + symbols[0]]


def test_adding_layout_example():
    values = [[0.5, 0.25, 0.125, 0.75, 1.0 / 3]]
    x, y = tasks.adding_layout(values, [1], [3])
    assert x.dtype == y.dtype == np.float32 and x.shape == (1, 5, 2) and y.shape == (1,)
    np.testing.assert_array_equal(x[0, :, 0], np.float32(values[0]))
    assert x[0, :, 1].tolist() == [0, 1, 0, 1, 0]
    assert y[0] == np.float32(1.0)


# ----------------------------------------------------------------------------------------------
# invariants of random draws, checked by plain loops
# ----------------------------------------------------------------------------------------------

def check_mqar(x, y, seq_len, num_pairs, vocab_size):
    K, L, V = num_pairs, seq_len, vocab_size
    assert x.shape == y.shape == (x.shape[0], L) and x.dtype == y.dtype == np.int64
    for row_x, row_y in zip(x.tolist(), y.tolist()):
        keys, values = row_x[0:2 * K:2], row_x[1:2 * K:2]
        assert len(set(keys)) == K and all(1 <= k < V // 2 for k in keys)
        assert len(set(values)) == K and all(V // 2 <= v < V for v in values)
        assert all(0 <= t < V for t in row_x)
        pairs = dict(zip(keys, values))
        asked = []
        for t in range(L):
            if row_y[t] == IGN:
                continue
            assert t >= 2 * K and (t - 2 * K) % 2 == 0       # after every pair, at an even offset
            assert row_x[t] in pairs and row_y[t] == pairs[row_x[t]]
            asked.append(row_x[t])
        assert sorted(asked) == sorted(keys)                 # each key asked exactly once
        assert all(v == IGN for v in row_y[:2 * K])


def check_selective_copy(x, y, seq_len, num_tokens, vocab_size):
    L, M, V = seq_len, num_tokens, vocab_size
    assert x.shape == y.shape == (x.shape[0], L)
    for row_x, row_y in zip(x.tolist(), y.tolist()):
        data = [t for t in row_x[:L - M] if t != 0]
        assert len(data) == M and all(1 <= t <= V - 2 for t in data)
        assert row_x[L - M:] == [V - 1] * M
        assert row_y[L - M:] == data and row_y[:L - M] == [IGN] * (L - M)


def check_induction(x, y, seq_len, vocab_size):
    L, S = seq_len, vocab_size - 1
    assert x.shape == y.shape == (x.shape[0], L)
    for row_x, row_y in zip(x.tolist(), y.tolist()):
        where = [t for t in range(L) if row_x[t] == S]
        assert len(where) == 2 and where[1] == L - 1 and where[0] <= L - 4
        assert all(0 <= t < S for t in row_x if t != S)
        assert row_y[-1] == row_x[where[0] + 1] and row_y[:-1] == [IGN] * (L - 1)


def check_copy_memory(x, y, seq_len):
    T = seq_len - 20
    for row_x, row_y in zip(x.tolist(), y.tolist()):
        symbols = row_x[:10]
        assert all(0 <= s < 8 for s in symbols)
        assert row_x[10:] == [8] * (T - 1) + [9] + [8] * 10
        assert row_y == [8] * (T + 10) + symbols


def check_adding(x, y, seq_len):
    assert x.shape == (x.shape[0], seq_len, 2) and y.shape == (x.shape[0],)
    assert x.dtype == y.dtype == np.float32
    half = seq_len // 2
    for row_x, target in zip(x.tolist(), y.tolist()):
        marks = [t for t in range(seq_len) if row_x[t][1] == 1.0]
        assert all(row_x[t][1] in (0.0, 1.0) for t in range(seq_len))
        assert len(marks) == 2 and marks[0] < half <= marks[1]
        assert all(0.0 <= row_x[t][0] < 1.0 for t in range(seq_len))
        assert target == pytest.approx(row_x[marks[0]][0] + row_x[marks[1]][0], abs=1e-6)


CHECKS = {"mqar": check_mqar, "selective_copy": check_selective_copy,
          "induction": check_induction, "copy_memory": check_copy_memory, "adding": check_adding}


@st.composite
def task_params(draw):
    name = draw(st.sampled_from(tasks.available()))
    if name == "mqar":
        K = draw(st.integers(1, 8))
        L = 2 * draw(st.integers(2 * K, 2 * K + 20))
        params = dict(seq_len=L, num_pairs=K, vocab_size=draw(st.integers(L + 1, L + 60)))
    elif name == "selective_copy":
        M = draw(st.integers(1, 8))
        params = dict(seq_len=draw(st.integers(2 * M, 2 * M + 30)), num_tokens=M,
                      vocab_size=draw(st.integers(3, 20)))
    elif name == "induction":
        params = dict(seq_len=draw(st.integers(4, 40)), vocab_size=draw(st.integers(3, 20)))
    elif name == "copy_memory":
        params = dict(seq_len=draw(st.integers(21, 60)))
    else:
        params = dict(seq_len=draw(st.integers(2, 40)))
    return name, params


@FUZZ
@given(task_params(), st.integers(1, 30), st.integers(0, 2**63))
def test_random_draws_keep_each_tasks_structure(case, n, seed):
    name, params = case
    x, y = tasks.make(name, n, seed, **params)
    assert len(x) == len(y) == n
    CHECKS[name](x, y, **params)


def test_each_task_at_its_published_size_keeps_its_structure():
    cases = {"mqar": dict(seq_len=256, num_pairs=64, vocab_size=8192),
             "selective_copy": dict(seq_len=4096, num_tokens=16, vocab_size=16),
             "induction": dict(seq_len=256, vocab_size=16),
             "copy_memory": dict(seq_len=120),
             "adding": dict(seq_len=200)}
    for name, params in cases.items():
        x, y = tasks.make(name, 20, 3, **params)
        CHECKS[name](x, y, **params)


# ----------------------------------------------------------------------------------------------
# the random parts follow their laws
# ----------------------------------------------------------------------------------------------

def test_the_first_two_pairs_gaps_follow_zoologys_successive_power_law():
    # Zoology draws K gaps with np.random.choice(space, K, replace=False, p) and gives the j-th
    # drawn to pair j: pair 0's gap has law p, pair 1's gap sum_{i != j} p_i p_j / (1 - p_i).
    L, K, a, n = 40, 4, 0.01, 40_000
    space = (L - 2 * K) // 2
    p = a * np.arange(1, space + 1) ** (a - 1)
    p /= p.sum()
    second = np.array([sum(p[i] * p[j] / (1 - p[i]) for i in range(space) if i != j)
                       for j in range(space)])
    x, y = tasks.make("mqar", n, 11, seq_len=L, num_pairs=K, vocab_size=L + 1)
    for pair, law in ((0, p), (1, second)):
        key = x[:, 2 * pair]
        gap = (np.argmax((x[:, 2 * K:] == key[:, None]) & (y[:, 2 * K:] != IGN), axis=1)) // 2
        freq = np.bincount(gap, minlength=space) / n
        tolerance = 5 * np.sqrt(law * (1 - law) / n) + 1e-4
        assert np.all(np.abs(freq - law) <= tolerance), (pair, freq, law)


def test_power_law_one_is_uniform_over_the_gaps():
    L, K, n = 24, 2, 20_000
    x, y = tasks.make("mqar", n, 5, seq_len=L, num_pairs=K, vocab_size=L + 1, power_a=1)
    slots = np.flatnonzero((y != IGN).sum(axis=0))
    counts = (y[:, slots] != IGN).sum(axis=0)
    assert slots.tolist() == list(range(2 * K, L, 2))
    expected = n * K / len(slots)
    assert np.all(np.abs(counts - expected) < 5 * np.sqrt(expected))


@pytest.mark.parametrize("k, low, high", [(2, 0, 3), (2, 5, 9), (3, 1, 5), (1, 0, 4)])
def test_distinct_integers_draws_every_ordered_tuple_equally_often(k, low, high):
    # (2, 0, 3) and (3, 1, 5) take the narrow-range branch (k² > width), the others rejection.
    n = 30_000
    out = tasks.distinct_integers(np.random.default_rng(2), n, k, low, high)
    tuples = list(itertools.permutations(range(low, high), k))
    counts = {t: 0 for t in tuples}
    for row in map(tuple, out.tolist()):
        counts[row] += 1                      # a KeyError would be a repeat or a value out of range
    expected = n / len(tuples)
    assert all(abs(c - expected) < 5 * math.sqrt(expected) for c in counts.values())


def test_distinct_integers_refuses_more_draws_than_values():
    with pytest.raises(ValueError, match="cannot draw 4 distinct"):
        tasks.distinct_integers(np.random.default_rng(0), 1, 4, 0, 3)


def test_mqar_keys_values_and_filler_are_uniform_over_their_ranges():
    V, L, K, n = 20, 16, 4, 20_000
    x, y = tasks.make("mqar", n, 8, seq_len=L, num_pairs=K, vocab_size=V)
    keys = np.bincount(x[:, 0:2 * K:2].ravel(), minlength=V)
    values = np.bincount(x[:, 1:2 * K:2].ravel(), minlength=V)
    assert keys[0] == 0 and keys[V // 2:].sum() == 0 and values[:V // 2].sum() == 0
    for counts in (keys[1:V // 2], values[V // 2:]):
        expected = counts.sum() / len(counts)
        assert np.all(np.abs(counts - expected) < 5 * np.sqrt(expected))
    free = np.ones_like(y, dtype=bool)
    free[:, :2 * K] = False
    free &= y == IGN
    filler = np.bincount(x[free], minlength=V)
    assert np.all(np.abs(filler - free.sum() / V) < 5 * np.sqrt(free.sum() / V))


def test_selective_copy_positions_are_a_uniform_subset():
    n = 30_000
    x, _ = tasks.make("selective_copy", n, 4, seq_len=7, num_tokens=2, vocab_size=4)
    sets = [tuple(np.flatnonzero(row[:5])) for row in x]
    counts = {s: sets.count(s) for s in itertools.combinations(range(5), 2)}
    assert sum(counts.values()) == n
    assert all(abs(c - n / 10) < 5 * math.sqrt(n / 10) for c in counts.values())


def test_induction_trigger_is_uniform_over_its_range():
    n, L, V = 30_000, 9, 4
    x, _ = tasks.make("induction", n, 6, seq_len=L, vocab_size=V)
    first = np.argmax(x == V - 1, axis=1)
    counts = np.bincount(first, minlength=L)
    assert counts[L - 3:].sum() == 0
    assert np.all(np.abs(counts[:L - 3] - n / (L - 3)) < 5 * math.sqrt(n / (L - 3)))


def test_adding_marks_are_uniform_in_each_half():
    n, L = 30_000, 7
    x, _ = tasks.make("adding", n, 9, seq_len=L)
    counts = x[:, :, 1].sum(axis=0)
    for part in (counts[:3], counts[3:]):
        expected = n / len(part)
        assert np.all(np.abs(part - expected) < 5 * math.sqrt(expected))


# ----------------------------------------------------------------------------------------------
# baselines
# ----------------------------------------------------------------------------------------------

def test_predicting_one_on_the_adding_problem_scores_the_published_baseline():
    _, y = tasks.make("adding", 20_000, 0, seq_len=100)
    mse = float(np.mean((y.astype(np.float64) - 1.0) ** 2))
    assert mse == pytest.approx(0.167, abs=0.006)
    assert tasks.baseline("adding", seq_len=100).value == pytest.approx(1 / 6)
    assert tasks.baseline("adding", seq_len=100).metric == "mse"


@pytest.mark.parametrize("T", [1, 100, 500])
def test_the_memoryless_copy_strategy_scores_the_published_cross_entropy(T):
    L = T + 20
    _, y = tasks.make("copy_memory", 50, 1, seq_len=L)
    # the blank for sure during the first T+10 outputs, then uniform over the 8 symbols
    logits = torch.full((50, L, 10), -math.inf, dtype=torch.float64)
    logits[:, :T + 10, 8] = 0.0
    logits[:, T + 10:, :8] = 0.0
    ce = torch.nn.functional.cross_entropy(logits.reshape(-1, 10), torch.from_numpy(y).reshape(-1),
                                           ignore_index=IGN)
    base = tasks.baseline("copy_memory", seq_len=L)
    assert base.metric == "cross_entropy"
    assert float(ce) == pytest.approx(base.value, rel=1e-12)
    assert base.value == pytest.approx(10 * math.log(8) / (T + 20), rel=1e-12)


def test_chance_baselines_of_the_recall_tasks():
    assert tasks.baseline("mqar", seq_len=32, num_pairs=4, vocab_size=41).value == pytest.approx(1 / 21)
    assert tasks.baseline("selective_copy", seq_len=20, num_tokens=4, vocab_size=16).value == 1 / 14
    assert tasks.baseline("induction", seq_len=20, vocab_size=16).value == 1 / 15


# ----------------------------------------------------------------------------------------------
# determinism, seeds, specs
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(SMALL))
def test_same_seed_same_data_other_seed_other_data(name):
    a = tasks.make(name, 16, 7, **SMALL[name])
    b = tasks.make(name, 16, 7, **SMALL[name])
    c = tasks.make(name, 16, 8, **SMALL[name])
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    assert not np.array_equal(a[0], c[0])


def test_generation_does_not_touch_numpys_global_state():
    np.random.seed(0)
    before = np.random.get_state()[1].copy()
    tasks.make("mqar", 4, 0, **SMALL["mqar"])
    np.testing.assert_array_equal(np.random.get_state()[1], before)


def test_split_seeds_differ_between_splits_and_runs_and_are_stable():
    seeds = [tasks.split_seed(s, split) for s in range(50) for split in tasks.SPLITS]
    assert len(set(seeds)) == len(seeds)
    assert all(0 <= s < 2**62 for s in seeds)
    assert tasks.split_seed(3, "val") == tasks.split_seed(3, "val")
    with pytest.raises(ValueError, match="split must be one of"):
        tasks.split_seed(0, "dev")


def test_specs():
    s = tasks.spec("mqar", seq_len=256, num_pairs=16, vocab_size=512)
    assert (s.inputs, s.vocab_size, s.num_classes, s.seq_len, s.targets, s.labelled) == (
        "tokens", 512, 512, 256, "per_position", 16)
    assert tasks.spec("copy_memory", seq_len=120).vocab_size == 10
    assert tasks.spec("selective_copy", seq_len=64, num_tokens=8, vocab_size=16).labelled == 8
    a = tasks.spec("adding", seq_len=200)
    assert (a.inputs, a.input_dim, a.vocab_size, a.targets, a.metric) == ("real", 2, None, "sequence", "mse")
    assert tasks.available() == ("mqar", "selective_copy", "induction", "copy_memory", "adding")


@pytest.mark.parametrize("name", list(SMALL))
def test_spec_matches_the_data(name):
    s = tasks.spec(name, **SMALL[name])
    x, y = tasks.make(name, 8, 0, **SMALL[name])
    assert x.shape[1] == s.seq_len
    if s.inputs == "tokens":
        assert x.max() < s.vocab_size and y.max() < s.num_classes
        assert np.all((y != IGN).sum(axis=1) == s.labelled)
    else:
        assert x.shape[2] == s.input_dim and y.shape == (8,)


# ----------------------------------------------------------------------------------------------
# bad parameters, refused before anything is drawn
# ----------------------------------------------------------------------------------------------

BAD = [
    ("mqar", dict(seq_len=64, num_pairs=17, vocab_size=100), ValueError, "at least 4 \\* num_pairs = 68"),
    ("mqar", dict(seq_len=256, num_pairs=16, vocab_size=256), ValueError, "must exceed seq_len=256"),
    ("mqar", dict(seq_len=63, num_pairs=4, vocab_size=100), ValueError, "must be even"),
    ("mqar", dict(seq_len=64, num_pairs=4, vocab_size=100, power_a=0), ValueError, "power_a=0"),
    ("mqar", dict(seq_len=64, num_pairs=4, vocab_size=100, power_a=float("nan")), ValueError, "finite"),
    ("mqar", dict(seq_len=64, num_pairs=0, vocab_size=100), ValueError, "num_pairs=0 must be at least 1"),
    ("mqar", dict(seq_len=64, vocab_size=100), TypeError, "missing parameter\\(s\\) num_pairs"),
    ("mqar", dict(seq_len=64, num_pairs=4, vocab_size=100, num_queries=3), TypeError, "unknown parameter"),
    ("mqar", dict(seq_len=64.0, num_pairs=4, vocab_size=100), TypeError, "seq_len must be an int"),
    ("mqar", dict(seq_len=64, num_pairs=True, vocab_size=100), TypeError, "num_pairs must be an int"),
    ("mqar", dict(seq_len=64, num_pairs=4, vocab_size=100, power_a="0.01"), TypeError, "power_a must be a number"),
    ("selective_copy", dict(seq_len=15, num_tokens=8, vocab_size=16), ValueError, "at least 2 \\* num_tokens"),
    ("selective_copy", dict(seq_len=16, num_tokens=8, vocab_size=2), ValueError, "at least 3"),
    ("induction", dict(seq_len=3, vocab_size=16), ValueError, "at least 4"),
    ("induction", dict(seq_len=16, vocab_size=2), ValueError, "at least 3"),
    ("copy_memory", dict(seq_len=20), ValueError, "T \\+ 20"),
    ("copy_memory", dict(T=100), TypeError, "missing parameter\\(s\\) seq_len"),
    ("adding", dict(seq_len=1), ValueError, "at least 2"),
    ("lra", dict(seq_len=16), ValueError, "unknown task 'lra'"),
]


@pytest.fixture
def no_drawing(monkeypatch):
    """Every task's draw replaced by one that fails the test: a refusal must come first."""
    def fail(*args, **kwargs):
        raise AssertionError("drew data before refusing the parameters")
    monkeypatch.setattr(tasks, "TASKS", {k: dataclasses.replace(t, draw=fail)
                                         for k, t in tasks.TASKS.items()})


@pytest.mark.parametrize("name, params, error, match", BAD)
def test_bad_parameters_are_refused_before_drawing(no_drawing, name, params, error, match):
    for call in (lambda: tasks.make(name, 4, 0, **params), lambda: tasks.spec(name, **params),
                 lambda: tasks.baseline(name, **params)):
        with pytest.raises(error, match=match):
            call()


@pytest.mark.parametrize("n, seed, error, match", [
    (0, 0, ValueError, "n=0 must be at least 1"), (-3, 0, ValueError, "n=-3"),
    (2.0, 0, TypeError, "n must be an int"), (2, -1, ValueError, "seed=-1"),
    (2, "0", TypeError, "seed must be an int")])
def test_bad_sizes_and_seeds_are_refused_before_drawing(no_drawing, n, seed, error, match):
    with pytest.raises(error, match=match):
        tasks.make("induction", n, seed, seq_len=8, vocab_size=4)


def test_a_data_set_over_max_bytes_is_refused_before_allocating(no_drawing, monkeypatch):
    monkeypatch.setattr(tasks, "MAX_BYTES", 2**20)
    with pytest.raises(ValueError, match="raise qlam_tn.experiments.tasks.MAX_BYTES"):
        tasks.make("mqar", 10_000, 0, seq_len=256, num_pairs=16, vocab_size=512)


def test_numpy_integers_are_accepted():
    x, y = tasks.make("induction", np.int64(3), np.uint32(5), seq_len=np.int32(8), vocab_size=4)
    np.testing.assert_array_equal(x, tasks.make("induction", 3, 5, seq_len=8, vocab_size=4)[0])
