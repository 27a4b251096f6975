"""Run a study file: ``qlam study FILE.toml [--dry-run] [--only NAME] [--out DIR]``.

A study file (TOML) lists the runs of one study; each run is trained once per seed::

    description = "Row-level mnist10k: QLAM against four baselines"   # optional
    out = "runs/row_mnist10k"          # optional; default runs/<file name without .toml>
    seeds = [0, 1, 2]                  # every run's seeds, unless the run gives its own

    [defaults]                         # qlam train options shared by every run
    dataset = "mnist10k"
    tokens = "row"
    epochs = 20
    progress = false

    [[runs]]
    name = "qlam"                      # the run folders are OUT/qlam-s0, OUT/qlam-s1, ...
    model = "qlam"
    lr = 0.03
    model_cfg = {n_qubits = 8, backend = "statevector"}

    [[runs]]
    name = "gru"
    model = "gru"
    seeds = [0]                        # this run's own seeds
    match_params = 6282

    [presets.small]                    # options that several runs share (optional)
    epochs = 6
    limit_train = 2000

    [[runs]]
    name = "gru-small"
    preset = "small"                   # defaults, then the preset's options, then its own
    model = "gru"

Option keys are ``qlam train``'s, as in a run config (``qlam_tn.experiments.config``): a run's
options are ``[defaults]``, overridden by its preset's (if it names one), overridden by its
own; ``model_cfg`` and ``data_cfg`` tables merge key by key (the later keys win), as repeated command-line flags
do. A preset may give ``seeds`` too (a run's own win). The study sets ``--seed``, ``--out`` and
``--name`` itself: ``seed``, ``out``, ``name``, ``resume`` and ``config`` are refused as options.
Leave the data folder out of a study file (it differs by machine): ``--data-dir`` or the
environment variable ``QLAM_DATA_DIR`` gives it to every run.

For each run and seed: a folder with a complete ``metrics.json`` (the run trained every epoch
and was scored) is skipped; one with a ``last.pt`` is resumed (``qlam train --resume``, which
refuses options that contradict the run's own); a missing or empty one is trained; any other
(a folder that holds no checkpoint yet) stops the study before it trains anything. Every run
goes through ``qlam_tn.experiments.train.main``, one after another in this process. Then
``qlam report --by name`` over the study's run folders writes ``OUT/report.md`` and
``OUT/report.png``.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import sys
import tomllib
from pathlib import Path
from typing import Dict, List, Optional

from qlam_tn.experiments import config as run_config

STUDY_KEYS = ("description", "out", "seeds", "defaults", "presets", "runs")
RUN_KEYS = ("name", "seeds", "preset")
# Set by the study for every run (or, for config, meaningless in a file).
SET_BY_STUDY = {"seed": "list seeds in `seeds = [...]`", "out": "the study's out folder holds every run",
                "name": "a run's `name` names its folders", "resume": "the study resumes unfinished runs itself",
                "config": "a study file holds the options itself"}
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+=-]*")


@dataclasses.dataclass(frozen=True)
class Run:
    """One training of a study: run ``name`` with ``seed``, in folder ``path``.

    ``options``: the run's ``qlam train`` flags (the study's defaults overridden by the run's
    own, then the command line's overrides). ``status``: ``done`` (complete ``metrics.json``),
    ``resume`` (a ``last.pt``), ``new`` (no folder, or an empty one) or ``stuck`` (a folder
    with neither).
    """

    name: str
    seed: int
    path: Path
    options: List[str]
    status: str

    @property
    def train_argv(self) -> List[str]:
        """What ``train.main`` gets: the options and ``--seed``, then ``--out``/``--name`` for a
        new run, or ``--resume PATH`` for one to continue (which refuses options that differ)."""
        where = (["--resume", str(self.path)] if self.status == "resume"
                 else ["--out", str(self.path.parent), "--name", self.path.name])
        return self.options + ["--seed", str(self.seed)] + where


@dataclasses.dataclass(frozen=True)
class Study:
    """A study file, read and checked: ``runs`` expanded over their seeds, in file order."""

    path: Path
    description: str
    out: Path
    runs: List[Run]


def read_study(path) -> dict:
    """The TOML table of a study file, its keys checked (not yet its options)."""
    path = Path(path)
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"study file {path} not found") from None
    except IsADirectoryError:
        raise ValueError(f"study file {path} is a directory") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not valid TOML: {exc}") from None
    unknown = [k for k in doc if k not in STUDY_KEYS]
    if unknown:
        raise ValueError(f"{path}: unknown key {unknown[0]!r} at the top; a study file has "
                         f"{', '.join(STUDY_KEYS)} (train options go in [defaults] or [[runs]])")
    if not isinstance(doc.get("description", ""), str) or not isinstance(doc.get("out", ""), str):
        raise ValueError(f"{path}: description and out are strings")
    if not isinstance(doc.get("defaults", {}), dict):
        raise ValueError(f"{path}: defaults is a table: [defaults] followed by key = value lines")
    presets = doc.get("presets", {})
    if not isinstance(presets, dict) or not all(isinstance(p, dict) for p in presets.values()):
        raise ValueError(f"{path}: presets are tables: [presets.NAME] followed by key = value lines")
    for name, preset in presets.items():
        if "seeds" in preset:
            _check_seeds(preset["seeds"], f"{path}: [presets.{name}]: seeds")
    runs = doc.get("runs")
    if not isinstance(runs, list) or not runs or not all(isinstance(r, dict) for r in runs):
        raise ValueError(f"{path}: no runs; list them as [[runs]] tables, each with a name")
    _check_seeds(doc.get("seeds", [0]), f"{path}: seeds")
    names = set()
    for i, run in enumerate(runs):
        name = run.get("name")
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise ValueError(f"{path}: runs[{i}] needs a name made of letters, digits and . _ + = - "
                             f"(it names the run's folders), got {name!r}")
        if name in names:
            raise ValueError(f"{path}: two runs are named {name!r}")
        names.add(name)
        if "seeds" in run:
            _check_seeds(run["seeds"], f"{path}: run {name!r}: seeds")
        if "preset" in run and (not isinstance(run["preset"], str) or run["preset"] not in presets):
            raise ValueError(f"{path}: run {name!r}: no preset {run['preset']!r}; the file's presets: "
                             f"{', '.join(presets) or 'none'}")
    return doc


def _check_seeds(seeds, where: str) -> None:
    if (not isinstance(seeds, list) or not seeds
            or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds)):
        raise ValueError(f"{where} must be a non-empty list of integers >= 0, got {seeds!r}")
    if len(set(seeds)) < len(seeds):
        raise ValueError(f"{where} repeats a seed: {seeds!r}")


def _options(table: dict, where: str, drop=()) -> dict:
    """``table``'s train options (``drop``: its keys that are not), refusing those the study sets."""
    options = {k: v for k, v in table.items() if k not in drop}
    for key in options:
        if key == "seeds":
            raise ValueError(f"{where}: seeds go at the top of the file, or in a run")
        if key in SET_BY_STUDY:
            raise ValueError(f"{where}: {key!r} is set by the study ({SET_BY_STUDY[key]})")
    return options


