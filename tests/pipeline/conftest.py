"""A real S3 API server on 127.0.0.1 (moto in server mode) for the DVC remote, with dummy credentials."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@dataclass(frozen=True)
class S3:
    endpoint: str
    bucket: str

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1")


@pytest.fixture(scope="module")
def s3() -> Iterator[S3]:
    from moto.server import ThreadedMotoServer

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    saved = {k: os.environ.get(k) for k in CREDENTIALS}
    os.environ.update(CREDENTIALS)  # the environment is the only place credentials come from
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    store = S3(f"http://127.0.0.1:{port}", "mlpipe-test")
    store.client().create_bucket(Bucket=store.bucket)
    try:
        yield store
    finally:
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="session")
def built_project(tmp_path_factory) -> tuple[Path, str]:
    """The tiny project built once for the whole run (all workers), and its first repro's output."""
    from tests.pipeline.repo import built_project

    base = tmp_path_factory.getbasetemp()
    return built_project(base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base)
