"""The service's Prometheus metrics (``GET /metrics``), in a registry of its own per service.

- ``mlpipe_requests_total{arm, version, status}``: ``/predict`` requests; a batch split between the
  champion and the challenger counts once for each arm that answered part of it; a request refused
  before routing (400, 413, 503, a 422 for the whole body) has ``arm="none"`` and ``version="none"``.
- ``mlpipe_request_duration_seconds{arm}``: their latency, with the same labelling.
- ``mlpipe_rows_scored_total{arm, version}``: records answered.
- ``mlpipe_schema_rejections_total{field}``: field problems found in 422 answers (``(record)`` for a
  problem with the whole record), all of them, not only those listed in the response.
- ``mlpipe_bundle_info{arm, model, version, folder}``: the bundle each arm serves now.
- ``mlpipe_bundle_reloads_total{arm, result}``: reloads (SIGHUP, ``--watch``) that ``swapped``,
  found the version ``unchanged``, or were ``refused``.

Under ``mlpipe serve --workers N`` (:mod:`mlpipe.serving.http.workers`) the values are prometheus-client's
multiprocess ones, and ``/metrics``, whichever worker answers it, adds up every worker's counts;
``mlpipe_bundle_info`` is then 1 where any live worker serves the bundle, and 0 for one that a swap
retired everywhere.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, Histogram, generate_latest, multiprocess
from prometheus_client import Counter as PromCounter
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "ServiceMetrics"]

NONE = "none"
MULTIPROCESS = "PROMETHEUS_MULTIPROC_DIR"  # set for the workers by mlpipe.serving.http.workers
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
MAX_FIELD = 64  # longer field names are counted as "(other)": labels stay bounded


class ServiceMetrics:
    """What ``/metrics`` exports; one instance per service, so two services never share counts."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = PromCounter(
            "mlpipe_requests", "Predict requests", ["arm", "version", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "mlpipe_request_duration_seconds",
            "Predict request latency",
            ["arm"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.rows = PromCounter(
            "mlpipe_rows_scored", "Records answered", ["arm", "version"], registry=self.registry
        )
        self.rejections = PromCounter(
            "mlpipe_schema_rejections", "Field problems in 422 answers", ["field"], registry=self.registry
        )
        # An info metric as a gauge of 1, so a swapped-out version's series can be removed.
        self.bundles = Gauge(
            "mlpipe_bundle_info",
            "The bundle each arm serves",
            ["arm", "model", "version", "folder"],
            registry=self.registry,
            multiprocess_mode="livemax",  # with workers: 1 if any live worker serves it
        )
        self.reloads = PromCounter(
            "mlpipe_bundle_reloads", "Bundle reloads by result", ["arm", "result"], registry=self.registry
        )
        self._serving: dict[str, tuple[str, str, str]] = {}
        self._answered: dict[tuple[str, str, int], tuple[Any, Any, Any]] = {}

    def answered(self, arms: Counter[tuple[str, str]], status: int, seconds: float) -> None:
        """A request answered by the arms and versions in ``arms`` (rows each)."""
        for (arm, version), rows in arms.items():
            children = self._answered.get((arm, version, status))
            if children is None:  # looked up once per arm, version and status, not per request
                children = (
                    self.requests.labels(arm, version, str(status)),
                    self.rows.labels(arm, version),
                    self.latency.labels(arm),
                )
                self._answered[(arm, version, status)] = children
            requests, answered_rows, latency = children
            requests.inc()
            answered_rows.inc(rows)
            latency.observe(seconds)

    def refused(self, status: int, seconds: float, fields: Iterable[str | None] = ()) -> None:
        """A request refused before or while scoring, with the fields of its problems."""
        self.requests.labels(NONE, NONE, str(status)).inc()
        self.latency.labels(NONE).observe(seconds)
        for field, count in Counter(fields).items():
            name = "(record)" if field is None else field if len(field) <= MAX_FIELD else "(other)"
            self.rejections.labels(name).inc(count)

    def serving(self, arm: str, model: str, version: str, folder: str) -> None:
        """``arm`` serves this bundle now (replacing what it served)."""
        previous = self._serving.get(arm)
        if previous is not None:
            self.bundles.labels(arm, *previous).set(0)  # what other workers read (multiprocess)
            self.bundles.remove(arm, *previous)
        self._serving[arm] = (model, version, folder)
        self.bundles.labels(arm, model, version, folder).set(1)

    def reloaded(self, arm: str, result: str) -> None:
        self.reloads.labels(arm, result).inc()

    def exposition(self) -> bytes:
        if os.environ.get(MULTIPROCESS):  # every worker's values, not only this one's
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry)
        return generate_latest(self.registry)
