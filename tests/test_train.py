"""Training CLI: run-folder artefacts, exact resume, ``qlam eval --json``, checkpoint
verification, bad input, the report, the quickstart, and 2-process DDP against one process.

Runs use scikit-learn's digits (built in), a GRU of hidden size 8 and a few hundred images, so
each takes about a second; the DDP test starts two processes on loopback (gloo).
"""
import itertools
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from qlam_tn.experiments import cli, frozen, report, runfolder as rf, train
from qlam_tn.experiments.evaluate import score

pytest.importorskip("sklearn")
try:
    import matplotlib  # noqa: F401
    HAVE_MPL = True
except ImportError:  # training works without it; curves.png and report plots are skipped
    HAVE_MPL = False

BASE = ["--model", "gru", "--dataset", "digits", "--tokens", "row", "--model-cfg", "hidden_size=8",
        "--limit-train", "200", "--batch-size", "32", "--lr", "1e-2", "--epochs", "2",
        "--threads", "1", "--no-progress"]
ARTEFACTS = ("config.json", "splits.json", "env.json", "metrics.json", "metrics.csv",
             "curves.png", "last.pt", "last.pt.sha256", "best.pt", "best.pt.sha256")
TIMING = ("tokens_per_s", "train_time_s", "epoch_time_s")


