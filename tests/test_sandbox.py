"""Sandboxes: venvs from a versioned requirements file, created once, rebuilt on change."""

from __future__ import annotations

import base64
import hashlib
import zipfile
from pathlib import Path

import pytest

from minerflow.errors import InputError, MinerflowError
from minerflow.ml.sandbox import ensure_venv, resolve_sandbox, run_in_sandbox

PROBE = "import sys, os, minerflow; print(sys.prefix); print(os.environ['MINERFLOW_SANDBOX'])"


def _wheel(directory: Path) -> Path:
    """A minimal pure-Python wheel (tinypkg 0.1), built by hand so no network is needed."""
    files = {
        "tinypkg/__init__.py": b"ANSWER = 42\n",
        "tinypkg-0.1.dist-info/METADATA": b"Metadata-Version: 2.1\nName: tinypkg\nVersion: 0.1\n",
        "tinypkg-0.1.dist-info/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: hand\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    records = []
    for name, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        records.append(f"{name},sha256={digest},{len(data)}")
    records.append("tinypkg-0.1.dist-info/RECORD,,")
    path = directory / "tinypkg-0.1-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
        archive.writestr("tinypkg-0.1.dist-info/RECORD", "\n".join(records) + "\n")
    return path


def test_current_environment() -> None:
    sandbox = resolve_sandbox(None)
    assert sandbox.is_current and resolve_sandbox("current").is_current
    done = run_in_sandbox(sandbox, ["python", "-c", PROBE], cache_dir="unused")
    assert done.stdout.split()[1] == "current"


def test_venv_is_created_reused_and_rebuilt(tmp_path: Path) -> None:
    requirements = tmp_path / "ml_empty.txt"
    requirements.write_text("# version 1\n")
    cache = tmp_path / "cache"
    sandbox = resolve_sandbox("venv::ml_empty.txt", base_dir=tmp_path)
    done = run_in_sandbox(sandbox, ["python", "-c", PROBE], cache)
    prefix, key = done.stdout.split()
    venv_dir = sandbox.venv_dir(cache)
    assert Path(prefix) == venv_dir and key == "venv::ml_empty.txt"
    # isolated: the packages of the environment running the tests are not visible
    hidden = run_in_sandbox(sandbox, ["python", "-c", "import numpy"], cache, check=False)
    assert hidden.returncode != 0 and "No module named 'numpy'" in hidden.stderr
    marker = venv_dir / "marker"
    marker.write_text("kept while the requirements stay the same")
    assert ensure_venv(requirements, cache) == venv_dir and marker.exists()
    requirements.write_text("# version 1\n# a changed comment changes the content hash\n")
    ensure_venv(requirements, cache)
    assert not marker.exists()
    marker.write_text("x")
    requirements.write_text("# version 2\n# a changed comment changes the content hash\n")
    ensure_venv(requirements, cache)
    assert not marker.exists()


def test_venv_with_a_local_package_and_inherited_packages(tmp_path: Path) -> None:
    _wheel(tmp_path)
    requirements = tmp_path / "tiny.txt"
    requirements.write_text("# version 1\n# minerflow: inherit\n./tinypkg-0.1-py3-none-any.whl\n")
    sandbox = resolve_sandbox(f"venv::{requirements}")
    code = "import tinypkg, numpy; print(tinypkg.ANSWER, tinypkg.__file__)"
    answer, where = run_in_sandbox(
        sandbox, ["python", "-c", code], tmp_path / "cache"
    ).stdout.split()
    assert answer == "42" and where.startswith(str(sandbox.venv_dir(tmp_path / "cache")))


def test_bad_requirements(tmp_path: Path) -> None:
    no_version = tmp_path / "req.txt"
    no_version.write_text("numpy\n")
    with pytest.raises(InputError, match=r"req\.txt: line 1: expected '# version N'"):
        resolve_sandbox(f"venv::{no_version}")
    with pytest.raises(InputError, match="expected None, 'current' or 'venv::"):
        resolve_sandbox("bash::setup.sh")
    with pytest.raises(InputError, match="expected an existing pip requirements file"):
        resolve_sandbox("venv::nope.txt", base_dir=tmp_path)
    failing = tmp_path / "failing.txt"
    failing.write_text("# version 1\n./no-such-package-0.1-py3-none-any.whl\n")
    sandbox = resolve_sandbox(f"venv::{failing}")
    with pytest.raises(InputError) as err:
        ensure_venv(failing, tmp_path / "cache")
    assert str(err.value).startswith(f"{failing}: pip install: expected installable requirements")
    assert not sandbox.venv_dir(tmp_path / "cache").exists()
    ok = tmp_path / "ok.txt"
    ok.write_text("# version 1\n")
    with pytest.raises(MinerflowError, match=r"command failed \(3\)"):
        run_in_sandbox(
            resolve_sandbox(f"venv::{ok}"), ["python", "-c", "raise SystemExit(3)"], tmp_path / "c"
        )