def merged_options(*layers: dict) -> dict:
    """Options of ``layers`` in turn, each overriding the ones before (``model_cfg`` and
    ``data_cfg`` tables merged key by key): ``merged_options(defaults, preset, run)``."""
    out: dict = {}
    for layer in layers:
        tables = {key: out.get(key) for key in ("model_cfg", "data_cfg")}
        out.update(layer)
        for key, before in tables.items():
            if isinstance(before, dict) and isinstance(layer.get(key), dict):
                out[key] = {**before, **layer[key]}
    return out


def run_status(path: Path) -> str:
    """``done``, ``resume``, ``new`` or ``stuck`` (see :class:`Run`) for a run folder."""
    if is_complete(path):
        return "done"
    from qlam_tn.experiments import runfolder as rf

    if (path / "last.pt").is_file():
        return "resume"
    # a lock file left by a killed run (or a half-written temporary file) is not a run's output
    if not path.exists() or (path.is_dir() and not rf.contents(path)):
        return "new"
    return "stuck"


def is_complete(path: Path) -> bool:
    """Whether ``path/metrics.json`` says the run finished (trained every epoch and was scored)."""
    try:
        return json.loads((Path(path) / "metrics.json").read_text()).get("complete") is True
    except (OSError, ValueError, AttributeError):
        return False