@pytest.fixture(autouse=True)
def _keep_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two runs of the same config and seed: 2 epochs straight, and 1 epoch + resume to 2."""
    out = tmp_path_factory.mktemp("runs")
    threads = torch.get_num_threads()
    try:
        assert train.main(BASE + ["--out", str(out), "--name", "full"]) == 0
        assert train.main(BASE + ["--out", str(out), "--name", "part", "--stop-after", "1"]) == 0
        assert len(json.loads((out / "part" / "metrics.json").read_text())["epochs"]) == 1
        assert train.main(["--resume", str(out / "part"), "--no-progress"]) == 0
    finally:
        torch.set_num_threads(threads)
    return out


def _without_timing(rows):
    return [{k: v for k, v in r.items() if k not in TIMING} for r in rows]


def test_run_folder_has_every_artefact(runs):
    run = runs / "full"
    for name in ARTEFACTS:
        if name != "curves.png" or HAVE_MPL:
            assert (run / name).is_file(), name
    if HAVE_MPL:
        assert (run / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    config = json.loads((run / "config.json").read_text())
    assert config["train"]["model_cfg"] == {"hidden_size": 8}
    assert config["model"]["params"] == 3 * (8 * (8 + 8) + 2 * 8) + (8 + 1) * 10  # GRU formula
    assert config["model"]["resolved"]["hidden_size"] == 8
    info = config["data"]["info"]
    assert info["seed"] == 0 and info["train_used"] == 200
    splits = json.loads((run / "splits.json").read_text())
    assert info["val_indices"]["count"] == len(splits["val_indices"]) == info["sizes"]["val"] > 0
    assert len(config["data"]["mean"]) == len(config["data"]["std"]) == 1

    env = json.loads((run / "env.json").read_text())
    for key in ("python", "torch", "numpy", "torch_threads", "device", "hostname", "git_commit"):
        assert key in env
    assert env["torch_threads"] == 1

    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["complete"] and len(metrics["epochs"]) == 2
    for key in ("train_loss", "train_acc", "val_loss", "val_acc", "lr", "tokens_per_s", "epoch_time_s"):
        assert all(r[key] is not None for r in metrics["epochs"]), key
    assert metrics["epochs"][-1]["lr"] == 0.0  # the cosine ends at zero
    assert metrics["test"]["n"] == 359 and 0.0 <= metrics["test"]["acc"] <= 1.0
    lines = (run / "metrics.csv").read_text().splitlines()
    assert lines[0].startswith("epoch,step,train_loss,train_acc,val_loss,val_acc,lr") and len(lines) == 3

    # plain torch.load with weights_only=True reads a checkpoint (no code runs)
    ckpt = torch.load(run / "last.pt", weights_only=True)
    assert ckpt["epoch"] == 2 and ckpt["global_step"] == 2 * 7  # ceil(200 / 32) steps per epoch
    assert set(ckpt["rng"][0]) >= {"python", "numpy", "torch", "generator"}


def test_resume_matches_uninterrupted_run(runs):
    a = json.loads((runs / "full" / "metrics.json").read_text())
    b = json.loads((runs / "part" / "metrics.json").read_text())
    assert _without_timing(a["epochs"]) == _without_timing(b["epochs"])  # bitwise: floats via JSON
    assert a["best"] == b["best"] and a["test"] == b["test"]
    ca = rf.load_checkpoint(runs / "full" / "last.pt")
    cb = rf.load_checkpoint(runs / "part" / "last.pt")
    for key, value in ca["model"].items():
        assert torch.equal(value, cb["model"][key]), key
    for key, state in ca["optimizer"]["state"].items():
        assert torch.equal(state["exp_avg_sq"], cb["optimizer"]["state"][key]["exp_avg_sq"])
    env = json.loads((runs / "part" / "env.json").read_text())
    assert len(env["previous_sessions"]) == 1


def test_eval_json_prints_only_accuracy_and_n(runs):
    ckpt = runs / "full" / "best.pt"
    proc = subprocess.run([sys.executable, "-m", "qlam_tn.experiments.cli", "eval", "--checkpoint",
                           str(ckpt), "--dataset", "digits", "--split", "test", "--json"],
                          check=False, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert set(result) == {"accuracy", "n"} and proc.stdout.strip().count("\n") == 0
    metrics = json.loads((runs / "full" / "metrics.json").read_text())
    assert result["n"] == metrics["test"]["n"]
    assert result["accuracy"] == pytest.approx(metrics["test"]["acc"], abs=1e-12)
    val = score(ckpt, split="val")
    assert val["accuracy"] == pytest.approx(metrics["best"]["val_acc"], abs=1e-12)


def test_limit_val_scores_a_seeded_subset_and_leaves_training_alone(runs, tmp_path):
    assert train.main(BASE + ["--out", str(tmp_path), "--name", "lv", "--limit-val", "40", "--epochs", "1"]) == 0
    splits = json.loads((tmp_path / "lv" / "splits.json").read_text())
    full = json.loads((runs / "full" / "splits.json").read_text())
    assert splits["train_subset"] == full["train_subset"] and splits["val_indices"] == full["val_indices"]
    sub = splits["val_subset"]
    assert len(sub) == len(set(sub)) == 40 and sub == sorted(sub)
    assert 0 <= sub[0] and sub[-1] < len(full["val_indices"])
    acc = json.loads((tmp_path / "lv" / "metrics.json").read_text())["epochs"][0]["val_acc"]
    assert acc * 40 == pytest.approx(round(acc * 40), abs=1e-9)  # a fraction of 40 images
    cfg = json.loads((tmp_path / "lv" / "config.json").read_text())
    assert cfg["data"]["info"]["val_used"] == 40


def test_tampered_truncated_and_unsigned_checkpoints_are_refused(runs, tmp_path, capsys):
    data = (runs / "full" / "last.pt").read_bytes()
    sidecar = (runs / "full" / "last.pt.sha256").read_text()

    flipped = tmp_path / "flipped.pt"
    flipped.write_bytes(data[:len(data) // 2] + bytes([data[len(data) // 2] ^ 0xFF]) + data[len(data) // 2 + 1:])
    rf.sidecar_path(flipped).write_text(sidecar)
    with pytest.raises(ValueError, match=r"flipped\.pt.*truncated or was modified"):
        rf.load_checkpoint(flipped)

    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(data[:len(data) - 100])
    rf.sidecar_path(truncated).write_text(sidecar)
    with pytest.raises(ValueError, match=r"truncated\.pt.*truncated or was modified"):
        rf.load_checkpoint(truncated)

    unsigned = tmp_path / "unsigned.pt"
    unsigned.write_bytes(data)
    with pytest.raises(ValueError, match=r"unsigned\.pt.*cannot be verified"):
        rf.load_checkpoint(unsigned)

    # qlam eval reports it as a usage error (exit 2), naming the file
    with pytest.raises(SystemExit) as exc:
        cli.main(["eval", "--checkpoint", str(flipped), "--json"])
    assert exc.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "flipped.pt" in captured.err


class _Payload:
    """Unpickling this would create ``marker``: weights_only loading must refuse it."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_checkpoint_with_code_is_refused_even_when_its_hash_matches(tmp_path):
    marker = tmp_path / "pwned"
    rf.save_checkpoint(tmp_path / "evil.pt", {"model": _Payload(str(marker))})
    with pytest.raises(ValueError, match=r"evil\.pt: not a loadable checkpoint"):
        rf.load_checkpoint(tmp_path / "evil.pt")
    assert not marker.exists()


