"""``qlam study``: a study file's runs expanded over seeds, finished runs skipped, bad files refused."""
import dataclasses
import json
import textwrap
from pathlib import Path

import pytest

from qlam_tn.experiments import study, train

STUDY = """
description = "two runs, defaults overridden per run"
seeds = [0, 1]

[defaults]
model = "gru"
dataset = "digits"
tokens = "row"
epochs = 2
lr = 0.01
model_cfg = {hidden_size = 8, dropout = 0.0}

[[runs]]
name = "gru-fast"
lr = 0.03
model_cfg = {hidden_size = 4}

[[runs]]
name = "lstm"
model = "lstm"
seeds = [5]
"""


def write(tmp_path, text, name="s.toml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def parsed(run):
    """What ``qlam train`` reads from a run's arguments: the final value of every option."""
    args = vars(train.build_parser().parse_args(run.train_argv))
    args["model_cfg"] = train.parse_model_cfg(args.get("model_cfg"))
    return args


def test_runs_expand_over_seeds_with_defaults_overridden_per_run(tmp_path):
    s = study.load_study(write(tmp_path, STUDY), out=str(tmp_path / "out"))
    assert s.out == tmp_path / "out" and s.description.startswith("two runs")
    assert [(r.name, r.seed, r.path.name) for r in s.runs] == [
        ("gru-fast", 0, "gru-fast-s0"), ("gru-fast", 1, "gru-fast-s1"), ("lstm", 5, "lstm-s5")]
    assert all(r.status == "new" and r.path.parent == tmp_path / "out" for r in s.runs)
    fast0, fast1, lstm = map(parsed, s.runs)
    common = {"dataset": "digits", "tokens": "row", "epochs": 2, "out": str(tmp_path / "out")}
    assert {k: fast0[k] for k in common} == common == {k: lstm[k] for k in common}
    # the run's own lr and model_cfg keys win; model_cfg keys it does not give stay the defaults'
    assert (fast0["model"], fast0["lr"], fast0["seed"], fast0["name"]) == ("gru", 0.03, 0, "gru-fast-s0")
    assert fast0["model_cfg"] == {"hidden_size": 4, "dropout": 0.0}
    assert (fast1["seed"], fast1["name"]) == (1, "gru-fast-s1")
    assert (lstm["model"], lstm["lr"], lstm["seed"]) == ("lstm", 0.01, 5)
    assert lstm["model_cfg"] == {"hidden_size": 8, "dropout": 0.0}


PRESETS = """
seeds = [0]

[defaults]
model = "gru"
epochs = 2
lr = 0.01
model_cfg = {hidden_size = 8, dropout = 0.1}

[presets.small]
epochs = 6
limit_train = 500
seeds = [3, 4]
model_cfg = {hidden_size = 4}

[[runs]]
name = "plain"

[[runs]]
name = "small"
preset = "small"

[[runs]]
name = "small-own"
preset = "small"
seeds = [9]
lr = 0.03
model_cfg = {dropout = 0.2}
"""


def test_a_preset_sits_between_the_defaults_and_the_runs_own_options(tmp_path):
    s = study.load_study(write(tmp_path, PRESETS))
    assert [(r.name, r.seed) for r in s.runs] == [("plain", 0), ("small", 3), ("small", 4), ("small-own", 9)]
    plain, small, _, own = map(parsed, s.runs)
    assert (plain["epochs"], plain.get("limit_train"), plain["model_cfg"]) == (2, None, {"hidden_size": 8, "dropout": 0.1})
    assert (small["epochs"], small["limit_train"], small["lr"]) == (6, 500, 0.01)
    assert small["model_cfg"] == {"hidden_size": 4, "dropout": 0.1}
    assert (own["epochs"], own["limit_train"], own["lr"]) == (6, 500, 0.03)
    assert own["model_cfg"] == {"hidden_size": 4, "dropout": 0.2}


def test_the_out_folder_defaults_to_the_files_then_runs_slash_its_name(tmp_path):
    assert study.load_study(write(tmp_path, STUDY, "abc.toml")).out.as_posix() == "runs/abc"
    s = study.load_study(write(tmp_path, 'out = "elsewhere"\n' + STUDY))
    assert s.out.as_posix() == "elsewhere"


def test_command_line_overrides_come_after_the_files_options(tmp_path):
    s = study.load_study(write(tmp_path, STUDY), overrides={"data_dir": "/data", "threads": 1})
    args = parsed(s.runs[0])
    assert (args["data_dir"], args["threads"], args["lr"]) == ("/data", 1, 0.03)


def test_finished_runs_are_skipped_and_unfinished_ones_resumed(tmp_path):
    out = tmp_path / "out"
    done, half, stuck, empty = (out / n for n in ("gru-fast-s0", "gru-fast-s1", "lstm-s5", "x"))
    for d in (done, half, stuck, empty):
        d.mkdir(parents=True)
    (done / "metrics.json").write_text(json.dumps({"complete": True, "epochs": []}))
    (half / "metrics.json").write_text(json.dumps({"complete": False, "epochs": []}))
    (half / "last.pt").write_bytes(b"")
    (stuck / "config.json").write_text("{}")
    assert [study.run_status(d) for d in (done, half, stuck, empty, out / "absent")] == [
        "done", "resume", "stuck", "new", "new"]
    s = study.load_study(write(tmp_path, STUDY), out=str(out))
    assert [r.status for r in s.runs] == ["done", "resume", "stuck"]
    resume = s.runs[1].train_argv
    assert resume[-2:] == ["--resume", str(half)] and "--out" not in resume and "--name" not in resume
    assert parsed(s.runs[1])["lr"] == 0.03  # its options go along: --resume refuses any that differ


def test_a_stuck_folder_stops_the_study_before_anything_trains(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(train, "main", lambda argv: pytest.fail("trained"))
    out = tmp_path / "out"
    (out / "lstm-s5").mkdir(parents=True)
    (out / "lstm-s5" / "config.json").write_text("{}")
    with pytest.raises(SystemExit) as exc:
        study.main([str(write(tmp_path, STUDY)), "--out", str(out)])
    assert exc.value.code == 2
    assert "lstm-s5 holds neither a checkpoint" in capsys.readouterr().err


def test_dry_run_prints_the_plan_and_only_selects_runs(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(train, "main", lambda argv: pytest.fail("trained"))
    path = str(write(tmp_path, STUDY))
    assert study.main([path, "--out", str(tmp_path / "out"), "--dry-run", "--only", "lstm"]) == 0
    out = capsys.readouterr().out
    assert "lstm-s5" in out and "gru-fast" not in out and "1 to train, 0 to resume, 0 done" in out
    (command,) = [line.split() for line in out.splitlines() if line.strip().startswith("qlam train")]
    args = vars(train.build_parser().parse_args(command[2:]))
    assert (args["model"], args["seed"], args["name"]) == ("lstm", 5, "lstm-s5")
    assert not (tmp_path / "out").exists()
    with pytest.raises(SystemExit):
        study.main([path, "--only", "nope"])
    assert "no run named nope" in capsys.readouterr().err


@pytest.mark.parametrize("text, message", [
    ("seeds = [0]\n", "no runs"),
    ("[[runs]]\nmodel = 'gru'\n", "needs a name"),
    ("[[runs]]\nname = 'a b'\n", "needs a name"),
    ("[[runs]]\nname = 'a'\n[[runs]]\nname = 'a'\n", "two runs are named 'a'"),
    ("epochs = 3\n[[runs]]\nname = 'a'\n", "unknown key 'epochs' at the top"),
    ("seeds = [0, 0]\n[[runs]]\nname = 'a'\n", "repeats a seed"),
    ("seeds = []\n[[runs]]\nname = 'a'\n", "non-empty list of integers"),
    ("[[runs]]\nname = 'a'\nseeds = [-1]\n", "run 'a': seeds must be"),
    ("[[runs]]\nname = 'a'\nseed = 3\n", "'seed' is set by the study"),
    ("[defaults]\nout = 'x'\n[[runs]]\nname = 'a'\n", "[defaults]: 'out' is set by the study"),
    ("[defaults]\nseeds = [1]\n[[runs]]\nname = 'a'\n", "seeds go at the top"),
    ("[[runs]]\nname = 'a'\nbatch-size = 3\n", "did you mean 'batch_size'"),
    ("[[runs]]\nname = 'a'\nepochs = 'many'\n", "run 'a': epochs = 'many' is not a valid int"),
    ("[[runs]]\nname = 'a'\nmodel = 'nope'\n", "run 'a': unknown model 'nope'"),
    ("[[runs]]\nname = 'a'\ntokens = 'pixels'\n", "unknown token scheme"),
    ("[[runs]]\nname = 'a'\nlr = \n", "not valid TOML"),
    ("[[runs]]\nname = 'a'\npreset = 'big'\n", "run 'a': no preset 'big'; the file's presets: none"),
    ("[presets.big]\nepochz = 1\n[[runs]]\nname = 'a'\n", "[presets.big]: unknown key 'epochz'"),
    ("[presets.big]\nseeds = 3\n[[runs]]\nname = 'a'\n", "[presets.big]: seeds must be"),
])
def test_bad_study_files_are_refused_with_the_reason(tmp_path, text, message):
    with pytest.raises(ValueError) as exc:
        study.load_study(write(tmp_path, text))
    assert message in str(exc.value) and "s.toml" in str(exc.value)


def test_a_missing_file_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        study.main([str(tmp_path / "absent.toml")])
    assert exc.value.code == 2 and "study file" in capsys.readouterr().err


TINY = """
seeds = [0, 1]

[defaults]
model = "gru"
dataset = "digits"
tokens = "row"
epochs = 1
batch_size = 32
limit_train = 96
limit_val = 64
progress = false
threads = 1

[[runs]]
name = "gru-h4"
model_cfg = {hidden_size = 4}
seeds = [0]

[[runs]]
name = "gru-h6"
model_cfg = {hidden_size = 6}
"""


def test_a_tiny_study_runs_end_to_end_and_a_second_time_runs_nothing(tmp_path, capsys, monkeypatch):
    path, out = str(write(tmp_path, TINY)), tmp_path / "out"
    assert study.main([path, "--out", str(out)]) == 0
    first = capsys.readouterr().out
    assert "3 to train, 0 to resume, 0 done" in first
    folders = ["gru-h4-s0", "gru-h6-s0", "gru-h6-s1"]
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == folders
    metrics = {f: json.loads((out / f / "metrics.json").read_text()) for f in folders}
    assert all(m["complete"] for m in metrics.values())
    config = json.loads((out / "gru-h6-s1" / "config.json").read_text())
    assert (config["train"]["seed"], config["train"]["model_cfg"], config["train"]["epochs"]) == (1, {"hidden_size": 6}, 1)
    # the report: one row per run name, its test accuracy the mean over that name's seeds
    table = (out / "report.md").read_text()
    assert table in first and (out / "report.png").read_bytes()[:4] == b"\x89PNG"
    rows = {c[0]: c for c in ([x.strip() for x in line.strip("|").split("|")]
                              for line in table.splitlines() if line.startswith("| gru-h"))}
    assert sorted(rows) == ["gru-h4", "gru-h6"]
    h6 = [metrics[f]["test"]["acc"] for f in ("gru-h6-s0", "gru-h6-s1")]
    # state column: a GRU carries its hidden vector, hidden_size floats
    assert (rows["gru-h6"][6], rows["gru-h4"][6]) == ("6", "4")
    assert rows["gru-h6"][7] == "2" and rows["gru-h6"][9].startswith(f"{100 * sum(h6) / 2:.2f} ± ")
    assert rows["gru-h4"][9] == f"{100 * metrics['gru-h4-s0']['test']['acc']:.2f}"

    stamps = {f: (out / f / "metrics.json").stat().st_mtime_ns for f in folders}
    monkeypatch.setattr(train, "main", lambda argv: pytest.fail(f"trained again: {argv}"))
    assert study.main([path, "--out", str(out)]) == 0
    second = capsys.readouterr().out
    assert "0 to train, 0 to resume, 3 done" in second and second.count("done, skipped") == 3
    assert {f: (out / f / "metrics.json").stat().st_mtime_ns for f in folders} == stamps
    assert (out / "report.md").read_text() == table


CONFIGS = Path(__file__).resolve().parents[1] / "experiments" / "configs"


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.toml")), ids=lambda p: p.name)
def test_every_study_file_of_the_repository_is_valid(path):
    s = study.load_study(path, overrides={"data_dir": "DATA"})
    assert s.runs and s.description and s.out.as_posix() == f"runs/{s.out.name}"
    for run in s.runs:
        args = parsed(run)
        assert args["data_dir"] == "DATA" and args["name"] == f"{run.name}-s{run.seed}"


def test_the_row_mnist10k_study_keeps_the_scripts_options():
    """Spot checks against experiments/studies/row_mnist10k.sh and row_mnist10k_qlam.sh (git history)."""
    runs = {(r.name, r.seed): parsed(r) for r in study.load_study(CONFIGS / "row_mnist10k.toml").runs}
    assert {name for name, _ in runs} == {"qlam", "qlam-init01", "qlam-su4-init01", "qlam-attn-h8", "gru", "lstm",
                                          "transformer", "ssm", "transformer-6697"}
    assert {seed for _, seed in runs} == {0, 1, 2}
    qlam, gru, attn = runs["qlam", 1], runs["gru", 2], runs["qlam-attn-h8", 0]
    assert (qlam["lr"], qlam["weight_decay"], qlam["epochs"], qlam["batch_size"]) == (0.03, 0.1, 20, 64)
    assert qlam["model_cfg"] == {"n_qubits": 8, "backend": "statevector", "depth": 2, "readout": "query+xyz",
                                 "readout_at": "every", "head_hidden": 164, "encoding_scale": 0.5}
    assert (gru["model"], gru["lr"], gru["match_params"], gru.get("weight_decay")) == ("gru", 0.01, 6282, None)
    assert (attn["lr"], attn["weight_decay"], attn["threads"]) == (0.01, 0.1, 1)
    assert attn["model_cfg"] == {"n_qubits": 8, "backend": "statevector", "depth": 2, "readout": "query+xyz",
                                 "readout_at": "attn", "head_hidden": 48, "encoding_scale": 0.1, "entangler": "su4",
                                 "query_heads": 8}


@pytest.mark.parametrize("path", sorted((CONFIGS / "runs").glob("*.toml")), ids=lambda p: p.name)
def test_every_single_run_config_is_a_valid_train_config(path):
    from qlam_tn.experiments import config

    options = config.load_run_config(path)
    args = vars(train.build_parser().parse_args(config.argv_from_config(options)))
    given = {k: v for k, v in args.items() if k in {f.name for f in dataclasses.fields(train.TrainConfig)}}
    given["model_cfg"] = train.parse_model_cfg(given.get("model_cfg"))
    cfg = train.TrainConfig(**given)
    assert cfg.data_dir is None  # the data folder comes from the command line or QLAM_DATA_DIR


@pytest.mark.parametrize("config_name, run_name", [("gru_row_mnist10k", "gru"), ("qlam_row_mnist10k", "qlam-attn-h8")])
def test_the_single_run_configs_are_their_studys_runs(config_name, run_name):
    """The configs of experiments/configs/runs/ train what the row_mnist10k study trains for seed 0."""
    from qlam_tn.experiments import config

    argv = config.argv_from_config(config.load_run_config(CONFIGS / "runs" / f"{config_name}.toml"))
    single = vars(train.build_parser().parse_args(argv))
    run = next(r for r in study.load_study(CONFIGS / "row_mnist10k.toml").runs if (r.name, r.seed) == (run_name, 0))
    in_study = parsed(run)
    single["model_cfg"] = train.parse_model_cfg(single.get("model_cfg"))
    keys = {f.name for f in dataclasses.fields(train.TrainConfig)}
    assert {k: v for k, v in single.items() if k in keys} == {k: v for k, v in in_study.items() if k in keys}


def test_a_folder_holding_only_a_dead_runs_lock_file_is_trained(tmp_path):
    """A run killed while it read its data leaves its lock file (and maybe a temporary file of an
    atomic write) and nothing else: no run's output, so the study trains it anew."""
    folder = tmp_path / "gru-fast-s0"
    folder.mkdir()
    (folder / ".lock").write_text('{"pid": 1, "host": "h", "since": "then"}')
    (folder / ".config.json.x1y2.tmp").write_text("{")
    assert study.run_status(folder) == "new"
    (folder / "notes.txt").write_text("mine")
    assert study.run_status(folder) == "stuck"


def test_a_runs_data_cfg_merges_into_the_defaults_key_by_key():
    from qlam_tn.experiments.study import merged_options
    defaults = {"data_cfg": {"seq_len": 256, "num_pairs": 16, "vocab_size": 8192}, "model_cfg": {"n_qubits": 8}}
    run = {"data_cfg": {"num_pairs": 64}, "model_cfg": {"depth": 2}}
    out = merged_options(defaults, run)
    assert out["data_cfg"] == {"seq_len": 256, "num_pairs": 64, "vocab_size": 8192}
    assert out["model_cfg"] == {"n_qubits": 8, "depth": 2}
    assert defaults["data_cfg"]["num_pairs"] == 16  # the defaults themselves stay as they were
