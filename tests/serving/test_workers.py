"""Throughput features of ``mlpipe serve``: micro-batching of small requests (the Batcher, on an event
loop) and ``--workers N`` (the real server, N uvicorn workers on one port)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import psutil
import pytest
from tests.serving.bundles import another_version
from tests.serving.test_server import sample, samples, serving

from mlpipe.serving.http.batching import Batcher
from mlpipe.serving.http.bodies import Problem
from mlpipe.serving.predictor import Predictor


@pytest.fixture
def counted(built: Path, monkeypatch) -> tuple[Predictor, list[int]]:
    """The bundle's predictor, counting the records of each call it scores."""
    predictor = Predictor(built / "bundle").load()
    calls: list[int] = []
    original = predictor.predict_records

    def predict_records(records):
        calls.append(len(records))
        return original(records)

    monkeypatch.setattr(predictor, "predict_records", predict_records)
    return predictor, calls


def gathered(batcher: Batcher, requests: list, spacing: float = 0.0) -> list:
    """Each request's result (or Problem) from ``batcher``, the requests sent ``spacing`` s apart."""

    async def send(i: int, request):
        await asyncio.sleep(i * spacing) if spacing else None
        return await batcher.score(request)

    async def main():
        return await asyncio.gather(*(send(i, r) for i, r in enumerate(requests)), return_exceptions=True)

    return asyncio.run(main())


def one_arm(records: list, predictor: Predictor) -> tuple:
    return records, {"champion": list(range(len(records)))}, {"champion": predictor}


def test_requests_ready_together_are_scored_in_one_call_with_the_answers_they_get_alone(counted, record):
    predictor, calls = counted
    first, second = [record, {**record, "age": 30}], [{**record, "age": 20}]
    batcher = Batcher(max_rows=256)
    results = gathered(batcher, [one_arm(first, predictor), one_arm(second, predictor)])
    assert (batcher.batches, batcher.requests, calls) == (1, 2, [3])  # one model call for both
    alone = [v for r in (first, second) for v in Predictor(predictor.folder).predict_records(r).values]
    assert [a["prediction"] for r in results for a in r] == pytest.approx(alone, abs=1e-12)
    assert {a["arm"] for r in results for a in r} == {"champion"}
    assert {a["version"] for r in results for a in r} == {predictor.version}


def test_a_bad_request_in_a_batch_gets_its_own_422_and_its_neighbours_their_answers(counted, record):
    predictor, calls = counted
    bad = [record, {**record, "age": 99}]  # row 1 out of range
    batcher = Batcher(max_rows=256)
    good_result, problem = gathered(batcher, [one_arm([record], predictor), one_arm(bad, predictor)])
    assert isinstance(problem, Problem) and problem.status == 422
    assert [(p["row"], p["field"]) for p in problem.detail] == [(1, "age")]  # counted in its own request
    assert good_result[0]["prediction"] == pytest.approx(predictor.predict_one(record), abs=1e-12)
    assert calls[0] == 3 and batcher.batches == 1  # tried together, then each alone


def test_a_full_batch_is_flushed_at_once_and_a_wait_gathers_later_requests(counted, record):
    predictor, calls = counted
    full = Batcher(max_rows=2)
    gathered(full, [one_arm([record, record], predictor), one_arm([record, record], predictor)])
    assert full.batches == 2 and calls == [2, 2]
    calls.clear()
    waiting = Batcher(max_rows=256, wait=0.2)  # the second arrives 50 ms after the first
    gathered(waiting, [one_arm([record], predictor), one_arm([record], predictor)], spacing=0.05)
    assert waiting.batches == 1 and calls == [2]
    calls.clear()
    at_once = Batcher(max_rows=256)  # no wait: the second, 50 ms later, is a batch of its own
    gathered(at_once, [one_arm([record], predictor), one_arm([record], predictor)], spacing=0.05)
    assert at_once.batches == 2 and calls == [1, 1]


def workers_of(client: httpx.Client) -> list[psutil.Process]:
    return [p for p in psutil.Process(client.process.pid).children() if "spawn" in " ".join(p.cmdline())]


