#!/usr/bin/env bash
# Create benchmarks/.venv-madminer: MadMiner 0.9.6 (and the torch it needs) in its own
# environment, so the comparison baseline never leaks into minerflow's dependencies.
# Idempotent: an existing environment that already imports madminer is kept.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${MADMINER_VENV:-$HERE/.venv-madminer}"
PYTHON="${PYTHON:-python3}"

if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "import madminer" 2>/dev/null; then
    echo "madminer environment ready: $VENV"
    exit 0
fi

"$PYTHON" -m venv "$VENV"
# Keep the environment out of git whatever the repository's ignore rules say (as Python 3.13's
# venv does by default).
echo "*" > "$VENV/.gitignore"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
# torch first and pinned: a bare requirement would pull the multi-GB CUDA build.
"$VENV/bin/python" -m pip install --quiet torch==2.13.0
"$VENV/bin/python" -m pip install --quiet madminer==0.9.6
"$VENV/bin/python" -c "import madminer; print('madminer environment ready:', '$VENV')"
