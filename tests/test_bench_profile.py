"""``qlam bench profile`` on a tiny configuration: it times the run's own decompositions."""
import pytest

from qlam_tn import mps_jit
from qlam_tn.experiments.bench import profile as pt


@pytest.mark.skipif(not mps_jit.available(), reason="the compiled layers are off here")
def test_the_split_of_a_token_times_the_runs_decompositions_and_unhooks_itself():
    s = pt.split_of_a_run(6, 4, repeats=2, tokens=3)
    # the timer and the record are unhooked again
    assert mps_jit.TIMED is None and mps_jit.RECORD is None
    assert 0 < s["kernel"] < s["token"] and s["decompositions"] > 0
    # the decompositions timed are the run's: one split per CZ (n - 1 a token), QRs for the moves
    assert s["splits"] == 3 * 5 and 0 < s["qrs"] <= 3 * 5


@pytest.mark.skipif(not mps_jit.available(), reason="the compiled layers are off here")
def test_the_command_prints_one_markdown_row_per_point(capsys):
    assert pt.main(["--n", "6", "--chi", "4", "--repeats", "1", "--markdown"]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("| n | χ |"))
    assert lines[header + 1].startswith("|---|") and lines[header + 2].startswith("| 6 | 4 | ")
    assert lines[0].startswith("`") and "commit" in lines[0]  # the provenance line
