"""Benchmark whether one large invalid batch stalls everyone else on ``mlpipe serve``.

Run by hand after ``make repro`` (not in CI): ``python bench/serving_isolation.py``. Starts the
server on a free 127.0.0.1 port over the workspace bundle twice, side by side in one run: as it
is (batches over ``INLINE_RECORDS`` checked and scored in worker threads, and past 1,000 records
in scoring processes; 422s capped) and with everything on the event loop (``INLINE_RECORDS``
raised past any batch: the server before the change). Against each it measures single-record
requests from 4 concurrent keep-alive clients, alone and while another client keeps posting
batches of 10,000 ``{}`` records, and prints p50/p99 of the single requests, the invalid batch's
answer time and size. The client runs on the same cores as the server.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from pathlib import Path

import httpx
import numpy as np
import server_process
from machine import describe

ROOT = Path(__file__).resolve().parents[1]
RECORD = json.loads((ROOT / "data" / "examples" / "record.json").read_text())
SERVE = (
    "import sys, mlpipe.serving.http.app as server; server.INLINE_RECORDS = int(sys.argv[1]);"
    " from mlpipe.cli.main import main; sys.exit(main(sys.argv[2:]))"
)


def start(inline: int) -> tuple[subprocess.Popen, str]:
    server, port = server_process.start(python=("-c", SERVE, str(inline)))
    return server, f"http://127.0.0.1:{port}"


async def singles(url: str, clients: int, per_client: int) -> list[float]:
    latencies: list[float] = []

    async def client() -> None:
        async with httpx.AsyncClient(base_url=url, timeout=60) as http:
            for _ in range(per_client):
                start = time.perf_counter()
                answer = await http.post("/predict", json=RECORD)
                latencies.append(time.perf_counter() - start)
                assert answer.status_code == 200, answer.text

    await asyncio.gather(*(client() for _ in range(clients)))
    return latencies


async def flood(url: str, stop: asyncio.Event, answers: list[tuple[float, int]]) -> None:
    body = json.dumps([{}] * 10_000).encode()
    async with httpx.AsyncClient(base_url=url, timeout=120) as http:
        while not stop.is_set():
            start = time.perf_counter()
            answer = await http.post("/predict", content=body)
            answers.append((time.perf_counter() - start, len(answer.content)))
            assert answer.status_code == 422


async def measure(url: str) -> dict[str, str]:
    await singles(url, 4, 50)  # warm up
    alone = await singles(url, 4, 250)
    stop, answers = asyncio.Event(), []
    flooding = asyncio.create_task(flood(url, stop, answers))
    await asyncio.sleep(0.5)
    busy = await singles(url, 4, 250)
    stop.set()
    await flooding

    def ms(values: list[float]) -> str:
        p50, p99 = np.percentile(np.array(values) * 1e3, [50, 99])
        return f"p50 {p50:6.1f} ms  p99 {p99:7.1f} ms"

    seconds = [s for s, _ in answers]
    return {
        "alone": ms(alone),
        "during": ms(busy),
        "batch": f"{len(answers)} answered, {np.median(seconds):.2f} s each, {answers[0][1] / 1024:.1f} KiB",
    }


def main() -> None:
    print(describe(), f"load {os.getloadavg()[0]:.2f}")
    for label, inline in (("off the loop (now)", 64), ("all on the event loop", 10**9)):
        server, url = start(inline)
        try:
            result = asyncio.run(measure(url))
        finally:
            server.terminate()
            server.wait(timeout=10)
        print(f"{label:24s} singles alone: {result['alone']}")
        print(f"{'':24s} singles during invalid batches: {result['during']}")
        print(f"{'':24s} invalid batch of 10,000: {result['batch']}")
    print(f"load {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
