"""``qlam train`` / ``qlam eval`` / ``qlam report`` on the memory tasks (issue 21).

A GRU on MQAR learns above chance (the run config ``experiments/configs/runs/mqar_tiny.toml``,
about 15 s on one thread); every other token task trains for an epoch into a valid run folder
whose data are the generator's own splits; a task run resumes bit for bit; ``qlam eval``
scores it as the run did; bad task settings are refused before anything is written.
"""
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from qlam_tn.experiments import evaluate, report, runfolder as rf, tasks, train

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "experiments" / "configs" / "runs" / "mqar_tiny.toml"
ARTEFACTS = ("config.json", "splits.json", "env.json", "metrics.json", "metrics.csv",
             "last.pt", "last.pt.sha256", "best.pt", "best.pt.sha256")
TIMING = ("tokens_per_s", "train_time_s", "epoch_time_s")
SMALL = ["--model", "gru", "--model-cfg", "hidden_size=8", "--embed-dim", "8", "--batch-size", "16",
         "--lr", "1e-2", "--threads", "1", "--no-progress"]
TASKS = {  # small parameters of each token task
    "mqar": ["seq_len=16", "num_pairs=2", "vocab_size=24"],
    "selective_copy": ["seq_len=16", "num_tokens=4", "vocab_size=8"],
    "induction": ["seq_len=16", "vocab_size=8"],
    "copy_memory": ["seq_len=25"],
}


@pytest.fixture(autouse=True)
def _keep_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _task_argv(name, n_train=64, n_val=32, n_test=32, epochs=1):
    return SMALL + ["--dataset", name, "--data-cfg", *TASKS[name], "--n-train", str(n_train),
                    "--n-val", str(n_val), "--n-test", str(n_test), "--epochs", str(epochs)]


def _params(name):
    return {k: int(v) for k, v in (item.split("=") for item in TASKS[name])}


def _reference_scores(run_dir: Path, name: str, split: str, n: int):
    """Accuracy and labelled count of ``best.pt`` on a split drawn here from the generator,
    scored position by position with a plain loop (not the trainer's code)."""
    model, _ = evaluate.load_model(run_dir / "best.pt")
    x, y = tasks.make(name, n, tasks.split_seed(0, split), **_params(name))
    model.eval()
    with torch.no_grad():
        logits = model(torch.from_numpy(x)).numpy()
    hits = total = 0
    for i in range(n):
        for t in range(y.shape[1]):
            if y[i, t] != -100:
                total += 1
                hits += int(np.argmax(logits[i, t]) == y[i, t])
    return hits / total, total


def test_mqar_gru_learns_above_chance(tmp_path):
    """The tiny run config learns MQAR with 2 pairs well above chance (1/12)."""
    assert train.main(["--config", str(TINY), "--out", str(tmp_path), "--name", "tiny",
                       "--no-progress"]) == 0
    run = tmp_path / "tiny"
    metrics = json.loads((run / "metrics.json").read_text())
    chance = tasks.baseline("mqar", seq_len=16, num_pairs=2, vocab_size=24).value
    assert chance == pytest.approx(1 / 12)
    assert metrics["test"]["acc"] > 4 * chance, metrics["test"]
    assert metrics["test"]["n"] == 500 * 2  # two queries in each of the 500 test sequences
    acc, total = _reference_scores(run, "mqar", "test", 500)
    assert total == 1000 and acc == pytest.approx(metrics["test"]["acc"], abs=1e-12)