def load_study(path, out: Optional[str] = None, overrides: Optional[Dict[str, object]] = None) -> Study:
    """Read ``path`` and expand its runs over their seeds.

    ``out`` (the command line's ``--out``) replaces the file's ``out``; ``overrides`` are train
    options applied to every run after its own (``data_dir``, ``threads``). Raises ``ValueError``
    naming the file (and the run) for anything a study file or ``qlam train`` would refuse.
    """
    path = Path(path)
    doc = read_study(path)
    parser = _train_parser()
    where = f"{path}: [defaults]"
    defaults = _options(doc.get("defaults", {}), where)
    run_config.argv_from_config(defaults, parser, where=where)
    extra = run_config.argv_from_config(dict(overrides or {}), parser, where="the command line")
    out_dir = Path(out or doc.get("out") or Path("runs") / path.stem)
    runs = []
    presets = doc.get("presets", {})
    preset_options = {}
    for name, preset in presets.items():
        where = f"{path}: [presets.{name}]"
        preset_options[name] = _options(preset, where, drop=("seeds",))
        run_config.argv_from_config(preset_options[name], parser, where=where)
    for table in doc["runs"]:
        where = f"{path}: run {table['name']!r}"
        preset = table.get("preset")
        options = merged_options(defaults, preset_options.get(preset, {}), _options(table, where, drop=RUN_KEYS))
        argv = run_config.argv_from_config(options, parser, where=where) + extra
        _check_train_config(parser, argv, where)
        seeds = table.get("seeds", presets.get(preset, {}).get("seeds", doc.get("seeds", [0])))
        for seed in seeds:
            folder = out_dir / f"{table['name']}-s{seed}"
            runs.append(Run(table["name"], seed, folder, argv, run_status(folder)))
    return Study(path, doc.get("description", ""), out_dir, runs)


def _train_parser():
    from qlam_tn.experiments.train import build_parser

    return build_parser()


def _check_train_config(parser, argv: List[str], where: str) -> None:
    """Refuse now what ``qlam train`` would refuse at the run's start (an unknown model or
    dataset, a bad token scheme, ...): its ``TrainConfig`` built from ``argv``."""
    from qlam_tn.experiments.train import TrainConfig, parse_model_cfg

    args = vars(parser.parse_args(argv))
    given = {f.name: args[f.name] for f in dataclasses.fields(TrainConfig) if f.name in args}
    try:
        if "model_cfg" in given:
            given["model_cfg"] = parse_model_cfg(given["model_cfg"])
        TrainConfig(**given)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{where}: {exc}") from None


def print_plan(study: Study, runs: List[Run]) -> None:
    """One line per run: its status and folder, and the command a new run gets."""
    print(f"study {study.path} -> {study.out}" + (f": {study.description}" if study.description else ""))
    for run in runs:
        what = {"done": "done, skipped", "resume": "resume", "new": "train", "stuck": "STUCK"}[run.status]
        print(f"  {what:<13} {run.path}")
        if run.status in ("new", "resume"):
            print("                qlam train " + " ".join(_quoted(a) for a in run.train_argv))
    counts = {s: sum(r.status == s for r in runs) for s in ("new", "resume", "done", "stuck")}
    print(f"{counts['new']} to train, {counts['resume']} to resume, {counts['done']} done"
          + (f", {counts['stuck']} stuck" if counts["stuck"] else ""))


