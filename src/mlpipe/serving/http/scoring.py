"""Scoring a request's records on its arms, in the server's process or in a scoring process.

:func:`score_records` is the one scoring path: each arm's rows through its predictor, every answer
naming the model, version and arm, a schema problem as a 422. The server calls it in its event loop
(small batches), in a worker thread, or, with scoring processes, through :func:`score_body` in a
process of a pool: there a batch's Python checks do not hold the server's GIL, so a large invalid
batch cannot slow the small requests beside it. A scoring process loads each bundle once (verified,
against the trusted key if one is given) and is told the version to use with every batch: a
folder that holds another version by then (a checkout under way) is refused with
:class:`~mlpipe.serving.predictor.StaleBundle` (:func:`~mlpipe.serving.predictor.shared`), and the server
scores that
batch in a thread on the model it already has. :func:`score_together` scores several small
requests in one call per model (the server's micro-batching, :mod:`mlpipe.serving.http.batching`).
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from mlpipe.serving.http.bodies import Problem, field_problems
from mlpipe.serving.predictor import Predictor, RecordError, shared


def score_records(
    records: list[Any], groups: Mapping[str, list[int]], arms: Mapping[str, Predictor]
) -> list[dict[str, Any]]:
    """Each record's answer; ``groups`` maps each arm to the rows it answers.

    Raises:
        Problem: 422 listing the records' field problems (rows counted in the whole batch).
    """
    results: list[dict[str, Any]] = [{}] * len(records)
    for arm, rows in groups.items():
        predictor = arms[arm]
        try:
            answers = predictor.predict_records([records[i] for i in rows]).answers()
        except RecordError as exc:
            raise field_problems(exc.errors, rows) from None
        tags = labels(predictor, arm)
        for i, answer in zip(rows, answers, strict=True):
            results[i] = answer | tags
    return results


Request = tuple[list[Any], Mapping[str, list[int]], Mapping[str, Predictor]]  # records, groups, arms


def score_together(requests: Sequence[Request]) -> list[list[dict[str, Any]] | Problem]:
    """:func:`score_records` for several requests at once, with one predictor call per model for
    all of them (micro-batching: a call's fixed cost is most of a single record's). Each request
    gets its results or its own 422: if any record is refused, each request is scored alone, so a
    bad record never fails its neighbours and its rows are counted in its own request.
    """
    if len(requests) > 1:
        together: dict[int, tuple[Predictor, list[tuple[int, str, int]]]] = {}
        for n, (_, groups, arms) in enumerate(requests):
            for arm, rows in groups.items():
                predictor = arms[arm]
                together.setdefault(id(predictor), (predictor, []))[1].extend((n, arm, i) for i in rows)
        results: list[list[dict[str, Any]]] = [[{}] * len(records) for records, _, _ in requests]
        try:
            for predictor, places in together.values():
                prediction = predictor.predict_records([requests[n][0][i] for n, _, i in places])
                tags = {arm: labels(predictor, arm) for arm in {arm for _, arm, _ in places}}
                for (n, arm, i), answer in zip(places, prediction.answers(), strict=True):
                    results[n][i] = answer | tags[arm]
            return list(results)
        except RecordError:
            pass  # scored alone below, each with its own problems
    alone: list[list[dict[str, Any]] | Problem] = []
    for request in requests:
        try:
            alone.append(score_records(*request))
        except Problem as problem:
            alone.append(problem)
    return alone


def labels(predictor: Predictor, arm: str) -> dict[str, Any]:
    """What every answer of an arm adds: the model, version and arm that made it."""
    return {"model": predictor.name, "version": predictor.version, "arm": arm}


def score_body(
    body: bytes,
    groups: dict[str, list[int]],
    bundles: dict[str, tuple[str, str]],
    threads: int | None,
    trusted_key: bytes | None,
) -> tuple[str, Any]:
    """:func:`score_records` in a scoring process, on the request body as it came (parsing it again
    costs less than sending the records). ``bundles`` maps each arm to its folder and version.

    Returns:
        ``("scored", results)``, or ``("refused", (detail, extra, field counts))`` for a 422.
    """
    payload = orjson.loads(body)
    records = [payload] if isinstance(payload, dict) else payload
    arms = {arm: shared(folder, version, threads, trusted_key) for arm, (folder, version) in bundles.items()}
    try:
        return "scored", score_records(records, groups, arms)
    except Problem as problem:
        return "refused", (problem.detail, problem.extra, Counter(problem.fields))


def follow_parent(parent: int) -> None:
    """A scoring process's initializer: exit when the server is gone (even killed with SIGKILL, when
    the pool cannot say so), checked each second."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1)
        os._exit(0)

    threading.Thread(target=watch, name="follow-parent", daemon=True).start()


def warm(bundles: dict[str, tuple[str, str]], threads: int | None, trusted_key: bytes | None) -> None:
    """Load the bundles in a scoring process ahead of its first batch."""
    for folder, version in bundles.values():
        shared(folder, version, threads, trusted_key)
