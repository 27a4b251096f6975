"""What a run folder is made of: atomic writes, verified checkpoints, RNG states, environment,
and the one process that writes it.

A run folder (``RUNS_DIR/NAME/``) holds::

    config.json        resolved configuration (training, model, data)
    splits.json        the carved validation indices (and built-in test indices)
    env.json           versions, threads, device, host, git commit
    metrics.json/.csv  one row per epoch; best epoch; test score
    curves.png         learning curves
    last.pt  last.pt.sha256     every epoch
    best.pt  best.pt.sha256     the epoch with the best validation accuracy
    .lock              while a process writes the folder: its pid, host and start time

Every file is written to a temporary file in the same folder and moved into place with
``os.replace``, so a reader (or a resumed run) never sees half a file. JSON files are strict
JSON: a value that is not finite (NaN, inf) is written as ``null``. A checkpoint is a dict of
tensors and plain Python values (no objects), loaded with ``torch.load(weights_only=True)``;
its SHA-256 sits in a ``sha256sum``-compatible sidecar and is checked before the bytes are
parsed, so a modified or truncated checkpoint raises a ``ValueError`` naming the file;
:func:`check_weights` then holds its tensors against the model they are for (names, shapes,
finite values).

One process writes a folder (:class:`RunFolder`): a new folder is made by an exclusive
``os.mkdir`` (two jobs never share one; a default name taken already gets a ``-2``, ``-3``, ...
suffix), and the writer holds an exclusive ``flock`` on ``.lock`` for as long as it runs. The
kernel drops that lock when the process ends, however it ends, so a ``.lock`` left by a killed
process blocks nothing. :func:`verify_run` checks every file a resume reads before the resume
trains anything.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import platform
import random
import socket
import stat
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

try:
    import fcntl
except ImportError:  # Windows: the exclusive mkdir alone keeps new runs apart
    fcntl = None

CHECKPOINT_FORMAT = "qlam-tn-checkpoint"
CHECKPOINT_VERSION = 1


def _file_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


_FILE_MODE = _file_mode()  # what open() would give; mkstemp's files are 0600


# ----------------------------------------------------------------------------------------------
# Atomic writes
# ----------------------------------------------------------------------------------------------

def atomic_write_bytes(path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and ``os.replace``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def finite_json(obj):
    """``obj`` with every float that is not finite (NaN, inf) replaced by ``None``: what strict
    JSON can hold. Dicts, lists and tuples are copied; other values are returned as they are."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_json(v) for v in obj]
    return obj


def atomic_write_json(path, obj) -> None:
    """``obj`` as strict JSON (NaN and inf written as ``null``, see :func:`finite_json`)."""
    atomic_write_text(path, json.dumps(finite_json(obj), indent=2, allow_nan=False) + "\n")


def atomic_write_csv(path, rows: list[dict]) -> None:
    """Rows of dicts as CSV; the columns are the union of the keys, in first-seen order."""
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buf.getvalue())


# ----------------------------------------------------------------------------------------------
# Checkpoints
# ----------------------------------------------------------------------------------------------

def sidecar_path(path) -> Path:
    path = Path(path)
    return path.with_name(path.name + ".sha256")