@pytest.mark.parametrize("bad", [
    ["--model", "nosuch"],
    ["--dataset", "nosuch"],
    ["--model-cfg", "hidden_size"],          # not key=value
    ["--model-cfg", "no_such_option=3"],     # not a keyword of the model
    ["--model-cfg", "hidden_size=-3"],       # rejected by the model's config
    ["--tokens", "patch5"],                  # 5 does not divide the 64 pixels
    ["--lr", "-1"],
    ["--epochs", "two"],
    ["--limit-val", "0"],
    ["--limit-val", "10", "--val-fraction", "0"],  # nothing to take a subset of
    ["--memory-lr-scale", "0.5"],            # the GRU has no quantum memory
    ["--model", "qlam", "--model-cfg", "n_qubits=3", "--memory-lr-scale", "-1"],
])
def test_bad_input_exits_2_without_a_run_folder(bad, tmp_path, capsys):
    out = tmp_path / "runs"
    with pytest.raises(SystemExit) as exc:
        cli.main(["train"] + BASE + bad + ["--out", str(out), "--name", "bad"])
    assert exc.value.code == 2
    assert "error:" in capsys.readouterr().err
    assert not out.exists()


def test_resume_refuses_a_different_configuration(runs, capsys):
    with pytest.raises(SystemExit) as exc:
        train.main(["--resume", str(runs / "full"), "--lr", "0.5"])
    assert exc.value.code == 2
    assert "--lr 0.5" in capsys.readouterr().err


def test_existing_run_folder_is_not_overwritten(runs, capsys):
    with pytest.raises(SystemExit) as exc:
        train.main(BASE + ["--out", str(runs), "--name", "full"])
    assert exc.value.code == 2
    assert "--resume" in capsys.readouterr().err


@pytest.mark.parametrize("scale", [0.0, 0.1])
def test_memory_lr_scale_freezes_or_slows_the_qlam_memory(scale, tmp_path):
    cfg = train.TrainConfig(model="qlam", dataset="digits", tokens="row", epochs=1, batch_size=32,
                            limit_train=96, lr=0.05, memory_lr_scale=scale,
                            model_cfg={"n_qubits": 3, "head_hidden": 4, "backend": "statevector"})
    p = train.prepare(cfg, device="cpu")
    memory0 = {k: v.clone() for k, v in p.model.qlam.state_dict().items()}
    head0 = {k: v.clone() for k, v in p.model.head.state_dict().items()}
    train.fit(p, tmp_path / "run", progress=False)
    groups = train.param_groups(p.model, cfg)
    head_moved = any(not torch.equal(v, p.model.head.state_dict()[k]) for k, v in head0.items())
    memory_moved = [not torch.equal(v, p.model.qlam.state_dict()[k]) for k, v in memory0.items()]
    assert head_moved
    if scale == 0:  # frozen: bit for bit the initialisation, and out of the optimiser
        assert not any(memory_moved)
        assert not any(q.requires_grad for q in p.model.qlam.parameters())
        assert [g["lr"] for g in groups] == [0.05]
    else:
        assert any(memory_moved)
        assert [g["lr"] for g in groups] == [0.05, pytest.approx(0.005)]
        assert sum(len(g["params"]) for g in groups) == len(list(p.model.parameters()))
    assert json.loads((tmp_path / "run" / "config.json").read_text())["train"]["memory_lr_scale"] == scale


