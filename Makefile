# Two commands do everything on a fresh machine: `make demo` and `make test`.
# Both create .venv, install torch (the CPU build, see README) and the project into it.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
WORKDIR ?= work

.PHONY: demo test check format install bench image clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@rm -f $(VENV)/.installed-*
	@touch $@

install: $(STAMP)

# The MadMiner-style LFI workflow on the toy simulator, then the k-fold MLModel example.
demo: $(STAMP)
	$(BIN)/minerflow demo --workdir $(WORKDIR)
	$(BIN)/minerflow ml demo --workdir $(WORKDIR)

check: $(STAMP)
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/ruff format --check src tests benchmarks examples

format: $(STAMP)
	$(BIN)/ruff check --fix src tests benchmarks examples
	$(BIN)/ruff format src tests benchmarks examples

test: check
	$(BIN)/python -m pytest -q --cov=minerflow --cov-report=term:skip-covered $(PYTEST_ARGS)

# Every side-by-side benchmark (MadMiner in its own environments; bench_slurm needs Slurm).
bench: $(STAMP)
	bash benchmarks/setup_madminer_env.sh
	bash benchmarks/setup_madminer_seed_env.sh
	for script in benchmarks/bench_*.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done

VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)

# Where a Docker engine exists: the step commands in a container (used by the REANA export).
image:
	docker build -t minerflow:$(VERSION) -t minerflow:latest .

clean:
	rm -rf $(VENV) $(WORKDIR) .pytest_cache .ruff_cache
