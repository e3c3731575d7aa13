"""Sandboxes: the environment a model's ``train``/``evaluate`` run in.

``MLModel.sandbox(task)`` returns ``None`` (or ``"current"``) for the environment minerflow
runs in, or ``"venv::path/to/requirements.txt"`` for a virtual environment described by a
pip requirements file whose first line is ``# version N``. The environment is created on
first use under a cache directory and rebuilt when the version line *or* the file content
changes (columnflow rebuilds only on a hand-bumped version). minerflow itself is importable
inside (a ``.pth`` file points at its source), its dependencies are not unless the file
lists them or has a line ``# minerflow: inherit`` (then the current environment's packages
are visible behind the venv's own).

Creation is serialised by a lock file, and the stamp that marks an environment complete is
written last, so an interrupted or failed install is rebuilt next time, never used.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import venv
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from minerflow.errors import InputError, MinerflowError
from minerflow.io.locks import file_lock

__all__ = [
    "SANDBOX_ENV_VAR",
    "Sandbox",
    "active_sandbox",
    "ensure_venv",
    "resolve_sandbox",
    "run_in_sandbox",
]

SANDBOX_ENV_VAR = "MINERFLOW_SANDBOX"
_STAMP = ".minerflow-sandbox.json"
_VERSION_LINE = re.compile(r"#\s*version\s+(\S+)\s*$")


@dataclass(frozen=True)
class Sandbox:
    """A resolved sandbox: the current environment (``requirements is None``) or a venv."""

    key: str
    requirements: Path | None = None

    @property
    def is_current(self) -> bool:
        """Whether this is the environment minerflow already runs in."""
        return self.requirements is None

    def venv_dir(self, cache_dir: str | os.PathLike[str]) -> Path:
        """Where the venv lives: ``<cache>/<file stem>_<hash of the file's path>``."""
        if self.requirements is None:
            return Path(sys.prefix)
        tag = hashlib.sha256(str(self.requirements).encode()).hexdigest()[:8]
        return Path(cache_dir) / f"{self.requirements.stem}_{tag}"


def resolve_sandbox(spec: str | None, base_dir: str | os.PathLike[str] | None = None) -> Sandbox:
    """Turn a model's ``sandbox()`` value into a :class:`Sandbox`.

    Accepted: ``None``, ``""``, ``"current"`` and ``"venv::<requirements.txt>"`` (a relative
    path is relative to ``base_dir``, default the working directory).
    """
    if spec in (None, "", "current"):
        return Sandbox("current")
    kind, sep, target = str(spec).partition("::")
    if not sep or kind != "venv" or not target:
        raise InputError("sandbox", str(spec), "None, 'current' or 'venv::<requirements file>'")
    path = Path(os.path.expandvars(target)).expanduser()
    if not path.is_absolute():
        path = Path(base_dir or Path.cwd()) / path
    path = path.resolve()
    if not path.is_file():
        raise InputError(path, "sandbox", "an existing pip requirements file")
    _version(path)
    return Sandbox(str(spec), path)


def _version(requirements: Path) -> str:
    first = requirements.read_text().splitlines()[:1]
    match = _VERSION_LINE.match(first[0].strip()) if first else None
    if match is None:
        raise InputError(requirements, "line 1", "'# version N' as the first line")
    return match.group(1)


def _stamp(requirements: Path) -> dict[str, str]:
    content = requirements.read_bytes()
    return {
        "version": _version(requirements),
        "sha256": hashlib.sha256(content).hexdigest(),
        "requirements": str(requirements),
        "python": sys.version.split()[0],
    }


def _site_packages(venv_dir: Path) -> Path:
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    return venv_dir / "lib" / version / "site-packages"


def _python(venv_dir: Path) -> Path:
    return venv_dir / "bin" / "python"


def _build(requirements: Path, venv_dir: Path) -> None:
    if venv_dir.exists():
        shutil.rmtree(venv_dir)
    venv.EnvBuilder(with_pip=False, symlinks=True, clear=True).create(venv_dir)
    text = requirements.read_text()
    paths = [str(Path(__file__).resolve().parents[2])]  # the directory holding `minerflow`
    if re.search(r"^#\s*minerflow:\s*inherit\s*$", text, flags=re.MULTILINE):
        paths += [sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
    site = _site_packages(venv_dir)
    (site / "_minerflow_sandbox.pth").write_text("\n".join(dict.fromkeys(paths)) + "\n")
    if any(line.strip() and not line.lstrip().startswith("#") for line in text.splitlines()):
        command = [
            sys.executable, "-m", "pip", "--python", str(_python(venv_dir)), "install",
            "--quiet", "--disable-pip-version-check", "-r", str(requirements),
        ]  # fmt: skip
        done = subprocess.run(command, cwd=requirements.parent, capture_output=True, text=True)
        if done.returncode != 0:
            shutil.rmtree(venv_dir, ignore_errors=True)
            lines = [line for line in done.stderr.splitlines() if line.strip()]
            reason = lines[-1].strip() if lines else f"exit code {done.returncode}"
            raise InputError(requirements, "pip install", f"installable requirements: {reason}")


def ensure_venv(requirements: str | os.PathLike[str], cache_dir: str | os.PathLike[str]) -> Path:
    """Create (or reuse) the venv for ``requirements`` under ``cache_dir``; return its path.

    Reused as long as its stamp matches the file's version line and content hash; otherwise
    deleted and rebuilt. A failing install raises ``InputError`` and leaves no environment.
    """
    sandbox = Sandbox("venv", Path(requirements).resolve())
    assert sandbox.requirements is not None
    venv_dir = sandbox.venv_dir(cache_dir)
    wanted = _stamp(sandbox.requirements)
    with file_lock(venv_dir.with_name(venv_dir.name + ".lock")):
        stamp = venv_dir / _STAMP
        if stamp.is_file() and json.loads(stamp.read_text()) == wanted:
            return venv_dir
        _build(sandbox.requirements, venv_dir)
        stamp.write_text(json.dumps(wanted, indent=2) + "\n")
    return venv_dir


def active_sandbox() -> str | None:
    """The sandbox key this process runs in (set by :func:`run_in_sandbox`), if any."""
    return os.environ.get(SANDBOX_ENV_VAR) or None


def run_in_sandbox(
    sandbox: Sandbox,
    argv: Sequence[str],
    cache_dir: str | os.PathLike[str],
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` inside the sandbox (``"python"`` as ``argv[0]`` means its interpreter).

    The child sees ``MINERFLOW_SANDBOX=<key>`` so a task re-run inside does not sandbox
    again. With ``check`` a non-zero exit raises ``MinerflowError`` with the last stderr line.
    """
    environ = dict(os.environ if env is None else env)
    if sandbox.is_current:
        python = Path(sys.executable)
    else:
        venv_dir = ensure_venv(sandbox.requirements, cache_dir)  # type: ignore[arg-type]
        python = _python(venv_dir)
        environ["VIRTUAL_ENV"] = str(venv_dir)
        environ["PATH"] = f"{venv_dir / 'bin'}{os.pathsep}{environ.get('PATH', '')}"
        for name in ("PYTHONHOME", "PYTHONPATH"):
            environ.pop(name, None)
    environ[SANDBOX_ENV_VAR] = sandbox.key
    command = [str(python), *argv[1:]] if argv and argv[0] == "python" else list(argv)
    done = subprocess.run(command, env=environ, cwd=cwd, capture_output=True, text=True)
    if check and done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        last = lines[-1].strip() if lines else "no output"
        raise MinerflowError(f"sandbox {sandbox.key}: command failed ({done.returncode}): {last}")
    return done