@pytest.mark.parametrize("cell", [
    {"n_qubits": 3, "head_hidden": 4, "backend": "statevector"},
    {"n_qubits": 4, "head_hidden": 0, "head_norm": "batch", "backend": "mps", "bond_dim": 2,
     "readout": "xyz", "readout_at": "segments", "segments": 2, "segment_length": 4},
])
def test_cache_memory_trains_the_head_exactly_as_the_uncached_frozen_run(cell, tmp_path):
    """The reference is the plain frozen run, which runs the memory every batch: the cached run
    must give the same head, the same per-epoch losses and accuracies, and the same test score."""
    runs = {}
    for cache in (False, True):
        cfg = train.TrainConfig(model="qlam", dataset="digits", tokens="row", epochs=3, batch_size=32,
                                limit_train=320, lr=0.1, memory_lr_scale=0.0, cache_memory=cache,
                                model_cfg=cell)
        p = train.prepare(cfg, device="cpu")
        out = train.fit(p, tmp_path / str(cache), progress=False)
        runs[cache] = (p.model.state_dict(), json.loads((tmp_path / str(cache) / "metrics.json").read_text()), out)
    (plain, m_plain, o_plain), (cached, m_cached, o_cached) = runs[False], runs[True]
    assert plain.keys() == cached.keys()
    for k in plain:
        torch.testing.assert_close(cached[k], plain[k], rtol=1e-5, atol=1e-6, msg=k)
    for a, b in zip(m_plain["epochs"], m_cached["epochs"], strict=True):
        for key in ("train_loss", "val_loss"):
            assert b[key] == pytest.approx(a[key], rel=1e-5), key
        for key in ("train_acc", "val_acc"):
            assert b[key] == a[key], key
    assert o_cached["test"]["acc"] == o_plain["test"]["acc"]
    # the head moved: the comparison above is not between two untouched models
    head0 = train.prepare(cfg, device="cpu").model.head.state_dict()
    assert any(not torch.equal(v, cached["head." + k]) for k, v in head0.items())


def _whole_and_resumed(argv, tmp_path):
    """``last.pt`` of a run of ``argv`` straight through and of one stopped after epoch 1 and
    resumed; their weights must be bitwise equal."""
    assert train.main(argv + ["--name", "whole"]) == 0
    assert train.main(argv + ["--name", "cut", "--stop-after", "1"]) == 0
    assert train.main(["--resume", str(tmp_path / "cut"), "--no-progress"]) == 0
    whole, cut = (rf.load_checkpoint(tmp_path / k / "last.pt") for k in ("whole", "cut"))
    for k, v in whole["model"].items():
        assert torch.equal(v, cut["model"][k]), k
    return whole, cut


def test_cache_memory_resumes_like_an_uninterrupted_cached_run(tmp_path):
    argv = ["--model", "qlam", "--dataset", "digits", "--tokens", "row", "--epochs", "3",
            "--batch-size", "32", "--limit-train", "320", "--lr", "0.1", "--memory-lr-scale", "0",
            "--cache-memory", "--model-cfg", "n_qubits=3", "head_hidden=4", "backend=statevector",
            "--out", str(tmp_path), "--no-progress"]
    whole, cut = _whole_and_resumed(argv, tmp_path)
    assert [r["val_acc"] for r in whole["history"]] == [r["val_acc"] for r in cut["history"]]
    assert json.loads((tmp_path / "whole" / "config.json").read_text())["train"]["cache_memory"] is True
    # the report's throughput is the epoch that ran the memory, not the head-only epochs after it
    runs = [report.load_run(tmp_path / "whole")]
    assert runs[0]["tokens_per_s"] == whole["history"][0]["tokens_per_s"]
    assert "cached frozen memory" in report.markdown(report.group_runs(runs), runs)


