"""`qlam scale`: slope fits and crossovers on synthetic timings, the memory estimate, and a tiny run."""
import csv
import json
import math

import numpy as np
import pytest
import torch

from qlam_tn.experiments import cli
from qlam_tn.experiments import scale as S


@pytest.fixture(autouse=True)
def _keep_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


# ------------------------------------------------------------------------------------ fits

def test_loglog_fit_exact_power_laws():
    n = np.array([4, 8, 16, 32, 64, 128, 256])
    fit = S.loglog_fit(n, 3e-4 * n)  # t = c·n
    assert fit["slope"] == pytest.approx(1.0, abs=1e-12) and fit["slope_se"] < 1e-12
    assert fit["intercept"] == pytest.approx(math.log(3e-4), abs=1e-10)
    assert (fit["points"], fit["x_min"], fit["x_max"]) == (7, 4.0, 256.0)
    chi = np.array([4, 8, 16, 32, 64])
    fit = S.loglog_fit(chi, 2e-6 * chi ** 3.0)  # t = c·χ³
    assert fit["slope"] == pytest.approx(3.0, abs=1e-12) and fit["slope_se"] < 1e-12


def test_loglog_fit_known_answer_with_residuals():
    # ln x = 0, 1, 2 and ln y = 0, 1, 3: slope 3/2, intercept -1/6, residuals (1, -2, 1)/6, so
    # s² = RSS/(3-2) = 1/6; se(slope) = sqrt(s²/Sxx) = sqrt(1/12);
    # se(intercept) = sqrt(s² Σu²/(m Sxx)) = sqrt(5)/6.
    fit = S.loglog_fit(np.exp([0.0, 1.0, 2.0]), np.exp([0.0, 1.0, 3.0]))
    assert fit["slope"] == pytest.approx(1.5, abs=1e-12)
    assert fit["intercept"] == pytest.approx(-1 / 6, abs=1e-12)
    assert fit["slope_se"] == pytest.approx(math.sqrt(1 / 12), rel=1e-12)
    assert fit["intercept_se"] == pytest.approx(math.sqrt(5) / 6, rel=1e-12)
    scipy_stats = pytest.importorskip("scipy.stats")
    ref = scipy_stats.linregress([0.0, 1.0, 2.0], [0.0, 1.0, 3.0])
    assert fit["slope_se"] == pytest.approx(ref.stderr, rel=1e-12)
    assert fit["intercept_se"] == pytest.approx(ref.intercept_stderr, rel=1e-12)


def test_loglog_fit_noisy_slope_and_calibrated_error():
    """t = c·n^1.0 with 5% log-normal noise: the slope is within its error, and the standard error
    matches the spread of slopes over many noisy draws."""
    rng = np.random.default_rng(0)
    n = np.array([16, 32, 64, 128, 256], dtype=float)
    sigma = 0.05
    fits = [S.loglog_fit(n, 1e-3 * n * np.exp(sigma * rng.standard_normal(n.size))) for _ in range(2000)]
    slopes = np.array([f["slope"] for f in fits])
    ses = np.array([f["slope_se"] for f in fits])
    true_se = sigma / math.sqrt(((np.log(n) - np.log(n).mean()) ** 2).sum())
    assert abs(slopes.mean() - 1.0) < 4 * true_se / math.sqrt(len(fits))
    assert slopes.std() == pytest.approx(true_se, rel=0.1)
    assert np.sqrt((ses ** 2).mean()) == pytest.approx(true_se, rel=0.1)  # E[se²] = true variance
    assert abs(fits[0]["slope"] - 1.0) < 4 * fits[0]["slope_se"]


def test_fit_edge_cases():
    two = S.loglog_fit([2, 4], [1.0, 4.0])
    assert two["slope"] == pytest.approx(2.0) and math.isnan(two["slope_se"])
    for x, y in (([1, 1], [1.0, 2.0]), ([1, 2], [1.0, -2.0]), ([0, 2], [1.0, 2.0]), ([1, 2, 3], [1.0, 2.0])):
        with pytest.raises(ValueError):
            S.loglog_fit(x, y)


def test_exponential_fit_counts_doublings_per_qubit():
    n = np.array([12, 16, 20, 24])
    fit = S.exponential_fit(n, 5e-6 * 2.0 ** n)
    assert fit["slope"] == pytest.approx(1.0, abs=1e-12) and fit["intercept"] == pytest.approx(math.log2(5e-6))


def test_linear_quadratic_fit():
    T = np.array([256, 512, 1024, 2048, 4096, 8192, 16384], dtype=float)
    fit = S.linear_quadratic_fit(T, 4e-4 + 2e-5 * T + 3e-10 * T ** 2)
    assert fit["c"] == pytest.approx(4e-4, rel=1e-8)
    assert fit["a"] == pytest.approx(2e-5, rel=1e-8) and fit["b"] == pytest.approx(3e-10, rel=1e-8)
    # Linear timings whose noise bends them down at large T: unconstrained, b would be negative.
    bent = 2e-5 * T * (1 - 1e-6 * T)
    fit = S.linear_quadratic_fit(T, bent)
    assert fit["b"] == 0.0 and fit["a"] > 0 and fit["c"] >= 0


