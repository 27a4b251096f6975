"""experiments/studies/profile_token.py: the split of a token's time adds up (tiny configuration)."""
import importlib.util
from pathlib import Path


def _load():
    path = Path(__file__).resolve().parents[1] / "experiments" / "studies" / "profile_token.py"
    spec = importlib.util.spec_from_file_location("profile_token", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_split_of_a_token_adds_up_and_restores_the_kernel():
    from qlam_tn import mps_jit
    pt = _load()
    before = mps_jit._layer
    s = pt.split_of_a_run(6, 4, repeats=2, tokens=3)
    assert mps_jit._layer is before and mps_jit.RECORD is None  # the timer and the record are removed
    assert 0 < s["kernel"] < s["token"] and s["decompositions"] > 0
    assert abs(s["kernel"] + s["outside"] - s["token"]) < 1e-12
