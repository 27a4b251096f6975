"""The ``qlam`` command line: user commands at the top, benchmarks under ``qlam bench``, old names refused."""
import importlib

import pytest

from qlam_tn.experiments import cli


def test_help_lists_the_user_commands_then_the_bench_group(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    listed = [line.split()[0] for line in out.splitlines() if line.startswith("  ") and not line.startswith("  -")]
    assert listed == ["quickstart", "train", "eval", "report", "study", "memory-report", "qubits-report", "probe", "entangle",
                      "scale", "hwcost", "demo", "bench"]
    assert cli.main([]) == 0 and capsys.readouterr().out == out


def test_bench_help_lists_every_benchmark(capsys):
    assert cli.main(["bench", "--help"]) == 0
    out = capsys.readouterr().out
    listed = [line.split()[0] for line in out.splitlines() if line.startswith("  ") and not line.startswith("  -")]
    assert listed == ["anchors", "engine", "models", "contraction", "pennylane", "oracle", "memory", "profile",
                      "floor", "circuits"]
    assert cli.main(["bench"]) == 0


@pytest.mark.parametrize("old, new", [("bench-anchors", "qlam bench anchors"), ("bench-engine", "qlam bench engine"),
                                      ("bench-models", "qlam bench models"),
                                      ("bench-contraction", "qlam bench contraction"),
                                      ("bench-pennylane", "qlam bench pennylane"), ("bench-oracle", "qlam bench oracle"),
                                      ("memory-check", "qlam bench memory")])
def test_old_names_exit_2_naming_their_replacement(old, new, capsys):
    assert cli.main([old, "--quick"]) == 2
    err = capsys.readouterr().err
    assert f"renamed: use `{new}`" in err and len(err.strip().splitlines()) == 1


def test_unknown_commands_are_usage_errors(capsys):
    for argv in (["nope"], ["bench", "nope"]):
        with pytest.raises(SystemExit) as exc:
            cli.main(argv)
        assert exc.value.code == 2
        assert "invalid choice: 'nope'" in capsys.readouterr().err


@pytest.mark.parametrize("name", list(cli.BENCHES))
def test_every_bench_takes_markdown(name, capsys):
    module = importlib.import_module(cli.BENCHES[name][0])
    with pytest.raises(SystemExit) as exc:
        module.main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "--markdown" in out and f"qlam bench {name}" in out


def test_every_user_command_has_a_main():
    for module, _ in cli.COMMANDS.values():
        assert callable(importlib.import_module(module).main)


def test_a_bench_runs_through_the_group_with_its_own_options(capsys):
    assert cli.main(["bench", "contraction", "--batches", "1", "--chis", "2", "--min-time", "0.001",
                     "--markdown"]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = [line.strip("| ").split(" | ") for line in lines if line.startswith("| ") and "---" not in line]
    assert rows[0] == ["case", "B", "chi", "einsum", "oe_expr", "contract", "best"]
    cases = [r[0] for r in rows[1:]]
    assert cases == ["1q gate", "two-site merge", "2q gate", "1-site rdm", "env update", "env update + op"]
    for r in rows[1:]:
        times = dict(zip(["einsum", "oe_expr", "contract"], map(float, r[3:6])))
        assert r[1:3] == ["1", "2"] and r[6] == min(times, key=times.get)  # best: the fastest of the three


def test_the_pennylane_bench_prints_its_figures_as_a_markdown_table(capsys):
    pytest.importorskip("pennylane")
    from qlam_tn.experiments.bench import pennylane as bench

    assert bench.main(["--n", "3", "--depth", "1", "--repeats", "1", "--threads", "1", "--markdown"]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = [line.strip("| ").split(" | ") for line in lines if line.startswith("| ") and "---" not in line]
    assert rows[0] == ["device", "what", "time (s)", "⟨Z⟩ / note"]
    assert [(r[0], r[1]) for r in rows[1:]] == [("qlam.mps", "value"), ("qlam.mps", "gradient"),
                                                ("default.tensor", "value"), ("default.tensor", "gradient")]
    ours, theirs = float(rows[1][3].split()[0]), float(rows[3][3].split()[0])
    exact = float(rows[1][3].split("exact (default.qubit) ")[1].rstrip(")"))
    assert abs(ours - exact) < 1e-10 and abs(theirs - exact) < 1e-10  # 3 qubits: nothing truncated
    assert lines[-1].startswith("speed-up: value ")