# ------------------------------------------------------------------------------------ crossover

def test_crossover_in_range_is_exact_for_power_laws():
    T = [256, 512, 1024, 2048, 4096]
    qlam = [1e-3 * t for t in T]
    transformer = [1e-6 * t * t for t in T]  # equal at T = 1000; log ratio is linear in log T
    c = S.crossover(T, qlam, transformer)
    assert c["where"] == "in range" and c["T"] == pytest.approx(1000.0, rel=1e-12)


def test_crossover_outside_the_range():
    T = [64, 128, 256]
    assert S.crossover(T, [1e-3 * t for t in T], [1e-6 * t * t for t in T]) == {"T": None, "where": "not in range"}
    assert S.crossover(T, [1e-6 * t for t in T], [1e-3 * t for t in T]) == \
        {"T": 64.0, "where": "at or below the smallest T"}


def test_extrapolated_crossover_from_fits():
    T = np.array([64, 128, 256, 512], dtype=float)
    qlam = S.loglog_fit(T, 1e-3 * T)
    transformer = S.linear_quadratic_fit(T, 1e-6 * T * T)
    assert S.extrapolated_crossover(qlam, transformer, T[-1]) == pytest.approx(1000.0, rel=1e-9)
    # a purely linear, faster model never overtakes
    assert S.extrapolated_crossover(qlam, {"c": 0.0, "a": 1e-4, "b": 0.0}, T[-1]) is None


# ------------------------------------------------------------------------------------ measurement

def test_statevector_estimate():
    # n=20, B=1, complex128 forward: 3 states of 2^20 * 16 bytes = 48 MiB
    assert S.statevector_need_gib(20, 1, False, 2, "cz", 2, False) == pytest.approx(3 * 2 ** 24 / 2 ** 30)
    fwd = S.statevector_need_gib(16, 32, True, 2, "cz", 2, False)
    assert S.statevector_need_gib(16, 32, True, 2, "cz", 2, True) > 10 * fwd
    assert S.statevector_need_gib(16, 32, False, 2, "cz", 2, False) == pytest.approx(2 * fwd)


def test_statevector_time_prediction():
    assert S.predict_statevector_time([], 20) is None
    assert S.predict_statevector_time([(16, 0.1)], 20) == pytest.approx(0.1 * 16 * 20 / 16)
    # two points that grew 32x over 4 qubits: the observed growth (another 32x) beats n·2^n (19.2x)
    assert S.predict_statevector_time([(16, 0.05), (20, 1.6)], 24) == pytest.approx(1.6 * 32)
    assert S.predict_statevector_time([(16, 0.1), (20, 1.6)], 24) == pytest.approx(1.6 * 16 * 24 / 20)


def test_isolated_measurement_records_memory():
    spec = dict(backend="mps", n=4, chi=2, batch=1, dtype="real", tokens=1, features=3, depth=2, entangler="cz",
                repeats=1, min_time=0.0, slow_s=1.0, threads=1, seed=0, backward=True, isolated=True)
    r = S._run_spec(spec)
    assert r["fwd_ms_per_token"] > 0 and r["fwdbwd_ms_per_token"] > 0
    assert r["saturated"] and r["bond_max"] == 2 and r["discarded_per_token"] > 0
    assert 0 < r["rss_base_mb"] <= r["fwd_peak_rss_mb"] <= r["fwdbwd_peak_rss_mb"]


def test_saturated_start_restores_the_model():
    from qlam_tn.experiments.bench.engine import saturated_state
    from qlam_tn.models import QLAMClassifier

    model = QLAMClassifier(3, 2, n_qubits=6, bond_dim=4, backend="mps")
    sat = saturated_state(6, 4, 2, True, torch.Generator().manual_seed(0)).to(dtype=torch.float32)
    wrapped = S._SaturatedStart(model, sat)
    with torch.no_grad():
        wrapped(torch.randn(2, 1, 3))
    assert "new_memory" not in vars(model.qlam)  # the override is gone
    assert model.qlam.last_memory.bond_dims == [2, 4, 4, 4, 2]  # saturated after one token


# ------------------------------------------------------------------------------------ end to end

TINY = ["--n", "4", "6", "--n-chi", "4", "--chi", "2", "4", "--chi-n", "6", "--batch", "1", "--dtypes", "real",
        "--sv-n", "4", "--T", "16", "24", "32", "--T-n", "4", "--T-chi", "2", "--T-backward-max", "16", "--tokens", "1",
        "--repeats", "1", "--min-time", "0", "--fit-n-min", "4", "--fit-chi-min", "2", "--threads", "1",
        "--peak-sizes", "64", "--no-isolate", "--no-progress"]