def save_checkpoint(path, payload: dict) -> str:
    """Serialise ``payload`` with ``torch.save``, write it and its SHA-256 sidecar atomically.

    Returns the hex digest. The checkpoint is moved into place before its sidecar; a crash
    between the two ``os.replace`` calls leaves a pair that fails verification (reported as
    such) rather than a checkpoint that silently loads.
    """
    buf = io.BytesIO()
    torch.save({"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, **payload}, buf)
    data = buf.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    atomic_write_bytes(path, data)
    atomic_write_text(sidecar_path(path), f"{digest}  {Path(path).name}\n")
    return digest


def load_checkpoint(path) -> dict:
    """A checkpoint written by :func:`save_checkpoint`, verified, on the CPU.

    Raises ``FileNotFoundError`` if ``path`` does not exist and ``ValueError`` (naming the file)
    if its sidecar is missing or disagrees with the bytes, or the bytes are not a checkpoint
    that ``torch.load(weights_only=True)`` accepts.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint")
    data = path.read_bytes()
    side = sidecar_path(path)
    if not side.is_file():
        raise ValueError(f"{path}: no {side.name} beside it, so the checkpoint cannot be verified")
    fields = side.read_text(encoding="utf-8", errors="replace").split()
    expected = fields[0].lower() if fields else ""
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        raise ValueError(f"{path}: SHA-256 of its {len(data)} bytes is {actual}, but {side.name} "
                         f"records {expected or '(nothing)'}: the checkpoint is truncated or was "
                         f"modified (or its save was interrupted)")
    try:
        ckpt = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - refusals are UnpicklingError, bad zips RuntimeError, ...
        raise ValueError(f"{path}: not a loadable checkpoint ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: not a {CHECKPOINT_FORMAT} file")
    if ckpt.get("version") != CHECKPOINT_VERSION:
        raise ValueError(f"{path}: checkpoint version {ckpt.get('version')}, this code reads "
                         f"version {CHECKPOINT_VERSION}")
    return ckpt


# What qlam train writes into every checkpoint, and the type of each entry.
TRAINING_ENTRIES = {"config": dict, "model": dict, "optimizer": dict, "scheduler": dict,
                    "epoch": int, "global_step": int, "best": dict, "history": list, "rng": list,
                    "threads": int}
# What rebuilding and scoring the model needs (qlam eval, probe, entangle).
MODEL_ENTRIES = ("config", "model", "epoch")


def check_entries(ckpt: dict, path, entries=tuple(TRAINING_ENTRIES)) -> None:
    """Refuse a verified checkpoint that lacks one of ``entries`` (names of
    :data:`TRAINING_ENTRIES`) or holds one of another type: ``ValueError`` naming ``path`` and
    the entry. A hash proves the bytes are the ones saved, not that ``qlam train`` saved them."""
    for key in entries:
        if key not in ckpt:
            raise ValueError(f"{path}: the checkpoint has no {key!r} entry: it was not written by "
                             f"qlam train, or was edited")
        kind = TRAINING_ENTRIES[key]
        if not isinstance(ckpt[key], kind) or isinstance(ckpt[key], bool):
            raise ValueError(f"{path}: the checkpoint's {key!r} entry is a "
                             f"{type(ckpt[key]).__name__}, not a {kind.__name__}")
    if "config" in entries:
        for section in ("train", "model", "data"):
            if not isinstance(ckpt["config"].get(section), dict):
                raise ValueError(f"{path}: the checkpoint's configuration has no {section!r} "
                                 f"section: it was not written by qlam train, or was edited")
    if "epoch" in entries and ckpt["epoch"] < 0:
        raise ValueError(f"{path}: the checkpoint's epoch is {ckpt['epoch']}")
    if "history" in entries:
        _check_history(ckpt, path)
    if "threads" in entries and ckpt["threads"] < 1:
        raise ValueError(f"{path}: the checkpoint records {ckpt['threads']} threads")


def _number(value, none_ok: bool = False) -> bool:
    return (value is None and none_ok) or (isinstance(value, (int, float))
                                           and not isinstance(value, bool))


def _check_history(ckpt: dict, path) -> None:
    """``history`` holds one row per epoch trained, ``best`` one of them: what the metrics, the
    curves and the next epoch's comparison read."""
    epoch, history, best = ckpt["epoch"], ckpt["history"], ckpt["best"]
    if len(history) != epoch:
        raise ValueError(f"{path}: the checkpoint is at epoch {epoch} but its history has "
                         f"{len(history)} rows")
    for i, row in enumerate(history):
        if not (isinstance(row, dict) and _number(row.get("epoch")) and row["epoch"] == i + 1
                and all(_number(row.get(k)) for k in ("step", "train_loss", "train_acc", "lr"))
                and all(_number(row.get(k), True) for k in ("val_loss", "val_acc"))):
            raise ValueError(f"{path}: row {i + 1} of the checkpoint's history is not an epoch's "
                             f"scores (epoch, step, train_loss, train_acc, val_loss, val_acc, lr)")
    if not (isinstance(best.get("epoch"), int) and 1 <= best["epoch"] <= max(epoch, 1)
            and _number(best.get("val_acc"), True) and _number(best.get("val_loss"), True)):
        raise ValueError(f"{path}: the checkpoint's 'best' entry is not one of its epochs "
                         f"(epoch, val_acc, val_loss)")


def check_weights(model: torch.nn.Module, state, path, nonfinite: str = "warn") -> None:
    """Refuse ``state`` (a checkpoint's ``"model"``) unless it holds exactly ``model``'s tensors,
    each of the model's shape: ``ValueError`` naming ``path`` and the first key that differs (in
    the model's order, then the checkpoint's extra keys). A tensor holding NaN or inf is named in
    a ``RuntimeWarning`` (``nonfinite="warn"``) or a ``ValueError`` (``"error"``)."""
    if nonfinite not in ("warn", "error"):
        raise ValueError(f"nonfinite must be 'warn' or 'error', got {nonfinite!r}")
    what = type(model).__name__
    if not isinstance(state, dict):
        raise ValueError(f"{path}: the checkpoint's weights are a {type(state).__name__}, not a "
                         f"dict of tensors")
    expected = model.state_dict()
    for key, ref in expected.items():
        if key not in state:
            missing = sum(k not in state for k in expected)
            raise ValueError(f"{path}: tensor {key!r} of the model ({what}) is missing from the "
                             f"checkpoint ({missing} missing in all): the checkpoint is not of "
                             f"this model, or was edited")
        value = state[key]
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"{path}: {key!r} in the checkpoint is a {type(value).__name__}, "
                             f"not a tensor")
        if value.shape != ref.shape:
            raise ValueError(f"{path}: tensor {key!r} has shape {tuple(value.shape)} in the "
                             f"checkpoint; the model ({what}) has shape {tuple(ref.shape)}")
    extra = [k for k in state if k not in expected]
    if extra:
        raise ValueError(f"{path}: tensor {extra[0]!r} of the checkpoint is not one of the "
                         f"model's ({what}; {len(extra)} such in all): the checkpoint is not of "
                         f"this model, or was edited")
    bad = {k: int((~torch.isfinite(v)).sum()) for k, v in state.items()
           if v.is_floating_point() or v.is_complex()}
    bad = {k: n for k, n in bad.items() if n}
    if bad:
        key, n = next(iter(bad.items()))
        others = f" (and {len(bad) - 1} more tensors)" if len(bad) > 1 else ""
        message = (f"{path}: tensor {key!r} holds {n} non-finite value(s) (NaN or inf) of "
                   f"{state[key].numel()}{others}")
        if nonfinite == "error":
            raise ValueError(message + ": a model with these weights computes NaN")
        warnings.warn(message, RuntimeWarning, stacklevel=2)


def load_weights(model: torch.nn.Module, state, path, nonfinite: str = "warn") -> None:
    """``model.load_state_dict(state)`` after :func:`check_weights` (same arguments)."""
    check_weights(model, state, path, nonfinite)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:  # e.g. a complex tensor where the model has a real one
        raise ValueError(f"{path}: its weights do not load into {type(model).__name__}: "
                         f"{str(exc).splitlines()[0]}") from None


# ----------------------------------------------------------------------------------------------
# RNG states as tensors and plain values (what weights_only loading accepts)
# ----------------------------------------------------------------------------------------------

def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's global generators (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state(generator: torch.Generator | None = None) -> dict:
    """The global generators' states (and ``generator``'s) as tensors, ints and floats."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": {"version": version, "state": torch.tensor(internal, dtype=torch.int64),
                   "gauss_next": gauss},
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    if generator is not None:
        state["generator"] = generator.get_state()
    return state


def set_rng_state(state: dict, generator: torch.Generator | None = None) -> None:
    """Restore what :func:`rng_state` captured."""
    py = state["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["state"].tolist()), py["gauss_next"]))
    npy = state["numpy"]
    np.random.set_state((npy["kind"], npy["keys"].numpy().astype(np.uint32), npy["pos"],
                         npy["has_gauss"], npy["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if generator is not None and "generator" in state:
        generator.set_state(state["generator"])


# ----------------------------------------------------------------------------------------------
# One writer per run folder
# ----------------------------------------------------------------------------------------------

LOCK_NAME = ".lock"


def contents(path) -> list[str]:
    """Sorted names in the folder ``path`` but its lock file and unfinished atomic writes
    (``.NAME.XXXX.tmp``): what runs wrote there."""
    return sorted(n for n in os.listdir(path)
                  if n != LOCK_NAME and not (n.startswith(".") and n.endswith(".tmp")))


def no_checkpoint_message(path) -> str:
    """What is wrong with a run folder that holds a configuration but no ``last.pt``, and what to do."""
    return (f"run folder {path} holds no checkpoint (its run stopped before the first epoch "
            f"ended: an interrupt, a non-finite loss in epoch 1, or --stop-after 0), so there is "
            f"nothing to resume: delete it or train under another --name")


def _taken_message(path: Path, names: list[str]) -> str:
    if "last.pt" in names:
        return (f"{path} holds a run (last.pt): train under another --name, or continue it with "
                f"--resume {path}")
    if "config.json" in names:
        return no_checkpoint_message(path)
    listed = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
    return f"{path} exists and is not empty ({listed}) but holds no run: train under another --name"


def _owner(lock: Path) -> str:
    """Who holds ``lock``, as its lock file says (the holder writes it just after locking: a
    moment's wait lets it finish)."""
    for _ in range(20):
        try:
            who = json.loads(lock.read_text())
            return f"process {int(who['pid'])} on {who['host']} (since {who['since']})"
        except (OSError, ValueError, KeyError, TypeError):
            time.sleep(0.005)
    return "another process"


def _lock(folder: Path) -> int:
    """An open descriptor of ``folder/.lock`` under this process's exclusive ``flock``, the lock
    file naming this process; ``ValueError`` when another process holds it,
    ``FileNotFoundError`` when ``folder`` is gone."""
    lock = folder / LOCK_NAME
    for _ in range(100):
        try:
            # O_NOFOLLOW: a .lock planted as a symlink must not make this process write its target.
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), _FILE_MODE)
        except FileNotFoundError:
            raise
        except OSError as exc:  # a symlink (O_NOFOLLOW), or a folder this user may not write
            if lock.is_symlink():
                raise ValueError(f"{folder}: its lock file {LOCK_NAME} is a symbolic link; a run folder's "
                                 f"lock must be a plain file (remove it)") from None
            raise ValueError(f"{folder}: cannot open its lock file {LOCK_NAME} ({exc.strerror}): "
                             f"a run folder must be writable") from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise ValueError(f"{folder}: its lock file {LOCK_NAME} is not a plain file (remove it)")
        if fcntl is None:
            break
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise ValueError(f"{folder} is being written by {_owner(lock)}: wait for it to end, "
                             f"or train under another --name") from None
        # The previous owner unlinks the lock file as it lets go; a lock taken on that unlinked
        # file guards nothing, so take it again on the file the path names now.
        try:
            if os.path.samestat(os.fstat(fd), os.stat(lock)):
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    else:
        raise ValueError(f"{folder}: its lock file keeps changing: another process is taking it")
    owner = {"pid": os.getpid(), "host": socket.gethostname(),
             "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(owner).encode(), 0)
    return fd


def _make_parents(folder: Path) -> list[Path]:
    """Make ``folder`` and any missing folders above it; the ones made here, deepest first."""
    missing = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    made = []
    for path in reversed(missing):
        try:
            os.mkdir(path)
            made.insert(0, path)
        except FileExistsError:
            pass
        except OSError as exc:
            raise ValueError(f"cannot make the runs folder {path}: {exc.strerror}") from None
    return made


class RunFolder:
    """The run folder ``path``, written by this process alone for as long as it holds it.

    Take one with :meth:`create` (a new run under a chosen name), :meth:`create_unique` (a new
    run under a default name) or :meth:`reopen` (an existing run, to resume it); give it up with
    :meth:`release` or by leaving a ``with`` block. ``created``: this process made the folder; a
    release that finds it empty (a run refused before it wrote anything) removes it again, and
    the parent folders this process made for it.
    """

    def __init__(self, path: Path, made: list[Path], new: bool = True):
        """Lock ``path`` (``made``: the folders made for it, deepest first); for a ``new`` run,
        refuse a folder that holds anything. Use the class methods rather than this."""
        self.path = Path(path)
        self.created = bool(made) and made[0] == self.path
        self._made = made
        self._fd: int | None = None
        try:
            self._fd = _lock(self.path)
            names = contents(self.path) if new else []
        except BaseException:
            self.release()
            raise
        if names:
            self.release()
            raise ValueError(_taken_message(self.path, names))

    @classmethod
    def create(cls, path) -> RunFolder:
        """A new run in ``path``: a folder made now, or an existing empty one. ``ValueError``
        (saying what the folder holds and what to do) when it holds anything, or another
        process writes it."""
        path = Path(path)
        for _ in range(100):
            made = _make_parents(path.parent)
            try:
                os.mkdir(path)
                made = [path] + made
            except FileExistsError:
                if not path.is_dir():
                    raise ValueError(f"{path} exists and is not a folder: train under another "
                                     f"--name") from None
            except OSError as exc:
                raise ValueError(f"cannot make the run folder {path}: {exc.strerror}") from None
            try:
                return cls(path, made)
            except FileNotFoundError:  # removed by a run that let it go empty: make it again
                continue
        raise ValueError(f"{path}: made and removed again repeatedly by other processes")

    @classmethod
    def create_unique(cls, parent, stem: str) -> RunFolder:
        """A new run in a folder made now under ``parent``: ``stem``, else the first of
        ``stem-2``, ``stem-3``, ... that does not exist yet (so parallel jobs that pick the same
        default name in the same second never share a folder)."""
        parent = Path(parent)
        made = _make_parents(parent)
        for i in range(1, 10_000):
            path = parent / (stem if i == 1 else f"{stem}-{i}")
            try:
                os.mkdir(path)
            except FileExistsError:
                continue
            except OSError as exc:
                raise ValueError(f"cannot make the run folder {path}: {exc.strerror}") from None
            try:
                return cls(path, [path] + made)
            except (ValueError, FileNotFoundError):  # a --name job took it first: the next name
                continue
        raise ValueError(f"{parent}: {stem} and 9,998 suffixed names are taken")

    @classmethod
    def reopen(cls, path) -> RunFolder:
        """The existing run folder ``path``, to continue its run. ``FileNotFoundError`` when it
        does not exist, ``ValueError`` when another process writes it."""
        path = Path(path)
        if not path.is_dir():
            raise FileNotFoundError(f"{path}: no such run folder")
        try:
            return cls(path, [], new=False)
        except FileNotFoundError:
            raise FileNotFoundError(f"{path}: no such run folder") from None

    def release(self) -> None:
        """Let the folder go (unlock it, remove its lock file); remove it, and the parents made
        for it, where they are empty. Releasing twice does nothing."""
        fd, self._fd = self._fd, None
        if fd is not None:
            try:
                os.unlink(self.path / LOCK_NAME)
            except FileNotFoundError:
                pass
            os.close(fd)
        # A folder this process made but did not get to lock is another process's now.
        made = self._made if fd is not None or not self.created else self._made[1:]
        self._made = []
        for folder in made:
            try:
                os.rmdir(folder)
            except OSError:  # not empty (or gone): the folders above it are not empty either
                break

    def __enter__(self) -> RunFolder:
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r}, held={self._fd is not None})"


