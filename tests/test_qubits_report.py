"""``qlam qubits-report`` (experiments/qubits_report.py): the tables of docs/results/qubits.md.

Four tiny runs on 8x8 digits (QLAM n=4 on the MPS at χ=2, frozen and trained from the same seed;
a GRU; an unfinished run) are read back: accuracies against the runs' own metrics, the state
size against a hand count of the MPS's tensors, the trained memory's discarded weight and
centre-bond entropy against ``qlam eval --bond-dim`` of the same checkpoint.
"""
import json

import pytest
import torch

from qlam_tn.experiments import evaluate, qubits_report, train

QLAM = ["--model", "qlam", "--dataset", "digits", "--tokens", "row", "--limit-train", "96",
        "--batch-size", "32", "--epochs", "1", "--threads", "1", "--no-progress", "--dtype", "float64",
        "--model-cfg", "n_qubits=4", "backend=mps", "bond_dim=2", "depth=2", "entangler=cz",
        "encoding_scale=1.0", "readout=xyz+zz", "readout_at=last", "head_hidden=0"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("qubit_runs")
    threads = torch.get_num_threads()
    try:
        assert train.main(QLAM + ["--out", str(out), "--name", "trained"]) == 0
        assert train.main(QLAM + ["--memory-lr-scale", "0", "--out", str(out), "--name", "frozen"]) == 0
        assert train.main(["--model", "gru", "--dataset", "digits", "--tokens", "row", "--limit-train", "96",
                           "--epochs", "1", "--threads", "1", "--no-progress", "--model-cfg", "hidden_size=5",
                           "--out", str(out), "--name", "gru"]) == 0
        assert train.main(QLAM + ["--stop-after", "1", "--epochs", "2", "--out", str(out), "--name", "unfinished"]) == 0
    finally:
        torch.set_num_threads(threads)
    return out


def _rows(text: str, first: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip("|").split("|")] for line in text.splitlines()
            if line.startswith(f"| {first}")]


def _test_acc(run) -> float:
    return json.loads((run / "metrics.json").read_text())["test"]["acc"]


def test_tables_hold_the_runs_numbers(runs, capsys):
    text = qubits_report.report([runs], limit=40)
    assert "skipped, not finished: unfinished" in capsys.readouterr().out
    acc = {(r[1], r[2]): r[3] for r in _rows(text, "digits") if len(r) == 4}
    assert acc[("frozen", "2")] == f"{100 * _test_acc(runs / 'frozen'):.2f} ± 0.00 (1)"
    assert acc[("trained", "2")] == f"{100 * _test_acc(runs / 'trained'):.2f} ± 0.00 (1)"
    # n=4 at χ=2, real: site tensors (1,2,2), (2,2,2), (2,2,2), (2,2,1) -> 4 + 8 + 8 + 4 floats
    (state,) = [r for r in _rows(text, "2") if len(r) == 2]
    assert state == ["2", "24"]
    (gru,) = [r for r in _rows(text, "digits") if len(r) == 2]
    assert gru == ["digits", f"{100 * _test_acc(runs / 'gru'):.2f} ± 0.00 (1)"]
    (ent,) = [r for r in _rows(text, "digits") if len(r) == 8]
    ref = evaluate.score(runs / "trained" / "best.pt", split="test", bond_dim=2, limit=40, device="cpu")
    twin = evaluate.score(runs / "frozen" / "best.pt", split="test", bond_dim=2, limit=40, device="cpu")
    assert ent[:3] == ["digits", "4", "2"]
    assert ent[4] == f"{ref['discarded_weight_mean']:.1e} ± {0:.1e} (1)"
    assert ent[5] == f"{ref['centre_entropy_mean']:.3f} ± 0.000 (1)"
    assert ent[6] == f"{twin['centre_entropy_mean']:.3f} ± 0.000 (1)"
    assert ent[7] == "1"  # log2 χ = 1 bit, below n/2 = 2
    assert ref["discarded_weight_mean"] > 0 and 0 < ref["centre_entropy_mean"] <= 1 + 1e-9


def test_command_writes_the_tables_and_refuses_bad_input(runs, tmp_path, capsys):
    out = tmp_path / "tables.md"
    assert qubits_report.main([str(runs / "frozen"), str(runs / "gru"), "--limit", "8", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert out.read_text().strip() in printed and "| χ | n=4 |" in printed
    for bad in (["--limit", "0"], [str(tmp_path / "nothing")]):
        with pytest.raises(SystemExit) as exc:
            qubits_report.main([str(runs / "frozen")] * (bad[0] == "--limit") + bad)
        assert exc.value.code != 0


def _copy_run(src, dst, edit):
    """A copy of run folder ``src`` whose config.json ``edit`` changes (a run trained otherwise)."""
    import shutil

    shutil.copytree(src, dst)
    config = json.loads((dst / "config.json").read_text())
    edit(config)
    (dst / "config.json").write_text(json.dumps(config))
    return dst


def test_runs_of_another_setting_are_refused_not_pooled(runs, tmp_path):
    def other_depth(config):
        config["model"]["resolved"]["depth"] = 1

    def other_seed(config):
        config["train"]["seed"] = 7

    _copy_run(runs / "frozen", tmp_path / "frozen-depth1", other_depth)
    with pytest.raises(ValueError, match=r"would share the digits frozen row but differ in resolved\.depth"):
        qubits_report.report([runs / "frozen", tmp_path / "frozen-depth1"])
    _copy_run(runs / "frozen", tmp_path / "frozen-s7", other_seed)  # another seed: pooled
    text = qubits_report.report([runs / "frozen", tmp_path / "frozen-s7"])
    acc = 100 * _test_acc(runs / "frozen")
    assert f"| digits | frozen | 2 | {acc:.2f} ± 0.00 (2) |" in text


def test_an_uncapped_memory_is_labelled_exact_and_sorted_last(runs, tmp_path):
    def exact(config):
        config["model"]["resolved"]["bond_dim"] = None

    _copy_run(runs / "frozen", tmp_path / "frozen-exact", exact)
    text = qubits_report.report([runs / "frozen", tmp_path / "frozen-exact"])
    rows = [r for r in _rows(text, "digits") if len(r) == 4]
    assert [r[2] for r in rows] == ["2", "exact"]
    assert [r[0] for r in _rows(text, "exact")] == ["exact"]  # the state table's row
