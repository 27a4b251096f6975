"""The distribution installs its sub-packages under ``qlam_tn`` (package-dir mapping).

Builds the wheel and imports it from outside the repository, where the local ``qlam_tn/``
folder cannot shadow the installed one.
"""
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_contains_mapped_subpackages_and_imports(tmp_path):
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                          "-w", str(tmp_path), str(ROOT)], capture_output=True, text=True)
    if out.returncode != 0 and "No module named" in out.stderr and "setuptools" in out.stderr:
        pytest.skip("setuptools is not installed in this environment")
    assert out.returncode == 0, out.stderr
    wheel = next(tmp_path.glob("qlam_tn-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for sub in ("qlam_tn/contraction/__init__.py", "qlam_tn/models/__init__.py", "qlam_tn/experiments/__init__.py",
                "qlam_tn/mps.py"):
        assert sub in names, sub
    assert not any(n.startswith(("models/", "contraction/", "experiments/")) for n in names)
    target = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(target)
    code = ("import qlam_tn, qlam_tn.models, qlam_tn.contraction, qlam_tn.experiments;"
            "print(qlam_tn.__file__)")
    env = {**os.environ, "PYTHONPATH": str(target)}
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert str(target) in run.stdout
