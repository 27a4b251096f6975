"""The one timing/RSS helper module and the benches' table printer, against hand-made clocks and text."""
import io
import resource
import sys

import pytest

from qlam_tn.experiments import timing
from qlam_tn.experiments.bench.table import Table, provenance


class FakeClock:
    """``time.perf_counter`` that advances by the next of ``steps`` each time a call finishes."""

    def __init__(self, monkeypatch):
        self.now = 0.0
        monkeypatch.setattr(timing.time, "perf_counter", lambda: self.now)

    def calls(self, durations):
        it = iter(durations)

        def fn():
            self.now += next(it)
        return fn


def test_median_and_best_time_skip_the_warm_up_call(monkeypatch):
    clock = FakeClock(monkeypatch)
    # the first call (100 s) is the warm-up: not timed
    assert timing.median_time(clock.calls([100.0, 3.0, 1.0, 2.0]), 3) == 2.0
    assert timing.best_time(clock.calls([100.0, 3.0, 1.0, 2.0]), 3) == 1.0
    assert timing.wall_times(clock.calls([5.0, 7.0]), 2, warmup=False) == [5.0, 7.0]
    with pytest.raises(ValueError, match="repeats must be >= 1"):
        timing.median_time(lambda: None, 0)


def test_self_timed_runs_report_their_own_seconds():
    times = iter([3.0, 1.0, 2.0, (5.0, "z"), (4.0, "z"), (9.0, "z")])
    assert timing.median_of(lambda: next(times), 3) == 2.0
    assert timing.median_of(lambda: next(times), 3) == 5.0  # a runner's (seconds, ...) tuple


def test_fastest_of_runs_until_the_minimum_time_and_stops_after_a_slow_run():
    seen = []

    def run(values):
        it = iter(values)

        def once():
            seen.append(next(it))
            return seen[-1]
        return once

    assert timing.fastest_of(run([0.2, 0.1, 0.3, 0.05]), repeats=2, min_time=0.55) == 0.1
    assert seen == [0.2, 0.1, 0.3]  # 0.2 + 0.1 < 0.55 <= 0.2 + 0.1 + 0.3
    seen.clear()
    assert timing.fastest_of(run([0.2, 0.1, 0.3, 0.05]), repeats=2, min_time=0.25) == 0.1
    assert seen == [0.2, 0.1]  # two runs add up to 0.3 >= 0.25
    seen.clear()
    assert timing.fastest_of(run([5.0, 1.0]), repeats=3, slow_s=4.0) == 5.0
    assert seen == [5.0]  # one slow run is enough


def test_per_call_us_is_the_mean_of_a_round_in_microseconds(monkeypatch):
    clock = FakeClock(monkeypatch)
    fn = clock.calls([2e-3] * 1000)  # every call takes 2 ms
    assert timing.per_call_us(fn, min_time=0.1, rounds=5) == pytest.approx(2000.0)
    # two untimed calls, then 5 rounds of 0.1 / 5 / 2e-3 = 10 calls
    assert clock.now == pytest.approx(2e-3 * (2 + 5 * 10))


def test_peak_rss_is_the_processes_high_water_mark_in_mb():
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if sys.platform == "darwin":
        kb /= 1024
    assert timing.peak_rss_mb() == pytest.approx(kb / 1024, rel=0.05)
    assert timing.peak_rss_mb() > 10  # an interpreter with torch loaded


def test_a_table_prints_markdown_and_plain_text_row_by_row():
    out = io.StringIO()
    t = Table(["n", "time (ms)", "note"], markdown=True, title="Engine", out=out)
    t.row(8, "1.50", "a|b")
    assert out.getvalue() == "\nEngine\n\n| n | time (ms) | note |\n|---|---|---|\n| 8 | 1.50 | a\\|b |\n"
    out = io.StringIO()
    t = Table(["n", "time (ms)"], width=[4, 0], out=out)
    t.row(16, "12.25")
    t.row(8, "123456789012")  # a longer cell widens its own row only
    assert out.getvalue().splitlines() == ["n     time (ms)", "----  ---------", "16    12.25",
                                           "8     123456789012"]
    assert t.rows == [["16", "12.25"], ["8", "123456789012"]]
    with pytest.raises(ValueError, match="a row of 2 columns"):
        t.row(1, 2, 3)


def test_the_provenance_line_names_the_command_commit_and_threads():
    import torch

    line = provenance("qlam bench engine --quick")
    assert line.startswith("`qlam bench engine --quick` · commit ")
    assert f"torch {torch.__version__}" in line
    assert f"{torch.get_num_threads()} thread" in line
