#!/usr/bin/env bash
# Create benchmarks/.venv-madminer-seed: MadMiner 0.9.6 with numpy < 1.24 plus MLflow, the
# environment the seed workflow's scripts need (MadMiner's histogram modes call
# np.histogramdd(normed=...), which numpy 1.24 removed; the seed tracks its steps in MLflow),
# kept apart from minerflow and from benchmarks/.venv-madminer (numpy 2).
# Used by benchmarks/bench_workflow.py. Idempotent: a working environment is kept, and an
# existing one that lacks a package (e.g. mlflow, added later) is completed in place.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${MADMINER_SEED_VENV:-$HERE/.venv-madminer-seed}"
PYTHON="${PYTHON:-python3.11}"
CHECK="import madminer, matplotlib, mlflow, numpy, yaml; assert numpy.__version__ < '1.24', numpy.__version__"

if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "$CHECK" 2>/dev/null; then
    echo "madminer seed environment ready: $VENV"
    exit 0
fi

if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
    # Keep the environment out of git whatever the repository's ignore rules say.
    echo "*" > "$VENV/.gitignore"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
fi
# One resolution for everything (also when completing an existing environment), so nothing
# lifts numpy past 1.23 (1.23.5 has cp311 wheels). torch is pinned, as a bare requirement would
# pull the multi-GB CUDA build. mlflow is the full package (a SQLite store needs its SQLAlchemy
# side), pinned to the version in minerflow's .venv so both sides track with the same MLflow
# (3.17.2 accepts numpy 1.23; it is also the newest the package index here offers).
"$VENV/bin/python" -m pip install --quiet torch==2.13.0 'numpy<1.24' madminer==0.9.6 \
    matplotlib pyyaml mlflow==3.17.2
"$VENV/bin/python" -c "$CHECK; print('madminer seed environment ready:', '$VENV', numpy.__version__, mlflow.__version__)"