def exiting(process: psutil.Process) -> bool:
    """Whether ``process`` still runs (a zombie, or a reaped process, has exited)."""
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def versions_seen(url: str, connections: int = 12) -> set[str]:
    """The champion versions that ``connections`` new connections' /ready name (workers differ)."""
    seen = set()
    for _ in range(connections):
        with httpx.Client(base_url=url, timeout=10) as fresh:
            ready = fresh.get("/ready")
            seen.add(ready.json()["models"]["champion"]["version"] if ready.status_code == 200 else "loading")
    return seen


def test_workers_share_the_port_the_metrics_the_log_and_sighup(built: Path, tmp_path: Path, record: dict):
    """Two workers: concurrent clients are all answered and counted once across the workers, the
    log has one whole line per prediction, SIGHUP swaps every worker's version, and a killed worker
    is replaced while the other serves."""
    log = tmp_path / "predictions.jsonl"
    live = Path(shutil.copytree(built / "bundle", tmp_path / "live"))
    new = another_version(built / "bundle", tmp_path / "v2", shift=1.0)
    old_version, new_version = Predictor(live).version, Predictor(new).version
    args = ("--bundle", str(live), "--workers", "2", "--scoring-processes", "0", "--log", str(log))
    with serving(*args) as client:
        url = str(client.base_url)
        deadline = time.monotonic() + 30
        while versions_seen(url) != {old_version}:  # both workers loaded
            assert time.monotonic() < deadline
        assert len(workers_of(client)) == 2
        statuses: list[int] = []

        def send(n: int) -> None:
            with httpx.Client(base_url=url, timeout=10) as own:
                for i in range(n):
                    statuses.append(own.post("/predict", json=[record] * (1 + i % 3)).status_code)

        threads = [threading.Thread(target=send, args=(25,)) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert statuses == [200] * 150
        counts = samples(client)
        ok = sample("mlpipe_requests_total", arm="champion", version=old_version, status="200")
        assert counts[ok] == 150
        rows = 6 * sum(1 + i % 3 for i in range(25))
        assert counts[sample("mlpipe_rows_scored_total", arm="champion", version=old_version)] == rows
        lines = [json.loads(line) for line in log.read_text().splitlines()]
        assert len(lines) == rows and {line["version"] for line in lines} == {old_version}

        shutil.rmtree(live)
        shutil.copytree(new, live)
        client.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 30
        while versions_seen(url) != {new_version}:
            assert time.monotonic() < deadline, versions_seen(url)
            time.sleep(0.1)
        swapped = samples(client)[sample("mlpipe_bundle_reloads_total", arm="champion", result="swapped")]
        assert swapped == 2  # each worker swapped once
        answer = httpx.post(f"{url}/predict", json=record).json()
        assert answer["version"] == new_version
        assert answer["prediction"] == pytest.approx(Predictor(new).predict_one(record), abs=1e-12)

        killed = workers_of(client)[0]
        os.kill(killed.pid, signal.SIGKILL)
        # Until the kernel has closed the dead worker's listening socket (it exits, then waits to be
        # reaped), a new connection can still be queued on it and reset: wait for the exit first.
        deadline = time.monotonic() + 10
        while exiting(killed):
            assert time.monotonic() < deadline, "the killed worker did not exit"
            time.sleep(0.01)
        for _ in range(20):  # the other worker answers meanwhile
            assert httpx.post(f"{url}/predict", json=record).status_code == 200
        deadline = time.monotonic() + 30
        while killed.pid in {p.pid for p in workers_of(client)} or len(workers_of(client)) != 2:
            assert time.monotonic() < deadline, "the killed worker was not replaced"
            time.sleep(0.2)


def test_workers_on_a_port_in_use_stop_with_one_line(built: Path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        refused = subprocess.run(
            [sys.executable, "-m", "mlpipe.cli", "serve", "--bundle", str(built / "bundle")]
            + ["--port", str(port), "--workers", "2"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert refused.returncode == 1, refused.stderr
    assert refused.stderr.strip().splitlines() == [
        f"mlpipe: error: cannot listen on 127.0.0.1:{port}: Address already in use"
    ]
