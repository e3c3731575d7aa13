#!/usr/bin/env bash
# Create benchmarks/.venv-madminer-seed: MadMiner 0.9.6 with numpy < 1.24, the environment the
# seed workflow's scripts need (MadMiner's histogram modes call np.histogramdd(normed=...), which
# numpy 1.24 removed), kept apart from minerflow and from benchmarks/.venv-madminer (numpy 2).
# Used by benchmarks/bench_workflow.py. Idempotent: a working environment is kept.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${MADMINER_SEED_VENV:-$HERE/.venv-madminer-seed}"
PYTHON="${PYTHON:-python3.11}"
CHECK="import madminer, matplotlib, numpy, yaml; assert numpy.__version__ < '1.24', numpy.__version__"

if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "$CHECK" 2>/dev/null; then
    echo "madminer seed environment ready: $VENV"
    exit 0
fi

"$PYTHON" -m venv "$VENV"
# Keep the environment out of git whatever the repository's ignore rules say.
echo "*" > "$VENV/.gitignore"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
# One resolution for everything, so nothing later lifts numpy past 1.23 (1.23.5 has cp311
# wheels); torch pinned, as a bare requirement would pull the multi-GB CUDA build.
"$VENV/bin/python" -m pip install --quiet torch==2.13.0 'numpy<1.24' madminer==0.9.6 matplotlib pyyaml
"$VENV/bin/python" -c "$CHECK; print('madminer seed environment ready:', '$VENV', numpy.__version__)"
