"""Run folders: created atomically and written by one process only; every file verified when a
resume starts, before any training; folders that hold no checkpoint explained; checkpoints whose
hash is valid but whose weights do not fit the model refused by key; non-finite weights named.

The parallel tests start two real ``qlam train`` processes (tiny ``digits`` runs, one epoch) that
race for one folder name, as a sweep started with ``&`` does.

The fuzzers edit a checkpoint (a place deleted or given a value of another kind) or mutate its
bytes, save it with a valid hash, and resume: the run resumes or is refused with one line, never
a traceback. The default run is bounded (well under a minute); a longer one by hand::

    QLAM_FUZZ_EXAMPLES=2000 python -m pytest tests/test_runfolder.py -k fuzz
"""
import contextlib
import copy
import hashlib
import io
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qlam_tn.experiments import cli, evaluate, runfolder as rf, train

pytest.importorskip("sklearn")

FUZZ = settings(max_examples=int(os.environ.get("QLAM_FUZZ_EXAMPLES", 25)), deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

BASE = ["--model", "gru", "--dataset", "digits", "--tokens", "row", "--model-cfg", "hidden_size=8",
        "--limit-train", "100", "--batch-size", "32", "--lr", "1e-2", "--threads", "1",
        "--no-progress"]


@pytest.fixture(autouse=True)
def _keep_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def strict_json(path):
    """``path`` parsed as JSON proper: a bare NaN or Infinity is an error, not a float."""
    def refuse(token):
        raise ValueError(f"{path}: {token} is not JSON")
    return json.loads(path.read_text(), parse_constant=refuse)


# ----------------------------------------------------------------------------------------------
# Two processes, one folder name
# ----------------------------------------------------------------------------------------------

# Imports first, then waits for the go file, so that both processes reach the folder's creation
# together; FROZEN_CLOCK pins the clock's second, so the default names are the same second's.
RACER = """
import pathlib, sys, time
from qlam_tn.experiments import train
go, frozen = pathlib.Path(sys.argv[1]), sys.argv[2] == "1"
pathlib.Path(str(go) + "." + sys.argv[3]).touch()
while not go.exists():
    time.sleep(0.001)
if frozen:
    time.strftime = lambda fmt, *a: "20240101-120000" if "%S" in fmt else "2024-01-01T12:00:00+0000"
sys.exit(train.main(sys.argv[4:]))
"""


def race(tmp_path, argvs, frozen_clock):
    """Run ``qlam train`` with each of ``argvs`` in its own process, released at once."""
    go = tmp_path / "go"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", RACER, str(go), "1" if frozen_clock else "0",
                               str(i)] + argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=env)
             for i, argv in enumerate(argvs)]
    deadline = time.monotonic() + 120
    while not all((tmp_path / f"go.{i}").exists() for i in range(len(argvs))):
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs), \
            [p.communicate() for p in procs]
        time.sleep(0.01)
    go.touch()
    return [(p.wait(timeout=300), *p.communicate()) for p in procs]


def assert_consistent_run(folder, lr):
    """``folder`` holds one run: its config, checkpoints and metrics are all that run's."""
    config = strict_json(folder / "config.json")
    assert config["train"]["lr"] == lr
    last, best = rf.load_checkpoint(folder / "last.pt"), rf.load_checkpoint(folder / "best.pt")
    assert json.loads(json.dumps(last["config"])) == config == json.loads(json.dumps(best["config"]))
    metrics = strict_json(folder / "metrics.json")
    assert metrics["complete"] and metrics["epochs"] == json.loads(json.dumps(last["history"]))
    # the weights are the run's own: scored again, best.pt gives the test score the run recorded
    again = evaluate.score(folder / "best.pt", split="test", device="cpu")
    assert again["n"] == metrics["test"]["n"] and again["accuracy"] == metrics["test"]["acc"]