def test_lbfgs_head_is_scikit_learns_logistic_regression_on_the_memory_features(tmp_path):
    """A frozen memory, a linear head on BatchNorm-standardised features, fitted by L-BFGS with an
    L2 penalty wd/2·‖W‖², is the logistic regression that scikit-learn fits with C = 1/(wd·N) on
    the same standardised features: the same predicted probabilities on held-out sequences."""
    from sklearn.linear_model import LogisticRegression
    cfg = train.TrainConfig(model="qlam", dataset="digits", tokens="row", epochs=4, limit_train=400,
                            lr=1.0, weight_decay=0.01, memory_lr_scale=0.0, cache_memory=True,
                            optimizer="lbfgs", lbfgs_iters=100, dtype="float64",
                            model_cfg={"n_qubits": 3, "head_hidden": 0, "head_norm": "batch",
                                       "backend": "statevector", "encoding_scale": 0.5})
    p = train.prepare(cfg, device="cpu")
    out = train.fit(p, tmp_path / "run", progress=False)
    qlam, head = p.model.qlam, p.model.head.eval()
    ftr, ytr = frozen.memory_features(qlam, p.train_set, 64, "cpu", torch.float64).tensors
    fva, yva = frozen.memory_features(qlam, p.val_set, 64, "cpu", torch.float64).tensors
    # BatchNorm standardises with the batch's biased variance in training and with its running
    # (unbiased) variance in evaluation; the reference does the same.
    mean, n = ftr.mean(0), len(ytr)
    var = {"fit": ftr.var(0, unbiased=False), "eval": ftr.var(0, unbiased=True)}
    standard = lambda f, mode: ((f - mean) / torch.sqrt(var[mode] + 1e-5)).numpy()  # BatchNorm's eps
    ref = LogisticRegression(C=1 / (cfg.weight_decay * n), tol=1e-12, max_iter=10_000)
    ref.fit(standard(ftr, "fit"), ytr.numpy())
    with torch.no_grad():
        probs = torch.softmax(head(fva), -1).numpy()
    np.testing.assert_allclose(probs, ref.predict_proba(standard(fva, "eval")), atol=1e-6)
    ref_acc = ref.score(standard(fva, "eval"), yva.numpy())
    assert out["best"]["val_acc"] == pytest.approx(ref_acc, abs=1e-12)
    assert ref_acc > 0.5  # not a trivial fit: ten classes


def test_lbfgs_head_resumes_like_an_uninterrupted_run(tmp_path):
    argv = ["--model", "qlam", "--dataset", "digits", "--tokens", "row", "--epochs", "3",
            "--limit-train", "320", "--lr", "1", "--weight-decay", "0.001", "--memory-lr-scale", "0",
            "--cache-memory", "--optimizer", "lbfgs", "--lbfgs-iters", "5", "--model-cfg", "n_qubits=3",
            "head_hidden=0", "head_norm=batch", "backend=statevector", "--out", str(tmp_path), "--no-progress"]
    whole, cut = _whole_and_resumed(argv, tmp_path)
    assert [r["train_loss"] for r in whole["history"]] == [r["train_loss"] for r in cut["history"]]
    losses = [r["train_loss"] for r in whole["history"]]
    assert losses[0] > losses[-1]  # L-BFGS went downhill
    # one full-batch step an epoch at a constant step size, and the config says so
    assert [r["step"] for r in whole["history"]] == [1, 2, 3]
    assert [r["lr"] for r in whole["history"]] == [1.0, 1.0, 1.0]
    assert whole["config"]["schedule"] == {"steps_per_epoch": 1, "total_steps": 3, "warmup_steps": 0}


def test_frozen_memory_options_name_the_models_they_need():
    """The memory/head split is asked of the model, and a model without one is refused by name."""
    gru = train.prepare(train.TrainConfig(model="gru", dataset="digits", limit_train=32,
                                          model_cfg={"hidden_size": 4}), device="cpu").model
    for call in (lambda: frozen.memory_param_groups(gru, 0.1, 0.0),
                 lambda: frozen.lbfgs_optimizer(gru, 1.0, 5),
                 lambda: frozen.cache_features(gru, {}, 8, "cpu", torch.float32)):
        with pytest.raises(ValueError, match=r"GRUClassifier has no separate memory and readout head"):
            call()
    assert train.memory_features is frozen.memory_features  # the old import path still works


def test_lbfgs_needs_the_cached_memory():
    with pytest.raises(ValueError, match="cache_memory"):
        train.TrainConfig(model="qlam", memory_lr_scale=0.0, optimizer="lbfgs")
    with pytest.raises(ValueError, match="optimizer must be one of"):
        train.TrainConfig(optimizer="sgd")
    with pytest.raises(ValueError, match="lbfgs_iters"):
        train.TrainConfig(model="qlam", memory_lr_scale=0.0, cache_memory=True, optimizer="lbfgs",
                          lbfgs_iters=0)


@pytest.mark.parametrize("model, scale", [("qlam", 0.1), ("qlam", 1.0), ("gru", 1.0)])
def test_cache_memory_refuses_a_memory_that_trains(model, scale):
    with pytest.raises(ValueError, match="frozen QLAM memory"):
        train.TrainConfig(model=model, dataset="digits", memory_lr_scale=scale, cache_memory=True)


