# minerflow in a container: the step commands (sample, train, evaluate, plot, run, ...) on CPU
# torch. Build: `make image` (docker build -t minerflow:<version> .). Run a step:
#   docker run --rm -v "$PWD:/work" minerflow:0.1.0 sample --data-file data.h5 --output-dir w
# The yadage workflow of `minerflow export reana` runs its scripts in this image.
FROM python:3.11-slim

ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MPLBACKEND=Agg

# the CPU build of torch first (the default wheel pulls several GB of CUDA libraries)
RUN pip install --index-url "${TORCH_INDEX}" "torch==${TORCH_VERSION}"

WORKDIR /opt/minerflow
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install .

# `docker run IMAGE sample ...` runs `minerflow sample ...`; a program name as the first
# argument (sh, bash, python: how workflow engines call images) runs that program instead
RUN printf '%s\n' '#!/bin/sh' \
    'case "$(command -v "${1:-}" 2>/dev/null)" in /*) exec "$@" ;; esac' \
    'exec minerflow "$@"' > /usr/local/bin/minerflow-entrypoint \
    && chmod 755 /usr/local/bin/minerflow-entrypoint

# root, like most workflow images: mounted work dirs stay writable (docker run --user to change)
WORKDIR /work
ENTRYPOINT ["minerflow-entrypoint"]
CMD ["--help"]