def test_parallel_runs_with_default_names_both_survive(tmp_path):
    out = tmp_path / "runs"
    argvs = [BASE + ["--epochs", "1", "--out", str(out), "--lr", lr] for lr in ("0.001", "0.01")]
    results = race(tmp_path, argvs, frozen_clock=True)
    assert [code for code, _, _ in results] == [0, 0], results
    folders = sorted(out.iterdir())
    assert len(folders) == 2, folders  # the same second, yet two folders
    printed = {line.split("run folder: ")[1] for _, stdout, _ in results
               for line in stdout.splitlines() if line.startswith("run folder: ")}
    assert printed == {str(f) for f in folders}
    lrs = {strict_json(f / "config.json")["train"]["lr"]: f for f in folders}
    assert sorted(lrs) == [0.001, 0.01]
    for lr, folder in lrs.items():
        assert_consistent_run(folder, lr)
        assert not (folder / rf.LOCK_NAME).exists()  # released at the end


def test_parallel_runs_with_one_name_leave_one_whole_run(tmp_path):
    out = tmp_path / "runs"
    argvs = [BASE + ["--epochs", "1", "--out", str(out), "--name", "same", "--lr", lr]
             for lr in ("0.001", "0.01")]
    results = race(tmp_path, argvs, frozen_clock=False)
    codes = [code for code, _, _ in results]
    assert sorted(codes) == [0, 2], results
    winner, loser = codes.index(0), codes.index(2)
    err = results[loser][2]
    assert "same" in err and ("being written by" in err or "holds a run" in err), err
    assert [f.name for f in out.iterdir()] == ["same"]
    assert_consistent_run(out / "same", [0.001, 0.01][winner])


HOLDER = """
import sys, time
from qlam_tn.experiments import runfolder as rf
folder = rf.RunFolder.reopen(sys.argv[1])
print("held", flush=True)
time.sleep(600)
"""


def test_a_live_owner_blocks_and_a_killed_ones_lock_does_not(tmp_path, capsys):
    run = tmp_path / "run"
    assert train.main(BASE + ["--epochs", "2", "--stop-after", "1", "--out", str(tmp_path),
                              "--name", "run"]) == 0
    last = (run / "last.pt").read_bytes()
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(run)], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(SystemExit) as exc:
            train.main(["--resume", str(run), "--no-progress"])
        assert exc.value.code == 2
        err = capsys.readouterr().err
        assert f"{run} is being written by process {holder.pid}" in err
        with pytest.raises(ValueError, match=f"being written by process {holder.pid}"):
            rf.RunFolder.create(run)
        assert (run / "last.pt").read_bytes() == last
    finally:
        holder.kill()  # kill -9: the lock file stays, naming a process that is gone
        holder.wait(timeout=60)
    assert str(holder.pid) in (run / rf.LOCK_NAME).read_text()
    assert train.main(["--resume", str(run), "--no-progress"]) == 0
    assert strict_json(run / "metrics.json")["complete"]
    assert not (run / rf.LOCK_NAME).exists()


def test_default_names_get_a_suffix_instead_of_sharing_a_folder(tmp_path):
    a = rf.RunFolder.create_unique(tmp_path, "gru-digits-row-s0-20240101-120000")
    b = rf.RunFolder.create_unique(tmp_path, "gru-digits-row-s0-20240101-120000")
    with a, b:
        assert a.path.name == "gru-digits-row-s0-20240101-120000"
        assert b.path.name == "gru-digits-row-s0-20240101-120000-2"
        assert a.created and b.created
    # released and empty: the folders this process made are gone again
    assert list(tmp_path.iterdir()) == []


def test_a_failed_start_leaves_no_folder_behind(tmp_path, capsys):
    out = tmp_path / "deep" / "runs"
    with pytest.raises(SystemExit) as exc:  # refused while preparing, after the folder was made
        train.main(BASE + ["--tokens", "patch5", "--out", str(out), "--name", "bad"])
    assert exc.value.code == 2 and "patch5" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------------------------
# Resume: every file checked before any training
# ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def stopped(tmp_path_factory):
    """A run of 3 epochs stopped after the first; each test works on a copy."""
    out = tmp_path_factory.mktemp("stopped")
    threads = torch.get_num_threads()
    try:
        assert train.main(BASE + ["--epochs", "3", "--stop-after", "1", "--out", str(out),
                                  "--name", "run"]) == 0
    finally:
        torch.set_num_threads(threads)
    return out / "run"


