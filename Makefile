# The two commands of the README: `make repro` (set up + run the pipeline) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
export PATH := $(BIN):$(PATH)

.PHONY: setup repro test lint bench

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

test: setup
	ruff check src tests bench
	ruff format --check src tests bench
	python -m pytest -n 2 --dist loadfile  # two workers, one test module each at a time (module fixtures)

bench: setup
	python bench/pipeline_speed.py