# ----------------------------------------------------------------------------------------------
# What a resume reads, checked before it trains
# ----------------------------------------------------------------------------------------------

@dataclass
class RunFiles:
    """A run folder's checkpoints and split record, as :func:`verify_run` read them."""

    last: dict     # last.pt
    best: dict     # best.pt
    splits: dict   # splits.json


def _read_json_object(path: Path, what_to_do: str) -> dict:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{path}: missing; {what_to_do}") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"{path}: not valid JSON ({str(exc).splitlines()[0]}); "
                         f"{what_to_do}") from None
    if not isinstance(doc, dict):
        raise ValueError(f"{path}: holds a JSON {type(doc).__name__}, not an object; {what_to_do}")
    return doc


def first_difference(a, b, where: str = "") -> str | None:
    """Where two JSON values first differ (``"train.lr: 0.5 against 0.01"``), else ``None``."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in list(a) + [k for k in b if k not in a]:
            if key not in a or key not in b:
                return f"{where}{key}: only in {'the second' if key in b else 'the first'}"
            found = first_difference(a[key], b[key], f"{where}{key}.")
            if found:
                return found
        return None
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            found = first_difference(x, y, f"{where}{i}.")
            if found:
                return found
        return None
    if type(a) is type(b) and a == b:
        return None
    return f"{where.rstrip('.') or 'the whole'}: {_short(a)} against {_short(b)}"


def _short(value) -> str:
    text = repr(value)
    if len(text) < 60:
        return text
    return type(value).__name__ + (f" of {len(value)}" if hasattr(value, "__len__") else "")


def as_json(obj):
    """``obj`` as its JSON file holds it (tuples as lists, NaN as ``null``)."""
    return json.loads(json.dumps(finite_json(obj)))


def _without_location(config: dict) -> dict:
    """A run's configuration without what may differ between two sessions of one run: where
    its data lie (``--data-dir`` may change on a resume) and the backend an ``auto`` setting
    chose on this machine. ``config.json`` is written as a session starts, ``last.pt`` as its
    first epoch ends, so a session stopped between the two leaves them that far apart."""
    out, train, data, model = dict(config), config.get("train"), config.get("data"), config.get("model")
    if isinstance(train, dict):
        out["train"] = {k: v for k, v in train.items() if k != "data_dir"}
    if isinstance(data, dict) and isinstance(data.get("info"), dict):
        info = {k: v for k, v in data["info"].items() if k not in ("source", "files")}
        out["data"] = {**data, "info": info}
    if isinstance(model, dict):
        out["model"] = {k: v for k, v in model.items() if k != "backend"}
    return out


def verify_run(path) -> RunFiles:
    """Check every file of the run folder ``path`` that a resume reads, before it trains:
    ``last.pt`` and ``best.pt`` (hashes, entries, ``best.pt`` holding the epoch ``last.pt`` names
    as the best), ``config.json`` (the configuration ``last.pt`` records), ``splits.json`` and
    ``env.json`` (JSON objects; ``env.json`` may be absent). Raises ``ValueError`` naming the
    file, what is wrong and what to do; ``FileNotFoundError`` if ``path`` is not a folder. The
    weights and splits are held against the model and data the run builds by the caller
    (:func:`check_weights`, :attr:`RunFiles.splits`)."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such run folder")
    names = contents(path)
    if "last.pt" not in names:
        if "config.json" in names:
            raise ValueError(no_checkpoint_message(path))
        raise ValueError(f"{path} is not a run folder (it holds neither last.pt nor config.json)")
    last = load_checkpoint(path / "last.pt")
    check_entries(last, path / "last.pt")
    epoch, best_epoch = last["epoch"], last["best"]["epoch"]
    if best_epoch == epoch:
        fix = ("copy last.pt and last.pt.sha256 over best.pt and best.pt.sha256 (its best epoch "
               "is its last)")
    else:
        fix = (f"put back the run's best.pt (epoch {best_epoch}) and its .sha256, or train the "
               f"run again under another --name")
    try:
        best = load_checkpoint(path / "best.pt")
        check_entries(best, path / "best.pt")
    except FileNotFoundError:
        raise ValueError(f"{path / 'best.pt'}: missing, so the run cannot be scored at its end: "
                         f"{fix}") from None
    except ValueError as exc:
        raise ValueError(f"{exc}; the run cannot be scored at its end: {fix}") from None
    if best["epoch"] != best_epoch:
        raise ValueError(f"{path / 'best.pt'}: holds epoch {best['epoch']}, but last.pt names epoch "
                         f"{best_epoch} as the best: the folder mixes two runs' files; {fix}")
    redo = "the folder's files do not belong together: train the run again under another --name"
    config = _read_json_object(path / "config.json", redo)
    try:
        recorded = as_json(last["config"])
    except (TypeError, ValueError) as exc:  # a tensor or another object where JSON values were
        raise ValueError(f"{path / 'last.pt'}: its configuration holds a value that is not plain "
                         f"data ({exc}): the checkpoint was edited") from None
    differ = first_difference(_without_location(config), _without_location(recorded))
    if differ:
        raise ValueError(f"{path / 'config.json'}: not the configuration last.pt records "
                         f"({differ}, config.json against last.pt): it was edited or is another "
                         f"run's; {redo}")
    splits = _read_json_object(path / "splits.json", redo)
    if (path / "env.json").exists():
        _read_json_object(path / "env.json", "delete it (it records the environment of each "
                                             "session and is written again)")
    return RunFiles(last, best, splits)


# ----------------------------------------------------------------------------------------------
# Environment
# ----------------------------------------------------------------------------------------------

def _git(*args: str) -> str | None:
    root = Path(__file__).resolve().parents[1]
    try:
        out = subprocess.run(["git", "-C", str(root), *args], check=False, capture_output=True,
                             text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _package_version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


def environment(device: torch.device, world_size: int = 1, backend: str | None = None) -> dict:
    """Versions, threads, device and host of this process: what ``env.json`` records."""
    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no") if commit else None
    env = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "qlam_tn": _package_version("qlam-tn"),
        "platform": platform.platform(),
        "hostname": socket.gethostname(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "device": str(device),
        "cuda": torch.version.cuda,
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "world_size": world_size,
        "distributed_backend": backend,
        "git_commit": commit,
        "git_dirty": None if status is None else bool(status),
        "argv": list(sys.argv),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    return env