def copy_of(stopped, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(stopped, run)
    return run


def _flip_byte(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _edit_json(path, edit):
    doc = json.loads(path.read_text())
    edit(doc)
    path.write_text(json.dumps(doc))


def _resave(path, edit):
    """``path`` loaded, edited and saved again with a valid hash (what a careful forger does)."""
    ckpt = rf.load_checkpoint(path)
    edit(ckpt)
    rf.save_checkpoint(path, ckpt)


TAMPERS = {
    "best.pt flipped": ("best.pt", lambda run: _flip_byte(run / "best.pt")),
    "best.pt missing": ("best.pt", lambda run: (run / "best.pt").unlink()),
    "best.pt sidecar missing": ("best.pt", lambda run: (run / "best.pt.sha256").unlink()),
    "best.pt of another epoch": ("best.pt", lambda run: _resave(run / "best.pt",
                                                                lambda c: c.update(epoch=7))),
    "config.json not JSON": ("config.json", lambda run: (run / "config.json").write_text("{")),
    "config.json missing": ("config.json", lambda run: (run / "config.json").unlink()),
    "config.json edited": ("config.json", lambda run: _edit_json(
        run / "config.json", lambda d: d["train"].update(lr=0.5))),
    "splits.json edited": ("splits.json", lambda run: _edit_json(
        run / "splits.json", lambda d: d.update(val_indices=d["val_indices"][::-1]))),
    "splits.json not JSON": ("splits.json", lambda run: (run / "splits.json").write_bytes(b"\xff")),
    "env.json not JSON": ("env.json", lambda run: (run / "env.json").write_text("[1,")),
    "last.pt weights renamed": ("'rnn.weight_ih_l0'", lambda run: _resave(
        run / "last.pt", lambda c: c["model"].update({"rnn.weight_ih_l0x": c["model"].pop("rnn.weight_ih_l0")}))),
    "best.pt weights reshaped": ("'head.weight'", lambda run: _resave(
        run / "best.pt", lambda c: c["model"].update({"head.weight": torch.zeros(3, 3)}))),
    "last.pt weights NaN": ("'head.bias'", lambda run: _resave(
        run / "last.pt", lambda c: c["model"]["head.bias"].fill_(math.nan))),
    "last.pt without its optimizer": ("'optimizer'", lambda run: _resave(
        run / "last.pt", lambda c: c.pop("optimizer"))),
}


@pytest.mark.parametrize("tamper", list(TAMPERS))
def test_resume_checks_every_file_before_training(stopped, tmp_path, capsys, tamper):
    run = copy_of(stopped, tmp_path)
    named, damage = TAMPERS[tamper]
    damage(run)
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    with pytest.raises(SystemExit) as exc:
        train.main(["--resume", str(run), "--no-progress"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert named in err and str(run) in err, err
    assert "Traceback" not in err
    # nothing trained, nothing written
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before


def test_an_untouched_copy_resumes_to_the_end(stopped, tmp_path):
    run = copy_of(stopped, tmp_path)
    assert train.main(["--resume", str(run), "--no-progress"]) == 0
    metrics = strict_json(run / "metrics.json")
    assert metrics["complete"] and len(metrics["epochs"]) == 3


def _without_checkpoint(stopped, tmp_path):
    """The folder a run leaves when it stops before its first epoch ends (an interrupt, a
    non-finite loss in epoch 1, or --stop-after 0 before it was refused)."""
    run = copy_of(stopped, tmp_path)
    for name in ("last.pt", "last.pt.sha256", "best.pt", "best.pt.sha256", "metrics.json",
                 "metrics.csv", "curves.png"):
        (run / name).unlink(missing_ok=True)
    return run


def test_a_folder_without_checkpoint_says_what_to_do(stopped, tmp_path, capsys):
    run = _without_checkpoint(stopped, tmp_path)
    with pytest.raises(SystemExit) as exc:
        train.main(["--resume", str(run), "--no-progress"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert f"run folder {run} holds no checkpoint" in err and "before the first epoch" in err
    assert "delete it or train under another --name" in err
    assert "no such checkpoint" not in err
    # a new run under its name is refused the same way, not sent to --resume
    with pytest.raises(SystemExit) as exc:
        train.main(BASE + ["--out", str(tmp_path), "--name", "run"])
    (err,) = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert "holds no checkpoint" in err and "--resume" not in err


def test_stop_after_zero_is_refused_without_a_folder(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        train.main(BASE + ["--out", str(tmp_path / "runs"), "--name", "z", "--stop-after", "0"])
    assert exc.value.code == 2 and "--stop-after" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_a_non_finite_loss_in_epoch_one_names_no_missing_checkpoint(tmp_path, capsys, monkeypatch):
    real = torch.nn.functional.cross_entropy

    def nan_loss(logits, y, *args, **kwargs):
        return real(logits, y, *args, **kwargs) * math.nan

    monkeypatch.setattr(train.F, "cross_entropy", nan_loss)
    assert train.main(BASE + ["--epochs", "2", "--out", str(tmp_path), "--name", "nan"]) == 1
    err = capsys.readouterr().err
    run = tmp_path / "nan"
    assert not (run / "last.pt").exists()
    assert "last.pt" not in err and "holds no checkpoint" in err and "epoch 1" in err, err
    monkeypatch.undo()
    with pytest.raises(SystemExit):
        train.main(["--resume", str(run), "--no-progress"])
    assert "holds no checkpoint" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------
# Checkpoints whose hash is valid
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("edit, message", [
    (lambda c: c["model"].pop("head.bias"), r"'head\.bias'.*missing"),
    (lambda c: c["model"].update({"head.weight": torch.zeros(10, 3)}),
     r"'head\.weight'.*shape \(10, 3\).*\(10, 8\)"),
    (lambda c: c["model"].update({"extra.weight": torch.zeros(1)}), r"'extra\.weight'.*not"),
    (lambda c: c["model"].update({"head.bias": "ten"}), r"'head\.bias'.*not a tensor"),
    (lambda c: c.pop("config"), r"'config'"),
    (lambda c: c.update(model=[1, 2]), r"'model'"),
])
def test_eval_refuses_weights_that_do_not_fit_the_model_by_key(stopped, tmp_path, capsys, edit, message):
    path = tmp_path / "edited.pt"
    shutil.copy(stopped / "best.pt", path)
    shutil.copy(stopped / "best.pt.sha256", rf.sidecar_path(path))
    _resave(path, edit)
    with pytest.raises(SystemExit) as exc:
        cli.main(["eval", "--checkpoint", str(path), "--json"])
    assert exc.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "edited.pt" in captured.err and "Traceback" not in captured.err
    assert re.search(message, captured.err), captured.err


def test_non_finite_weights_are_named_when_loaded_and_refused_by_eval(stopped, tmp_path, capsys):
    path = tmp_path / "nan.pt"
    shutil.copy(stopped / "best.pt", path)
    shutil.copy(stopped / "best.pt.sha256", rf.sidecar_path(path))
    _resave(path, lambda c: c["model"]["head.weight"][0, :2].copy_(torch.tensor([math.nan, math.inf])))
    with pytest.warns(RuntimeWarning, match=r"nan\.pt.*'head\.weight'.*2 non-finite"):
        evaluate.load_model(path)
    with pytest.raises(SystemExit) as exc:
        cli.main(["eval", "--checkpoint", str(path), "--json"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "'head.weight'" in err and "non-finite" in err
    # a finite checkpoint loads without a word
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        evaluate.load_model(stopped / "best.pt")


# ----------------------------------------------------------------------------------------------
# JSON files are JSON
# ----------------------------------------------------------------------------------------------

def test_json_files_hold_null_where_a_value_is_not_finite(tmp_path):
    rf.atomic_write_json(tmp_path / "m.json", {"a": math.nan, "b": [1.5, -math.inf], "c": {"d": math.inf}})
    assert strict_json(tmp_path / "m.json") == {"a": None, "b": [1.5, None], "c": {"d": None}}


def test_every_json_file_of_a_run_is_strict_json(stopped):
    for name in ("config.json", "splits.json", "env.json", "metrics.json"):
        strict_json(stopped / name)


# ----------------------------------------------------------------------------------------------
# Fuzzing: checkpoints edited and saved again with a valid hash, or with their bytes mutated
# ----------------------------------------------------------------------------------------------

def _paths(obj, prefix=()):
    """Every place in a checkpoint's nested dicts and lists (tensors are leaves)."""
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, prefix + (i,))


REPLACEMENTS = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 10**6), st.floats(allow_nan=True), st.text(max_size=4),
    st.just({}), st.just([]), st.lists(st.integers(0, 3), max_size=3),
    st.tuples(st.integers(0, 3), st.integers(0, 3)).map(lambda s: torch.randn(*s)),
)


@st.composite
def edited(draw, ckpt):
    """``ckpt`` (deep-copied) with one place deleted or replaced by a value of another kind."""
    ckpt = copy.deepcopy(ckpt)
    path = draw(st.sampled_from(sorted((p for p in _paths(ckpt) if p), key=repr)))
    *parent_path, key = path
    parent = ckpt
    for k in parent_path:
        parent = parent[k]
    if draw(st.booleans()) and isinstance(parent, dict):
        del parent[key]
    else:
        old = parent[key]
        parent[key] = (torch.full_like(old, math.nan) if isinstance(old, torch.Tensor)
                       and old.is_floating_point() and draw(st.booleans())
                       else draw(REPLACEMENTS))
    return path, ckpt


def _resume_or_refuse(run):
    """``--resume`` of ``run`` with no epoch left to train: it resumes (0) or refuses cleanly (2)."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = train.main(["--resume", str(run), "--stop-after", "1", "--no-progress"])
        except SystemExit as exc:
            code = exc.code
    assert code in (0, 2), err.getvalue()
    if code == 2:
        assert "error:" in err.getvalue() and "Traceback" not in err.getvalue()
    return code


@FUZZ
@given(data=st.data())
def test_fuzz_an_edited_checkpoint_with_a_valid_hash_resumes_or_is_refused(stopped, data):
    name = data.draw(st.sampled_from(["last.pt", "best.pt"]))
    path, ckpt = data.draw(edited(rf.load_checkpoint(stopped / name)))
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        shutil.copytree(stopped, run)
        rf.save_checkpoint(run / name, ckpt)
        _resume_or_refuse(run)
        # the model alone, as qlam eval, probe and entangle load it
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                evaluate.load_model(run / name)
        except ValueError as exc:
            assert name in str(exc)


@FUZZ
@given(data=st.data())
def test_fuzz_a_checkpoints_bytes_mutated_with_a_valid_hash(stopped, data):
    name = data.draw(st.sampled_from(["last.pt", "best.pt"]))
    raw = (stopped / name).read_bytes()
    n = len(raw)
    kind = data.draw(st.sampled_from(["cut", "flip", "overwrite"]))
    mutated = bytearray(raw)
    if kind == "cut":
        mutated = mutated[:data.draw(st.integers(0, n - 1))]
    else:
        for pos in data.draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=4)):
            mutated[pos] = (mutated[pos] ^ 0xFF) if kind == "flip" else data.draw(st.integers(0, 255))
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        shutil.copytree(stopped, run)
        (run / name).write_bytes(bytes(mutated))
        rf.sidecar_path(run / name).write_text(f"{hashlib.sha256(mutated).hexdigest()}  {name}\n")
        _resume_or_refuse(run)


def test_a_lock_file_planted_as_a_symlink_writes_nothing_through_it(tmp_path):
    """A run folder whose .lock is a symbolic link (planted, or copied from elsewhere) is refused:
    opening it must not empty and rewrite the file it points to."""
    victim = tmp_path / "victim.txt"
    victim.write_text("precious data")
    folder = tmp_path / "runs" / "x"
    folder.mkdir(parents=True)
    (folder / rf.LOCK_NAME).symlink_to(victim)
    with pytest.raises(ValueError, match="symbolic link"):
        rf.RunFolder.create(folder)
    with pytest.raises(ValueError, match="symbolic link"):
        rf.RunFolder.reopen(folder)
    assert victim.read_text() == "precious data"
