# The two commands of the README: `make repro` (set up + run the pipeline) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
export PATH := $(BIN):$(PATH)

.PHONY: setup repro test test-fast lint bench

setup: $(VENV)/.installed

# Pinned: constraints.txt fixes every transitive version, including the boto3/botocore pair that
# aiobotocore (via dvc-s3) accepts.
$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $@

repro: setup
	dvc repro --all-pipelines

# Two pytest workers, one test module each at a time (module fixtures), modules in a random order
# (the seed is in pytest's header); one OpenMP thread per worker, so two workers never fight over
# two cores (two gradient-boosting fits took 195 s oversubscribed against 3 s).
PYTEST := OMP_NUM_THREADS=1 python -m pytest -n 2 --dist loadfile

lint: setup
	ruff check src tests bench
	ruff format --check src tests bench

# Unit tests on tiny frames, the checks of dvc.yaml and the layout, and the serving tests (a real
# server on loopback, over a bundle of a tiny network fitted once per worker in seconds): no
# pipeline run, no model training test.
test-fast: lint
	$(PYTEST) tests/unit tests/test_dvc_yaml.py tests/serving

test: lint
	$(PYTEST)

bench: setup
	python bench/pipeline_speed.py
