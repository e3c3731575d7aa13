"""Provenance of a run: file checksums, package version, git commit.

A result is only reproducible if one can tell which inputs and which code made it, so every
tracked run carries these as tags.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from functools import cache, lru_cache
from pathlib import Path

import minerflow

__all__ = ["git_commit", "provenance_tags", "sha256_file"]

_CHUNK = 1 << 20


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file's bytes, cached per (path, size, mtime) within a process."""
    resolved = Path(path).resolve()
    stat = resolved.stat()
    return _sha256_cached(str(resolved), stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=256)
def _sha256_cached(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@cache
def git_commit() -> str | None:
    """Commit of the git checkout minerflow is imported from; ``None`` for an installed copy."""
    package_dir = Path(minerflow.__file__).resolve().parent
    try:
        result = subprocess.run(
            ["git", "-C", str(package_dir), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    commit = result.stdout.strip()
    return commit if result.returncode == 0 and commit else None


def provenance_tags(
    input_file: str | os.PathLike[str] | None = None,
    event_file: str | os.PathLike[str] | None = None,
) -> dict[str, str]:
    """Tags naming the code (version, commit) and the input files (path and sha256)."""
    tags = {"minerflow.version": minerflow.__version__}
    commit = git_commit()
    if commit:
        tags["minerflow.git_commit"] = commit
    for role, path in (("input_file", input_file), ("event_file", event_file)):
        if path is not None:
            tags[f"minerflow.{role}"] = str(Path(path).resolve())
            tags[f"minerflow.{role}_sha256"] = sha256_file(path)
    return tags
