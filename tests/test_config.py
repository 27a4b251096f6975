"""Run configuration files (``qlam train --config FILE``): a file resolves to what the same
flags resolve to, flags override it, and every kind of bad file gives one error naming it.

The reference for "resolved" is ``qlam train``'s own argument parser fed the equivalent flags;
the one training run compares the recorded ``config.json`` of a file-configured run with that of
a flag-configured one (a GRU of width 8 on 64 digits, about a second).
"""
import json
import re

import pytest
import torch

from qlam_tn.experiments import cli, config, train

pytest.importorskip("sklearn")

FILE = """
model = "gru"
dataset = "digits"
tokens = "row"
epochs = 3
batch_size = 16
lr = 0.01
clip = "none"
dtype = "float64"
val_fraction = 0.2
limit_train = 64
cache_memory = false
progress = false
model_cfg = {hidden_size = 8, num_layers = 1}
"""
FLAGS = ["--model", "gru", "--dataset", "digits", "--tokens", "row", "--epochs", "3",
         "--batch-size", "16", "--lr", "0.01", "--clip", "none", "--dtype", "float64",
         "--val-fraction", "0.2", "--limit-train", "64", "--no-progress",
         "--model-cfg", "hidden_size=8", "num_layers=1"]


@pytest.fixture(autouse=True)
def _keep_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _write(tmp_path, text, name="run.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def _resolved(argv) -> dict:
    """What ``qlam train`` resolves ``argv`` to: its parsed options, ``--config`` merged in and
    ``model_cfg`` read into typed values (the option naming the file itself left out)."""
    parser = train.build_parser()
    args = vars(parser.parse_args(config.with_config_file(argv, parser)))
    args.pop("config", None)
    if "model_cfg" in args:
        args["model_cfg"] = train.parse_model_cfg(args["model_cfg"])
    return args


def test_a_file_resolves_to_what_the_same_flags_resolve_to(tmp_path):
    path = _write(tmp_path, FILE)
    assert _resolved(["--config", str(path)]) == _resolved(FLAGS)
    expected = {"model": "gru", "dataset": "digits", "tokens": "row", "epochs": 3, "batch_size": 16,
                "lr": 0.01, "clip": None, "dtype": "float64", "val_fraction": 0.2, "limit_train": 64,
                "progress": False, "model_cfg": {"hidden_size": 8, "num_layers": 1}}
    assert _resolved(["--config", str(path)]) == expected
    # model_cfg as a list of "k=v" strings is the same as the table
    listed = FILE.replace('model_cfg = {hidden_size = 8, num_layers = 1}',
                          'model_cfg = ["hidden_size=8", "num_layers=1"]')
    assert _resolved(["--config", str(_write(tmp_path, listed, "listed.toml"))]) == expected
    # on/off flags: true gives the flag, false leaves it out
    on = _write(tmp_path, 'cache_memory = true\nprogress = true\n', "on.toml")
    assert _resolved(["--config", str(on)]) == {"cache_memory": True}


def test_a_config_run_records_the_configuration_of_the_flag_run(tmp_path):
    path = _write(tmp_path, FILE)
    common = ["--epochs", "1", "--threads", "1", "--out", str(tmp_path / "runs")]
    assert train.main(["--config", str(path), "--name", "file"] + common) == 0
    assert train.main(FLAGS + ["--name", "flags"] + common) == 0
    file_run, flag_run = (json.loads((tmp_path / "runs" / k / "config.json").read_text())
                          for k in ("file", "flags"))
    assert file_run == flag_run
    assert file_run["train"]["epochs"] == 1 and file_run["train"]["clip"] is None  # flag over file
    assert file_run["train"]["model_cfg"] == {"hidden_size": 8, "num_layers": 1}
    a, b = (json.loads((tmp_path / "runs" / k / "metrics.json").read_text())["epochs"][0]["train_loss"]
            for k in ("file", "flags"))
    assert a == b


def test_command_line_flags_override_the_file(tmp_path):
    path = _write(tmp_path, FILE)
    got = _resolved(["--config", str(path), "--epochs", "7", "--lr", "0.5", "--model-cfg",
                     "hidden_size=4", "bias=false"])
    assert got["epochs"] == 7 and got["lr"] == 0.5
    # model_cfg merges key by key, the command line's value winning
    assert got["model_cfg"] == {"hidden_size": 4, "num_layers": 1, "bias": False}
    # the flag may also come before --config: the command line still wins
    assert _resolved(["--epochs", "7", "--config", str(path)])["epochs"] == 7


def test_key_values_round_trip_through_the_command_line_text():
    table = {"n_qubits": 8, "bond_dim": "none", "cutoff": 1e-3, "real": True, "big": 1e20,
             "backend": "mps", "scale": 2.0}
    argv = config.argv_from_config({"model_cfg": table})
    assert argv == ["--model-cfg", "n_qubits=8", "bond_dim=none", "cutoff=0.001", "real=true",
                    "big=1e+20", "backend=mps", "scale=2.0"]
    assert train.parse_model_cfg(argv[1:]) == {"n_qubits": 8, "bond_dim": None, "cutoff": 0.001,
                                               "real": True, "big": 1e20, "backend": "mps",
                                               "scale": 2.0}


@pytest.mark.parametrize("text, message", [
    ('epochs = 2\nlearning_rate = 0.1\n', r"unknown key 'learning_rate'; valid keys: .*\blr\b"),
    ('batch-size = 4\n', r"unknown key 'batch-size' \(did you mean 'batch_size'"),
    ('config = "other.toml"\n', r"unknown key 'config'"),
    ('epochs = "two"\n', r"epochs = 'two' is not a valid int"),
    ('epochs = 2.5\n', r"epochs = '2.5' is not a valid int"),
    ('lr = "fast"\n', r"lr = 'fast' is not a valid float"),
    ('dtype = "float16"\n', r"dtype = 'float16'; choose from float32, float64"),
    ('cache_memory = 1\n', r"cache_memory = 1 must be true or false"),
    ('model = 3\n', r"model = 3 must be a string"),
    ('epochs = [1, 2]\n', r"epochs = \[1, 2\] must be a single number or string"),
    ('model_cfg = 3\n', r"model_cfg = 3 must be a table"),
    ('model_cfg = ["hidden_size"]\n', r"model_cfg entries are key=value, got 'hidden_size'"),
    ('model_cfg = {hidden_size = "8"}\n', r"hidden_size = '8' would reach the model as 8 \(int\)"),
    ('model_cfg = {sizes = [1, 2]}\n', r"sizes = \[1, 2\]: a value here is a string, number"),
])
def test_a_bad_file_gives_one_error_naming_the_file_and_the_key(text, message, tmp_path, capsys):
    path = _write(tmp_path, text)
    with pytest.raises(ValueError, match=message) as exc:
        config.load_run_config(path)
    assert str(path) in str(exc.value)
    _exits_2_with_one_error(["train", "--config", str(path)], tmp_path, capsys, message)


def test_a_missing_file_is_one_error(tmp_path, capsys):
    path = tmp_path / "nowhere.toml"
    with pytest.raises(FileNotFoundError, match=r"config file .*nowhere\.toml not found"):
        config.load_run_config(path)
    _exits_2_with_one_error(["train", "--config", str(path)], tmp_path, capsys, r"nowhere\.toml not found")


@pytest.mark.parametrize("text", ['model = "gru\n', "epochs = \n", "[model_cfg\nn = 1\n",
                                  "epochs = 1\nepochs = 2\n"])
def test_malformed_toml_is_one_error(text, tmp_path, capsys):
    path = _write(tmp_path, text)
    with pytest.raises(ValueError, match=r"run\.toml: not valid TOML"):
        config.load_run_config(path)
    _exits_2_with_one_error(["train", "--config", str(path)], tmp_path, capsys, "not valid TOML")


def test_yaml_is_refused_by_name(tmp_path):
    with pytest.raises(ValueError, match="TOML"):
        config.load_run_config(_write(tmp_path, "model: gru\n", "run.yaml"))


def test_load_run_config_returns_the_files_values_in_order(tmp_path):
    got = config.load_run_config(_write(tmp_path, FILE))
    assert list(got) == ["model", "dataset", "tokens", "epochs", "batch_size", "lr", "clip", "dtype",
                         "val_fraction", "limit_train", "cache_memory", "progress", "model_cfg"]
    assert got["model_cfg"] == {"hidden_size": 8, "num_layers": 1} and got["clip"] == "none"
    assert config.argv_from_config(got)[:2] == ["--model=gru", "--dataset=digits"]
    # a value that looks like a flag stays the value of its option
    assert _resolved(config.argv_from_config({"name": "-x", "lr": -1.0})) == {"name": "-x", "lr": -1.0}


def _exits_2_with_one_error(argv, tmp_path, capsys, message):
    out = tmp_path / "runs"
    with pytest.raises(SystemExit) as exc:
        cli.main(argv + ["--out", str(out), "--name", "bad", "--threads", "1"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1, err
    assert re.search(message, errors[0]), errors[0]
    assert not out.exists()
