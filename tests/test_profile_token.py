"""experiments/studies/profile_token.py on a tiny configuration: it times the run's own decompositions."""
import importlib.util
from pathlib import Path


def _load():
    path = Path(__file__).resolve().parents[1] / "experiments" / "studies" / "profile_token.py"
    spec = importlib.util.spec_from_file_location("profile_token", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_split_of_a_token_times_the_runs_decompositions_and_restores_the_kernels():
    from qlam_tn import mps_jit
    pt = _load()
    before = (mps_jit._layer, mps_jit._physical)
    s = pt.split_of_a_run(6, 4, repeats=2, tokens=3)
    # the timers and the record are removed again
    assert (mps_jit._layer, mps_jit._physical) == before and mps_jit.RECORD is None
    assert 0 < s["kernel"] < s["token"] and s["decompositions"] > 0
    # the decompositions timed are the run's: one split per CZ (n - 1 a token), QRs for the moves
    assert s["splits"] == 3 * 5 and 0 < s["qrs"] <= 3 * 5
