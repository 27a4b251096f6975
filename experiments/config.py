"""Run configuration files: ``qlam train --config FILE`` and the runs of a study.

A run config is a TOML file (read with ``tomllib``) whose keys are ``qlam train``'s options as
argparse stores them: the flag's name without its leading dashes, ``-`` written ``_``
(``--batch-size`` is ``batch_size``; ``--no-progress`` is ``progress = false``)::

    model = "qlam"
    dataset = "digits"
    tokens = "row"
    epochs = 20
    lr = 3e-2
    memory_lr_scale = 0
    cache_memory = true               # an on/off flag: true gives it, false leaves it out
    model_cfg = {n_qubits = 8, backend = "statevector", bond_dim = "none"}
    # or: model_cfg = ["n_qubits=8", "backend=statevector"]
    # a memory task's parameters (--data-cfg) are a table too:
    # dataset = "mqar"
    # data_cfg = {seq_len = 64, num_pairs = 4, vocab_size = 128}

Every value goes through the same argparse type and choices as its flag, so a file is refused
for the reasons the command line would be, with the file and the key named. Flags given on the
command line override the file's values; ``model_cfg`` and ``data_cfg`` entries merge key by
key, the command line's winning (its entries come after the file's, and a key given twice takes
its last value).
TOML has no null: write ``"none"`` where a flag takes ``none``.

API (``parser`` defaults to ``qlam train``'s, :func:`qlam_tn.experiments.train.build_parser`):

- :func:`load_run_config` ``(path, parser=None) -> dict``: read and check a file; ``{key: value}``
  with the file's TOML values;
- :func:`argv_from_config` ``(config, parser=None) -> list[str]``: the equivalent flags of such a
  dict (checked the same way, so a study runner may build the dict in code);
- :func:`with_config_file` ``(argv, parser=None) -> list[str]``: ``argv`` with its ``--config
  FILE``'s flags in front of its own (how ``qlam train`` merges them);
- :func:`parse_key_values` ``(items, flag) -> dict``: ``["n_qubits=8", ...]`` to typed values.
"""
from __future__ import annotations

import argparse
import math
import tomllib
from pathlib import Path

# Options that a config file cannot set: they say where the configuration comes from.
NOT_IN_FILES = ("help", "config")


class OptionParser(argparse.ArgumentParser):
    """An ``argparse.ArgumentParser`` that lists its options by their dest names."""

    def options(self) -> dict[str, argparse.Action]:
        """``{dest: action}`` of every ``--flag`` a config file may set."""
        return {a.dest: a for a in self._actions
                if a.option_strings and a.dest not in NOT_IN_FILES}


# ----------------------------------------------------------------------------------------------
# KEY=VALUE lists (--model-cfg)
# ----------------------------------------------------------------------------------------------

def parse_key_values(items, flag: str = "--model-cfg") -> dict:
    """``["n_qubits=8", "backend=statevector", "bond_dim=None"]`` -> a dict of typed values.

    Values become ``None`` (none/null), bools (true/false), ints, floats, else stay strings.
    A key given twice takes its last value (so a later list overrides an earlier one).
    """
    out = {}
    for item in items or ():
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise ValueError(f"{flag} entries are key=value, got {item!r}")
        out[key] = parse_value(raw.strip())
    return out


def parse_value(raw: str):
    """One ``KEY=VALUE`` value: ``None``, a bool, an int, a float, else the string itself."""
    low = raw.lower()
    if low in ("none", "null"):
        return None
    if low in ("true", "false"):
        return low == "true"
    for kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            pass
    return raw


def _key_value(key: str, value, where: str) -> str:
    """``key=value`` that :func:`parse_value` reads back as ``value`` (TOML's types)."""
    if not (isinstance(key, str) and key.isidentifier()):
        raise ValueError(f"{where}: {key!r} is not a keyword name")
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, (int, float, str)):
        text = repr(value) if isinstance(value, float) else str(value)
    else:
        raise ValueError(f"{where}.{key} = {value!r}: a value here is a string, number or "
                         f"true/false, not a {type(value).__name__}")
    back = parse_value(text)
    same = (isinstance(back, float) and isinstance(value, float) and math.isnan(back)
            and math.isnan(value)) or (type(back) is type(value) and back == value)
    if isinstance(value, str) and back is None:
        same = True  # "none" is how TOML, which has no null, spells None
    if not same:
        raise ValueError(f"{where}.{key} = {value!r} would reach the model as {back!r} "
                         f"({type(back).__name__}), not as the {type(value).__name__} written")
    return f"{key}={text}"