def test_tiny_run_writes_every_file(tmp_path, capsys):
    out = tmp_path / "scale"
    assert S.main(TINY + ["--out", str(out)]) == 0
    for name in ("config.json", "env.json", "results.csv", "results.json", "summary.json", "tables.md",
                 "time_vs_n.png", "time_vs_chi.png", "time_vs_T.png", "gflops.png"):
        assert (out / name).is_file(), name
    with open(out / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(json.loads((out / "results.json").read_text())) == len(rows) == 5 + 13
    token = {(r["backend"], r["n"], r["chi"]) for r in rows if r["sweep"] == "token"}
    # n sweep (χ=4): n=4, 6; χ sweep (n=6): χ=2, 4 (n=6 χ=4 shared); statevector at n=4, 6
    assert token == {("mps", "4", "4"), ("mps", "6", "4"), ("mps", "6", "2"), ("statevector", "4", ""),
                     ("statevector", "6", "")}
    assert sum(r["sweep"] == "token" for r in rows) == 5
    for r in rows:
        if r["sweep"] == "token":
            assert r["status"] == "ok" and float(r["fwd_ms_per_token"]) > 0 and float(r["fwdbwd_ms_per_token"]) > 0
        if r["backend"] == "mps":
            assert r["saturated"] == "True" and float(r["fwd_gflops"]) > 0 and 0 < float(r["fraction_of_peak"]) < 1
    seq = sorted((r["model"], r["start"], r["mode"], int(r["T"])) for r in rows if r["sweep"] == "sequence")
    assert seq == sorted([(m, s, mode, T) for T in (16, 24, 32) for m, s, mode in
                          (("transformer", "", "fwd"), ("transformer", "", "fwdbwd"), ("qlam", "fresh", "fwd"),
                           ("qlam", "saturated", "fwd"))] + [("qlam", "fresh", "fwdbwd", 16)])
    summary = json.loads((out / "summary.json").read_text())
    assert {"fwd/fresh", "fwd/saturated"} <= set(summary["crossover"])
    assert "fwd/qlam/saturated" in summary["sequence_fits"] and "fwd/transformer" in summary["sequence_fits"]
    params = summary["sequence_models"]
    assert abs(params["qlam"]["params"] / params["transformer"]["params"] - 1) < 0.1
    vs = {f["vs"].split(" ")[0] for f in summary["fits"] if f["fit"] is not None}
    assert {"n", "χ", "T"} <= vs
    printed = capsys.readouterr().out
    assert "| backend | n | χ |" in printed and "crossover" in printed


def test_statevector_rows_say_where_it_stops(tmp_path):
    out = tmp_path / "sv"
    S.main(["--sweeps", "sv", "--sv-n", "4", "6", "8", "--n", "40", "--batch", "1", "--dtypes", "complex",
            "--sv-max-token-s", "1e-9", "--tokens", "1", "--repeats", "1", "--min-time", "0", "--threads", "1",
            "--peak-sizes", "64", "--no-isolate", "--no-progress", "--out", str(out)])
    rows = json.loads((out / "results.json").read_text())
    status = {r["n"]: r["status"].split(":")[0] for r in rows}
    # n=4 runs (nothing to predict from); n=6 and 8 are predicted too slow; n=40 cannot fit in memory
    assert status == {4: "ok", 6: "skipped", 8: "skipped", 40: "does not fit"}
    assert rows[-1]["est_fwd_gib"] == pytest.approx(3 * 2 ** 40 * 16 / 2 ** 30)
    limits = json.loads((out / "summary.json").read_text())["statevector_limits"]["B=1 complex128"]
    assert limits["largest_n_fwd"] == 4 and limits["first_n_skipped_for_time"] == 6
    assert limits["first_n_not_fitting"] == 40
    assert (out / "time_vs_n.png").is_file()


def test_bad_flags_are_refused(tmp_path, capsys):
    for bad in (["--n", "1"], ["--chi", "0"], ["--sv-max-gib", "0"], ["--sv-max-token-s", "-1"],
                ["--T-backward-max", "-1"], ["--sweeps", "x"]):
        with pytest.raises(SystemExit) as exc:
            S.main(bad + ["--out", str(tmp_path / "never")])
        assert exc.value.code == 2
    assert "--n must be >= 2, got 1" in capsys.readouterr().err
    assert not (tmp_path / "never").exists()


def test_registered_in_the_cli():
    assert cli.COMMANDS["scale"][0] == "qlam_tn.experiments.scale"


def test_lapack_times_reports_both_dtypes_and_their_ratio():
    from qlam_tn.experiments.bench.engine import lapack_times

    r = lapack_times(chi=2, batch=3, repeats=1)
    for op in ("eigh", "svd", "qr"):
        assert r[f"{op}_real"] > 0 and r[f"{op}_complex"] > 0
        assert r[f"{op}_ratio"] == pytest.approx(r[f"{op}_complex"] / r[f"{op}_real"])
