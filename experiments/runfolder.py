"""What a run folder is made of: atomic writes, verified checkpoints, RNG states, environment.

A run folder (``RUNS_DIR/NAME/``) holds::

    config.json        resolved configuration (training, model, data)
    splits.json        the carved validation indices (and built-in test indices)
    env.json           versions, threads, device, host, git commit
    metrics.json/.csv  one row per epoch; best epoch; test score
    curves.png         learning curves
    last.pt  last.pt.sha256     every epoch
    best.pt  best.pt.sha256     the epoch with the best validation accuracy

Every file is written to a temporary file in the same folder and moved into place with
``os.replace``, so a reader (or a resumed run) never sees half a file. A checkpoint is a dict
of tensors and plain Python values (no objects), loaded with ``torch.load(weights_only=True)``;
its SHA-256 sits in a ``sha256sum``-compatible sidecar and is checked before the bytes are
parsed, so a modified or truncated checkpoint raises a ``ValueError`` naming the file.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import platform
import random
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

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


def atomic_write_json(path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, allow_nan=True) + "\n")


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