def _quoted(arg: str) -> str:
    return arg if re.fullmatch(r"[\w@%+=:,./-]+", arg) else "'" + arg.replace("'", "'\\''") + "'"


def report(study: Study) -> int:
    """``qlam report --by name`` over the study's run folders that exist, into ``OUT/report.md``
    and ``OUT/report.png``; 0 when there is none yet."""
    from qlam_tn.experiments import report as report_cmd

    folders = [str(r.path) for r in study.runs if (r.path / "config.json").is_file()]
    if not folders:
        print("no runs to report yet")
        return 0
    try:
        return report_cmd.main(folders + ["--by", "name", "--out", str(study.out / "report.md"),
                                          "--plot", str(study.out / "report.png")])
    except SystemExit as exc:  # a run folder it cannot read (the error is printed)
        return exc.code if isinstance(exc.code, int) else 1


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="qlam study", description=__doc__.split("\n\n")[0],
                                 epilog="The study file's format: the docstring of qlam_tn.experiments.study; "
                                        "examples: experiments/configs/*.toml.")
    ap.add_argument("file", metavar="FILE.toml", help="the study file")
    ap.add_argument("--dry-run", action="store_true", help="print the plan (what would run, what is done); run nothing")
    ap.add_argument("--only", nargs="+", metavar="NAME", help="run only these runs (by name); the report covers all")
    ap.add_argument("--out", metavar="DIR", help="the study's folder (default: the file's out, else runs/<file name>)")
    ap.add_argument("--data-dir", metavar="DIR", help="the data folder every run reads (default: $QLAM_DATA_DIR)")
    ap.add_argument("--threads", type=int, metavar="N", help="torch threads of every run (overrides the file)")
    args = ap.parse_args(argv)
    overrides = {}
    data_dir = args.data_dir or os.environ.get("QLAM_DATA_DIR")
    if data_dir:
        overrides["data_dir"] = data_dir
    if args.threads is not None:
        if args.threads < 1:
            ap.error(f"--threads must be >= 1, got {args.threads}")
        overrides["threads"] = args.threads
    try:
        study = load_study(args.file, args.out, overrides)
    except (ValueError, FileNotFoundError) as exc:
        ap.error(str(exc))
    runs = study.runs
    if args.only:
        unknown = sorted(set(args.only) - {r.name for r in runs})
        if unknown:
            ap.error(f"--only: no run named {', '.join(unknown)} in {args.file}; its runs: "
                     f"{', '.join(dict.fromkeys(r.name for r in runs))}")
        runs = [r for r in runs if r.name in args.only]
    print_plan(study, runs)
    stuck = [r for r in runs if r.status == "stuck"]
    if stuck:
        ap.error(f"{stuck[0].path} holds neither a checkpoint (last.pt) nor a complete metrics.json "
                 f"(a run that stopped before its first epoch ended?): remove it and run the study again")
    if args.dry_run:
        return 0
    from qlam_tn.experiments import train

    failed = []
    for run in (r for r in runs if r.status in ("new", "resume")):
        print(f"\n== {run.path} ({'resumed' if run.status == 'resume' else 'new'})", flush=True)
        try:
            code = train.main(run.train_argv)
        except SystemExit as exc:  # the options refused (parser.error)
            code = exc.code if isinstance(exc.code, int) else 1
        if code == 130:  # interrupted: stop the study (rerunning it resumes)
            return code
        if code:
            failed.append(run)
    print()
    code = report(study)
    if failed:
        print(f"qlam study: {len(failed)} run(s) failed: " + ", ".join(str(r.path) for r in failed), file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    raise SystemExit(main())