@pytest.mark.parametrize("name", ["selective_copy", "induction", "copy_memory", "mqar"])
def test_each_task_writes_a_valid_run_folder(tmp_path, name):
    assert train.main(_task_argv(name) + ["--out", str(tmp_path), "--name", name]) == 0
    run = tmp_path / name
    for artefact in ARTEFACTS:
        assert (run / artefact).is_file(), artefact
    rf.verify_run(run)  # every file checked against the others
    config = json.loads((run / "config.json").read_text())
    data, params = config["data"], _params(name)
    # recorded as one spelling: the given parameters and the published defaults (Zoology's a = 0.01)
    defaults = {"power_a": 0.01} if name == "mqar" else {}
    assert data["task"] == name and data["params"] == {**params, **defaults}
    assert list(data["params"]) == list(params) + list(defaults)
    assert data["sizes"] == {"train": 64, "val": 32, "test": 32}
    assert data["split_seeds"] == {s: tasks.split_seed(0, s) for s in ("train", "val", "test")}
    assert config["model"]["vocab_size"] == tasks.spec(name, **params).vocab_size
    assert config["model"]["outputs"] == "per_position" and config["model"]["input_dim"] == 8
    assert config["model"]["state_floats"] == 8  # a GRU of hidden size 8 carries h alone
    # splits.json: digests of the generator's own splits, drawn here independently
    splits = json.loads((run / "splits.json").read_text())
    for split, n in data["sizes"].items():
        x, y = tasks.make(name, n, tasks.split_seed(0, split), **params)
        assert splits["sha256"][split] == hashlib.sha256(x.tobytes() + y.tobytes()).hexdigest()
    # scored over the labelled positions only, as a plain loop over the test split scores them
    metrics = json.loads((run / "metrics.json").read_text())
    acc, total = _reference_scores(run, name, "test", 32)
    assert metrics["test"]["n"] == total == 32 * tasks.spec(name, **params).labelled
    assert metrics["test"]["acc"] == pytest.approx(acc, abs=1e-12)