# ----------------------------------------------------------------------------------------------
# A config dict <-> flags
# ----------------------------------------------------------------------------------------------

def _default_parser() -> OptionParser:
    # Imported here: train imports this module for its own --config option.
    from qlam_tn.experiments.train import build_parser

    return build_parser()


def _unknown_key(key, options: dict, where: str) -> ValueError:
    hint = ""
    if isinstance(key, str) and key.replace("-", "_") in options:
        hint = f" (did you mean {key.replace('-', '_')!r}? keys use _ where flags use -)"
    return ValueError(f"{where}: unknown key {key!r}{hint}; valid keys: "
                      f"{', '.join(sorted(options))}")


def _check_type(action: argparse.Action, key: str, token: str, where: str):
    if action.type is not None:
        try:
            value = action.type(token)
        except (ValueError, TypeError, argparse.ArgumentTypeError):
            kind = action.type.__name__ if action.type in (int, float) else "value"
            raise ValueError(f"{where}: {key} = {token!r} is not a valid {kind}") from None
    else:
        value = token
    if action.choices is not None and value not in action.choices:
        raise ValueError(f"{where}: {key} = {token!r}; choose from "
                         f"{', '.join(map(str, action.choices))}")


def _flags(key: str, value, action: argparse.Action, where: str) -> list[str]:
    """The command-line tokens that give option ``key`` the config value ``value``."""
    flag = action.option_strings[-1]
    if action.nargs == 0:  # an on/off flag (store_true / store_false)
        if not isinstance(value, bool):
            raise ValueError(f"{where}: {key} = {value!r} must be true or false")
        return [flag] if value == action.const else []
    if action.nargs in ("+", "*"):
        if isinstance(value, dict):
            items = [_key_value(k, v, f"{where}: {key}") for k, v in value.items()]
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            items = list(value)
            if action.metavar == "KEY=VALUE":
                parse_key_values(items, f"{where}: {key}")
        else:
            raise ValueError(f"{where}: {key} = {value!r} must be a table {{k = v, ...}} or a "
                             f"list of \"k=v\" strings")
        for item in items:
            _check_type(action, key, item, where)
        return [flag, *items] if items else []
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError(f"{where}: {key} = {value!r} must be a "
                         f"{'string' if action.type is None else 'single number or string'}")
    if action.type is None and not isinstance(value, str):
        raise ValueError(f"{where}: {key} = {value!r} must be a string (in quotes)")
    token = repr(value) if isinstance(value, float) else str(value)
    _check_type(action, key, token, where)
    return [f"{flag}={token}"]  # one token: a value that starts with "-" stays a value


def argv_from_config(config: dict, parser: OptionParser | None = None,
                     where: str = "config") -> list[str]:
    """The flags that set what ``config`` (``{dest name: value}``) sets, in its order.

    Raises ``ValueError`` naming ``where`` and the key for an unknown key or a value its
    option's argparse type or choices refuse.
    """
    options = (parser or _default_parser()).options()
    argv = []
    for key, value in config.items():
        if key not in options:
            raise _unknown_key(key, options, where)
        argv += _flags(key, value, options[key], where)
    return argv


def load_run_config(path, parser: OptionParser | None = None) -> dict:
    """The options a TOML run config file sets: ``{dest name: value}`` in the file's order.

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` (naming the file) for
    malformed TOML, an unknown key or a value its option refuses.
    """
    path, parser = Path(path), parser or _default_parser()
    if path.suffix.lower() in (".yaml", ".yml"):
        raise ValueError(f"{path}: run configs are TOML files (key = value); YAML is not read")
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"config file {path} not found") from None
    except IsADirectoryError:
        raise ValueError(f"config file {path} is a directory") from None
    try:
        config = tomllib.loads(text.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not valid TOML: {exc}") from None
    argv_from_config(config, parser, where=str(path))  # checks every key and value
    return config


def with_config_file(argv: list[str], parser: OptionParser | None = None) -> list[str]:
    """``argv`` with the flags of its ``--config FILE`` in front of its own, so that the command
    line overrides the file (``argv`` itself when it names no file). A command line that the
    parser refuses exits as ``parser.parse_args`` does."""
    parser = parser or _default_parser()
    path = getattr(parser.parse_args(argv), "config", None)
    if path is None:
        return list(argv)
    return argv_from_config(load_run_config(path, parser), parser, where=str(path)) + list(argv)
