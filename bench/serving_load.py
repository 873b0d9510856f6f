"""Load benchmark of ``mlpipe serve`` with its own asyncio HTTP/1.1 client (no httpx: the client's
own cost is a few raw socket calls, so what is measured is the server).

Run by hand after ``make repro`` (not in CI): ``python bench/serving_load.py``. Starts the server on
a free 127.0.0.1 port over the workspace bundle and measures, in one run:

1. 10,000 single-record requests from 32 concurrent keep-alive connections: throughput, p50/p99,
   errors (any status but 200, or a dropped connection);
2. batches of 100 records from 8 connections: records/s, p50/p99, errors;
3. single requests from 8 connections while another connection keeps posting an invalid batch of
   10,000 records: the singles' p50/p99 and the invalid batch's answer time;

each against three servers, side by side in one run (``--rounds N`` alternates them N times): the
server as it was before micro-batching (``--before``, a git ref, run from a temporary worktree), and
today's, as it starts by default (micro-batching of the small requests that are ready together, a
plain route for ``/predict``) and with ``--workers 2``; then each one's ratio to the one before.

The records are rows of the test split, sent as JSON. The client runs on the same cores as the
server, as on the issue's machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import server_process
from machine import describe

ROOT = Path(__file__).resolve().parents[1]


class Connection:
    """One keep-alive HTTP/1.1 connection: POST a body, read the status and body."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, port: int) -> None:
        self.reader, self.writer, self.port = reader, writer, port

    @classmethod
    async def open(cls, port: int) -> Connection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer, port)

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        self.writer.write(head + body)
        status_line = await self.reader.readline()
        if not status_line:
            raise ConnectionError("the server closed the connection")
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        return int(status_line.split()[1]), await self.reader.readexactly(length)

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


async def load(port: int, bodies: list[bytes], connections: int, total: int) -> dict[str, float]:
    """``total`` requests spread over ``connections``, each sending one after another."""
    latencies: list[float] = []
    errors = 0
    counter = iter(range(total))

    async def client() -> None:
        nonlocal errors
        connection = await Connection.open(port)
        try:
            for i in counter:
                start = time.perf_counter()
                try:
                    status, _ = await connection.post("/predict", bodies[i % len(bodies)])
                except (ConnectionError, asyncio.IncompleteReadError):
                    errors += 1
                    connection = await Connection.open(port)
                    continue
                latencies.append(time.perf_counter() - start)
                errors += status != 200
        finally:
            await connection.close()

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(connections)))
    elapsed = time.perf_counter() - start
    p50, p99 = np.percentile(np.array(latencies) * 1e3, [50, 99])
    return {"requests/s": total / elapsed, "p50 ms": p50, "p99 ms": p99, "errors": errors, "seconds": elapsed}


async def during_invalid(port: int, bodies: list[bytes], connections: int, total: int) -> dict[str, float]:
    """Singles while one connection keeps posting an invalid batch of 10,000 records."""
    invalid = json.dumps([{}] * 10_000).encode()
    stop, answered = asyncio.Event(), []

    async def flood() -> None:
        connection = await Connection.open(port)
        while not stop.is_set():
            start = time.perf_counter()
            status, _ = await connection.post("/predict", invalid)
            answered.append(time.perf_counter() - start)
            assert status == 422, status
        await connection.close()

    flooding = asyncio.create_task(flood())
    await asyncio.sleep(0.5)
    result = await load(port, bodies, connections, total)
    stop.set()
    await flooding
    return {**result, "invalid batches": len(answered), "invalid batch s": float(np.median(answered))}


BEFORE = "43c40a9"  # the server before micro-batching, the plain /predict route and --workers


@contextlib.contextmanager
def checkout(ref: str) -> Iterator[Path]:
    """The project's ``src`` at ``ref``, in a temporary git worktree."""
    folder = Path(tempfile.mkdtemp(prefix="mlpipe-before-")) / "tree"
    subprocess.run(["git", "worktree", "add", "--detach", "-q", str(folder), ref], cwd=ROOT, check=True)
    try:
        yield folder / "src"
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(folder)], cwd=ROOT, check=True)


def configurations(before: Path, ref: str) -> dict[str, tuple[list[str], dict[str, str]]]:
    """Label -> (``mlpipe serve`` arguments, environment): today's code beside the one before."""
    return {
        f"before ({ref}): one process, each request scored alone": ([], {"PYTHONPATH": str(before)}),
        "now: one process, micro-batching (the default)": ([], {}),
        "now: --workers 2": (["--workers", "2"], {}),
    }


def measure(port: int, singles: list[bytes], batches: list[bytes], requests: int) -> tuple[float, float]:
    """Print the three loads' figures; return singles/s and batch records/s."""
    asyncio.run(load(port, singles, 32, 1000))  # warm up
    one = asyncio.run(load(port, singles, 32, requests))
    many = asyncio.run(load(port, batches, 8, 500))
    busy = asyncio.run(during_invalid(port, singles, 8, 2000))
    print(
        f"  singles, 32 connections: {one['requests/s']:,.0f} req/s, p50 {one['p50 ms']:.1f} ms,"
        f" p99 {one['p99 ms']:.1f} ms, {one['errors']:.0f} errors in {requests:,}"
    )
    print(
        f"  batches of 100, 8 connections: {many['requests/s'] * 100:,.0f} records/s,"
        f" p50 {many['p50 ms']:.1f} ms, p99 {many['p99 ms']:.1f} ms, {many['errors']:.0f} errors in 500"
    )
    print(
        f"  singles, 8 connections, during invalid batches of 10,000: p50 {busy['p50 ms']:.1f} ms,"
        f" p99 {busy['p99 ms']:.1f} ms, {busy['errors']:.0f} errors; {busy['invalid batches']:.0f}"
        f" invalid batches answered, {busy['invalid batch s']:.2f} s each"
    )
    return one["requests/s"], many["requests/s"] * 100


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=10_000, help="single-record requests")
    parser.add_argument(
        "--rounds", type=int, default=1, help="times each configuration is measured, alternating"
    )
    parser.add_argument("--before", default=BEFORE, help="the git ref to compare with (default: %(default)s)")
    args = parser.parse_args()
    test = pd.read_parquet(ROOT / "data" / "processed" / "test.parquet")
    records = json.loads(test.head(1000).to_json(orient="records", date_format="iso"))
    singles = [json.dumps(r).encode() for r in records]
    batches = [json.dumps(records[i : i + 100]).encode() for i in range(0, 1000, 100)]
    print(describe(), f"load {os.getloadavg()[0]:.2f}")
    with checkout(args.before) as before:
        for _ in range(args.rounds):
            figures = {}
            for label, (serve_args, env) in configurations(before, args.before).items():
                server, port = server_process.start(serve_args, env=env)
                print(label)
                try:
                    figures[label] = measure(port, singles, batches, args.requests)
                finally:
                    server.terminate()
                    server.wait(timeout=10)
            first = next(iter(figures.values()))
            for label, (one, many) in list(figures.items())[1:]:
                ratio = f"{one / first[0]:.2f}x the singles/s, {many / first[1]:.2f}x the records/s"
                print(f"{label}: {ratio} of before")
    print(f"load {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