def test_task_run_resumes_bit_identically_and_eval_agrees(tmp_path, capsys):
    argv = _task_argv("mqar", n_train=96, epochs=3) + ["--out", str(tmp_path)]
    assert train.main(argv + ["--name", "whole"]) == 0
    assert train.main(argv + ["--name", "cut", "--stop-after", "1"]) == 0
    assert train.main(["--resume", str(tmp_path / "cut"), "--no-progress"]) == 0
    whole, cut = (json.loads((tmp_path / n / "metrics.json").read_text()) for n in ("whole", "cut"))
    strip = lambda rows: [{k: v for k, v in r.items() if k not in TIMING} for r in rows]  # noqa: E731
    assert strip(whole["epochs"]) == strip(cut["epochs"])
    assert whole["test"] == cut["test"]
    a, b = (rf.load_checkpoint(tmp_path / n / "last.pt")["model"] for n in ("whole", "cut"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    # qlam eval rebuilds data and model from the run folder alone
    out = evaluate.score(tmp_path / "whole", device="cpu", batch_size=5)
    assert out["accuracy"] == whole["test"]["acc"] and out["n"] == whole["test"]["n"]
    assert out["loss"] == pytest.approx(whole["test"]["loss"], rel=1e-6)
    capsys.readouterr()
    assert evaluate.main(["--checkpoint", str(tmp_path / "whole" / "best.pt"), "--json",
                          "--device", "cpu"]) == 0
    assert json.loads(capsys.readouterr().out) == {"accuracy": whole["test"]["acc"],
                                                   "n": whole["test"]["n"]}
    val = evaluate.score(tmp_path / "whole", split="val", device="cpu")
    assert val["accuracy"] == pytest.approx(
        max(r["val_acc"] for r in whole["epochs"]), abs=1e-12)
    with pytest.raises(ValueError, match="task 'mqar'"):
        evaluate.score(tmp_path / "whole", dataset="induction", device="cpu")

    # qlam report: the task's parameters and its chance baseline
    rows = report.group_runs([report.load_run(tmp_path / "whole")])
    table = report.markdown(rows, [report.load_run(tmp_path / "whole")])
    assert "seq_len=16 num_pairs=2 vocab_size=24" in table
    assert f"{100 / 12:.2f}% acc (chance)" in table and "memoryless baseline" in table


def test_eval_refuses_a_split_the_run_did_not_draw(tmp_path):
    argv = SMALL + ["--dataset", "induction", "--data-cfg", *TASKS["induction"], "--n-train", "32",
                    "--epochs", "1", "--out", str(tmp_path), "--name", "r"]
    assert train.main(argv) == 0
    with pytest.raises(ValueError, match="no test split"):
        evaluate.score(tmp_path / "r", device="cpu")


@pytest.mark.parametrize("extra, message", [
    (["--data-cfg", "seq_len=16", "num_pairs=2", "vocab_size=24", "colour=3"], "unknown parameter"),
    (["--data-cfg", "seq_len=sixteen", "num_pairs=2", "vocab_size=24"], "seq_len must be an int"),
    (["--data-cfg", "seq_len=16", "num_pairs=8", "vocab_size=24"], "num_pairs"),
    (["--data-cfg", "seq_len=16", "num_pairs=2"], "missing parameter"),
    (["--data-cfg", "seq_len"], "key=value"),
])
def test_bad_data_cfg_refused_before_anything_is_written(tmp_path, capsys, extra, message):
    argv = SMALL + ["--dataset", "mqar", "--n-train", "32", "--epochs", "1", "--out",
                    str(tmp_path / "runs"), "--name", "bad"] + extra
    with pytest.raises(SystemExit) as exc:
        train.main(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("argv, message", [
    (["--dataset", "adding", "--data-cfg", "seq_len=20", "--n-train", "8"], "regression head"),
    (["--dataset", "mqar", "--data-cfg", "seq_len=16", "num_pairs=2", "vocab_size=24"], "--n-train"),
    (["--dataset", "digits", "--data-cfg", "seq_len=16"], "memory tasks"),
    (["--dataset", "digits", "--n-train", "16"], "memory tasks"),
    (["--dataset", "induction", "--data-cfg", "seq_len=16", "vocab_size=8", "--n-train", "8",
      "--limit-train", "4"], "--limit-train"),
])
def test_task_settings_refused(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as exc:
        train.main(SMALL + argv + ["--out", str(tmp_path / "runs"), "--name", "bad"])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_bad_data_cfg_in_a_config_file_refused(tmp_path, capsys):
    cfg = tmp_path / "run.toml"
    cfg.write_text('model = "gru"\ndataset = "mqar"\nn_train = 8\n'
                   'data_cfg = {seq_len = 16, num_pairs = 2, vocab_size = 24, colour = 1}\n')
    with pytest.raises(SystemExit):
        train.main(["--config", str(cfg), "--out", str(tmp_path / "runs"), "--name", "bad"])
    assert "colour" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_data_cfg_as_a_list_of_strings():
    """A study hands TrainConfig the flag's strings; they parse as the command line's do."""
    cfg = train.TrainConfig(model="gru", dataset="mqar", n_train=8,
                            data_cfg=["seq_len=16", "num_pairs=2", "vocab_size=24"])
    assert cfg.data_cfg == {"seq_len": 16, "num_pairs": 2, "vocab_size": 24}


def test_eval_refuses_a_split_that_no_longer_draws_the_same(tmp_path, monkeypatch):
    """A run records each split's digest; a redraw that differs (another numpy stream, a changed
    generator) is refused rather than scored as if it were the run's test set."""
    assert train.main(_task_argv("mqar") + ["--out", str(tmp_path), "--name", "r"]) == 0
    real = evaluate.task_split
    monkeypatch.setattr(evaluate, "task_split", lambda task, params, n, seed: real(task, params, n, seed + 1))
    with pytest.raises(ValueError, match="sha256"):
        evaluate.score(tmp_path / "r", device="cpu")


def test_one_task_setting_is_one_report_row_whatever_its_spelling(tmp_path):
    base = SMALL + ["--dataset", "mqar", "--n-train", "32", "--n-val", "16", "--n-test", "16", "--epochs", "1",
                    "--out", str(tmp_path)]
    spellings = (["seq_len=16", "num_pairs=2", "vocab_size=24"], ["vocab_size=24", "seq_len=16", "num_pairs=2"],
                 ["seq_len=16", "num_pairs=2", "vocab_size=24", "power_a=0.01"])
    for seed, cfg in enumerate(spellings):
        assert train.main(base + ["--data-cfg", *cfg, "--seed", str(seed), "--name", f"s{seed}"]) == 0
    runs = [report.load_run(tmp_path / f"s{seed}") for seed in range(3)]
    assert len({json.dumps(r["config"]["data"]["params"]) for r in runs}) == 1
    assert len(report.group_runs(runs)) == 1
    assert tasks.params("mqar", vocab_size=24, seq_len=16, num_pairs=2) == \
        {"seq_len": 16, "num_pairs": 2, "vocab_size": 24, "power_a": 0.01}
