"""Shared fixtures: the project's params, and tiny demo data made by the real ``simulate`` code."""

from __future__ import annotations

import os
import random
import sqlite3
from pathlib import Path

import pandas as pd
import pytest
import yaml

from mlpipe import simulate, validate
from mlpipe.core.params import Params, parse_params

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def params_dict() -> dict:
    """The project's params.yaml as a plain mapping (copy before changing)."""
    return yaml.safe_load((ROOT / "params.yaml").read_text())


@pytest.fixture(scope="session")
def params(params_dict: dict) -> Params:
    return parse_params(params_dict)


@pytest.fixture(scope="session")
def demo_db(tmp_path_factory: pytest.TempPathFactory, params: Params) -> Path:
    """A small demo database: 1,500 sessions of 300 students."""
    path = tmp_path_factory.mktemp("db") / "study.db"
    small = params.simulate.model_copy(update={"n_sessions": 1500, "n_students": 300, "n_topics": 40})
    simulate.simulate(str(path), small, seed=7)
    return path


@pytest.fixture(scope="session")
def raw_frame(demo_db: Path, params: Params) -> pd.DataFrame:
    """The joined raw table, as ingest reads it."""
    with sqlite3.connect(demo_db) as con:
        frame = pd.read_sql_query(params.ingest.query, con)
    con.close()
    return frame


@pytest.fixture(scope="session")
def valid_frame(raw_frame: pd.DataFrame, params: Params) -> pd.DataFrame:
    valid, _, _ = validate.split_valid(raw_frame, params.validate)
    return valid


# Test modules run in a random order, each module's tests in file order (a pipeline module is a
# story told on one repository): so no module leans on another having run first. The seed is
# printed in the header; MLPIPE_TEST_SEED=N repeats an order.
# The controller draws it before starting any xdist worker, which inherits it: all collect alike.
os.environ.setdefault("MLPIPE_TEST_SEED", str(random.SystemRandom().randrange(10**6)))
SEED = int(os.environ["MLPIPE_TEST_SEED"])


def pytest_report_header(config: pytest.Config) -> str:
    return f"module order: shuffled with MLPIPE_TEST_SEED={SEED}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    modules: dict[str, list[pytest.Item]] = {}
    for item in items:
        modules.setdefault(item.nodeid.split("::")[0], []).append(item)
    order = sorted(modules)
    random.Random(SEED).shuffle(order)
    items[:] = [item for name in order for item in modules[name]]