def test_cache_memory_refuses_several_processes(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")
    cfg = train.TrainConfig(model="qlam", dataset="digits", memory_lr_scale=0.0, cache_memory=True)
    with pytest.raises(ValueError, match="one process"):
        train.prepare(cfg, device="cpu")


def test_model_cfg_values_are_typed():
    assert train.parse_model_cfg(["a=3", "b=0.5", "c=true", "d=None", "e=statevector", "f=1e-3"]) == \
        {"a": 3, "b": 0.5, "c": True, "d": None, "e": "statevector", "f": 1e-3}
    # Documented: the last value of a repeated key wins (scripts override a base list).
    assert train.parse_model_cfg(["depth=2", "n_qubits=8", "depth=1"]) == {"depth": 1, "n_qubits": 8}


def test_schedule_warms_up_linearly_then_decays_to_zero():
    f = [train.lr_factor(s, 4, 20) for s in range(20)]
    assert f[:4] == [0.25, 0.5, 0.75, 1.0] and f[4] == 1.0
    assert all(a >= b for a, b in itertools.pairwise(f[4:])) and 0 < f[-1] < 0.01


def test_report_aggregates_runs(runs, tmp_path, capsys):
    plot = tmp_path / "bars.png"
    assert report.main([str(runs), "--out", str(tmp_path / "table.md")]
                       + (["--plot", str(plot)] if HAVE_MPL else [])) == 0
    table = capsys.readouterr().out
    assert table == (tmp_path / "table.md").read_text()
    row = next(line for line in table.splitlines() if line.startswith("| digits"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    # GRU hidden 8: 3·8·(F + 8 + 2) + 8·10 + 10 = 522 parameters (F = 8 inputs per row of digits);
    # its state is h, 8 floats
    assert cells[:6] == ["digits", "row", "gru", "hidden_size=8", "522", "8"]
    assert cells[6] == "1 (2 runs)"  # same seed twice
    assert cells[8].endswith("± 0.00")  # two identical runs
    if HAVE_MPL:
        assert plot.read_bytes()[:4] == b"\x89PNG"


def test_quickstart_runs_end_to_end(tmp_path, capsys):
    from qlam_tn.experiments import quickstart

    assert quickstart.main(["--out", str(tmp_path), "--epochs", "1"]) == 0
    out = capsys.readouterr().out
    assert "test accuracy" in out and "run folder" in out
    (run,) = tmp_path.iterdir()
    assert (run / "best.pt").is_file()


def test_two_process_ddp_matches_one_process_with_the_same_global_batch(tmp_path):
    """2 ranks x batch 16 take the steps of 1 process x batch 32 (DDP averages gradients).

    float64 keeps the comparison tight: observed differences are ~1e-16; asserted below 1e-10.
    """
    common = ["--model", "gru", "--dataset", "digits", "--tokens", "row", "--model-cfg",
              "hidden_size=8", "--limit-train", "128", "--lr", "1e-2", "--epochs", "2",
              "--dtype", "float64", "--no-progress", "--out", str(tmp_path)]
    env = {k: os.environ.get(k) for k in ("MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "RANK")}
    assert env["WORLD_SIZE"] is None, "run the test suite outside torchrun"
    assert train.main(common + ["--name", "ddp", "--nproc", "2", "--batch-size", "16"]) == 0
    assert train.main(common + ["--name", "one", "--batch-size", "32", "--threads", "1"]) == 0

    ddp = json.loads((tmp_path / "ddp" / "metrics.json").read_text())
    one = json.loads((tmp_path / "one" / "metrics.json").read_text())
    assert [r["rank_param_spread"] for r in ddp["epochs"]] == [0.0, 0.0]  # ranks identical
    assert [r["step"] for r in ddp["epochs"]] == [r["step"] for r in one["epochs"]] == [4, 8]
    for rd, ro in zip(ddp["epochs"], one["epochs"]):
        for key in ("train_loss", "train_acc", "val_loss", "val_acc", "lr"):
            assert rd[key] == pytest.approx(ro[key], rel=1e-10, abs=1e-12), key
    assert ddp["test"]["acc"] == pytest.approx(one["test"]["acc"], abs=1e-12)
    pd = rf.load_checkpoint(tmp_path / "ddp" / "last.pt")
    po = rf.load_checkpoint(tmp_path / "one" / "last.pt")
    assert pd["config"]["distributed"] == {"world_size": 2, "batch_per_process": 16, "global_batch": 32}
    diff = max((pd["model"][k] - po["model"][k]).abs().max().item() for k in po["model"])
    assert diff < 1e-10
    assert len(pd["rng"]) == 2  # one generator state per rank


def test_report_tells_frozen_and_slow_memories_apart():
    model = {"name": "qlam", "cfg": {"n_qubits": 3}, "resolved": {"n_qubits": 3}}
    assert "memory_lr_scale" not in report.describe_model(model)
    assert report.describe_model(model, 0.0) != report.describe_model(model, 0.1)
    assert "memory_lr_scale=0.0" in report.describe_model(model, 0.0)
    assert "optimizer" not in report.describe_model(model, 0.0, "adamw")
    assert "optimizer=lbfgs" in report.describe_model(model, 0.0, "lbfgs")


# ----------------------------------------------------------------------------------------------
# Empty splits are refused before training; metrics.json is JSON
# ----------------------------------------------------------------------------------------------

def _strict_json(path):
    def refuse(token):
        raise ValueError(f"{path}: {token} is not JSON")
    return json.loads(path.read_text(), parse_constant=refuse)


def test_every_metrics_file_is_strict_json(runs):
    for run in ("full", "part"):
        metrics = _strict_json(runs / run / "metrics.json")
        assert all(math.isfinite(r["val_acc"]) for r in metrics["epochs"])


def test_a_validation_fraction_that_rounds_to_no_image_is_refused(tmp_path, capsys):
    out = tmp_path / "runs"
    with pytest.raises(SystemExit) as exc:
        train.main(BASE + ["--val-fraction", "0.001", "--out", str(out), "--name", "v"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    # digits: the largest class of the 1438 training-pool images has 146: round(f * 146) >= 1 needs
    # f >= 0.5/146 = 0.00342..., named rounded up
    assert "validation split" in err and "0 images" in err and "--val-fraction 0.001" in err
    assert "at least 0.0035" in err
    assert not out.exists()
    # the smallest fraction it names gives a validation split
    assert train.main(BASE + ["--val-fraction", "0.0035", "--epochs", "1", "--out", str(out),
                              "--name", "v"]) == 0
    metrics = _strict_json(out / "v" / "metrics.json")
    assert json.loads((out / "v" / "config.json").read_text())["data"]["info"]["sizes"]["val"] >= 1
    assert metrics["best"]["val_acc"] is not None


def _idx(array):
    array = np.asarray(array, dtype=np.uint8)
    return (0x0800 | array.ndim).to_bytes(4, "big") + b"".join(
        d.to_bytes(4, "big") for d in array.shape) + array.tobytes()


def _mnist_dir(directory, n_train, n_test):
    directory.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for part, n in (("train", n_train), ("t10k", n_test)):
        (directory / f"{part}-images-idx3-ubyte").write_bytes(
            _idx(rng.integers(0, 256, size=(n, 28, 28))))
        (directory / f"{part}-labels-idx1-ubyte").write_bytes(_idx(np.arange(n) % 10))
    return directory


@pytest.mark.parametrize("n_train, n_test, split", [(0, 20, "training"), (60, 0, "test")])
def test_a_dataset_split_of_no_images_is_refused(tmp_path, capsys, n_train, n_test, split):
    data = _mnist_dir(tmp_path / "mnist", n_train, n_test)
    out = tmp_path / "runs"
    with pytest.raises(SystemExit) as exc:
        train.main(["--model", "gru", "--dataset", "mnist", "--data-dir", str(data), "--tokens", "row",
                    "--epochs", "1", "--no-progress", "--out", str(out), "--name", "e"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert f"{split} split" in err and "0 images" in err and str(data) in err, err
    assert not out.exists()


def test_eval_of_an_empty_split_is_a_clear_error(runs, tmp_path, capsys):
    """A run whose recorded validation fraction carves nothing (an older run, say)."""
    path = tmp_path / "old.pt"
    ckpt = rf.load_checkpoint(runs / "full" / "best.pt")
    ckpt["config"]["train"]["val_fraction"] = 0.001
    rf.save_checkpoint(path, ckpt)
    with pytest.raises(SystemExit) as exc:
        cli.main(["eval", "--checkpoint", str(path), "--split", "val", "--json"])
    assert exc.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "val split" in captured.err and "0 images" in captured.err
    assert "old.pt" in captured.err
