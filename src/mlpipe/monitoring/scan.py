"""One streamed pass over the prediction log: each chunk of lines is checked, joined with the
outcomes that have arrived (looked up by id in the source database, a chunk at a time) and
counted into per-day sums (:mod:`mlpipe.monitoring.live`) and drift sketches
(:mod:`mlpipe.bundle.reference`). Memory holds one chunk and one set of sums per day, whatever the log's
length.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import sqlalchemy

from mlpipe.bundle.reference import Reference, Sketch
from mlpipe.core import decisions
from mlpipe.core.errors import PipelineError
from mlpipe.monitoring.live import Sums, kind, losses

CHUNK_LINES = 20_000
IDS_PER_QUERY = 5_000  # under every database's limit of bound parameters


@dataclass(frozen=True)
class Served:
    """What the monitored bundle says about its predictions."""

    name: str
    version: str
    task: str
    target: str
    classes: list[str] | None
    inputs: list[str]
    reference: Reference
    test_metrics: dict[str, Any]
    threshold: float | None = None  # binary: the bundle's decision threshold


class Outcomes:
    """Outcomes by id, from any SQLAlchemy URL: ``query`` must return the id and target columns."""

    def __init__(self, url: sqlalchemy.URL, query: str, id_column: str, target: str) -> None:
        self.shown = url.render_as_string(hide_password=True)
        self.id_column, self.target = id_column, target
        try:
            self.engine = sqlalchemy.create_engine(url)
        except (sqlalchemy.exc.ArgumentError, ImportError) as exc:
            raise PipelineError(f"monitor.url {self.shown}: {exc}".splitlines()[0]) from None
        quoted = self.engine.dialect.identifier_preparer.quote(id_column)
        self.sql = sqlalchemy.text(f"SELECT * FROM ({query}) AS outcomes WHERE outcomes.{quoted} IN :ids")
        self.sql = self.sql.bindparams(sqlalchemy.bindparam("ids", expanding=True))
        self.probe = sqlalchemy.text(f"SELECT * FROM ({query}) AS outcomes WHERE 1 = 0")
        self.checked = False

    def lookup(self, ids: Sequence[Any]) -> dict[str, Any]:
        """str(id) -> outcome, for the ids that have one (not null).

        Raises:
            PipelineError: if the database cannot be read, or the query lacks the id or target column.
        """
        found: dict[str, Any] = {}
        try:
            with self.engine.connect() as con:
                if not self.checked:  # the columns, before a query that names one
                    self.check(list(con.execute(self.probe).keys()))
                for start in range(0, len(ids), IDS_PER_QUERY):
                    result = con.execute(self.sql, {"ids": list(ids[start : start + IDS_PER_QUERY])})
                    for row in result.mappings():
                        if row[self.target] is not None:
                            found[str(row[self.id_column])] = row[self.target]
        except sqlalchemy.exc.SQLAlchemyError as exc:
            detail = str(getattr(exc, "orig", None) or exc).splitlines()[0]
            raise PipelineError(f"cannot read outcomes from {self.shown}: {detail}") from None
        return found

    def check(self, columns: list[str]) -> None:
        for column, role in ((self.id_column, "id (monitor.id)"), (self.target, "target")):
            if column not in columns:
                raise PipelineError(
                    f"the outcomes query (monitor.outcomes) returns no column {column!r}, the {role};"
                    f" it returns: {', '.join(columns)}"
                )
        self.checked = True

    def close(self) -> None:
        self.engine.dispose()


@dataclass
class Day:
    """One day of the log: sums per (arm, version), input sketches, the served version's predictions."""

    sums: dict[tuple[str, str], Sums] = field(default_factory=dict)
    inputs: dict[str, Sketch] = field(default_factory=dict)
    prediction: Sketch | None = None


@dataclass
class Scan:
    """The whole log, day by day."""

    days: dict[str, Day] = field(default_factory=dict)
    lines: int = 0
    digest: str = ""


@dataclass(frozen=True)
class Line:
    number: int
    day: str
    arm: str
    version: str
    record: dict[str, Any] | None
    output: Any  # the number, or the probabilities by class name


def parse_line(raw: bytes, number: int, source: str, served: Served, days: dict[str, str]) -> Line:
    """One log line, checked.

    Raises:
        PipelineError: naming the file and line, for a line that is not a prediction of this model.
    """
    where = f"{source}: line {number}"
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise PipelineError(f"{where}: not a JSON object") from None
    if not isinstance(data, dict):
        raise PipelineError(f"{where}: not a JSON object")
    if data.get("model") != served.name:
        raise PipelineError(
            f"{where}: a prediction of model {str(data.get('model'))[:80]!r}, not {served.name!r}"
            " (a log of another model?)"
        )
    stamp = data.get("time")
    day = days.get(stamp[:10]) if isinstance(stamp, str) else None
    if day is None:
        try:
            day = dt.date.fromisoformat(stamp[:10]).isoformat()  # type: ignore[index]
        except (TypeError, ValueError):
            raise PipelineError(f"{where}: 'time' is not an ISO date-time: {str(stamp)[:40]!r}") from None
        days[stamp[:10]] = day  # type: ignore[index]
    output = data.get("prediction") if served.classes is None else data.get("probabilities")
    good = isinstance(output, (int, float)) if served.classes is None else isinstance(output, dict)
    if not good or not isinstance(data.get("version"), str) or not isinstance(data.get("arm"), str):
        raise PipelineError(f"{where}: lacks its prediction, version or arm")
    record = data.get("record") if isinstance(data.get("record"), dict) else None
    return Line(number, day, data["arm"], data["version"], record, output)


def read_lines(paths: Sequence[Path], digest: Any) -> Iterator[tuple[str, int, bytes]]:
    """(file, line number, bytes) of every non-empty line, feeding ``digest`` on the way."""
    for path in paths:
        try:
            handle = path.open("rb")
        except OSError as exc:
            raise PipelineError(f"{path}: cannot read the prediction log: {exc.strerror}") from None
        with handle:
            for number, raw in enumerate(handle, start=1):
                digest.update(raw)
                if raw.strip():
                    yield path.name, number, raw


def chunks(lines: Iterator[tuple[str, int, bytes]], size: int) -> Iterator[list[tuple[str, int, bytes]]]:
    batch: list[tuple[str, int, bytes]] = []
    for line in lines:
        batch.append(line)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def scan(
    paths: Sequence[Path], served: Served, outcomes: Outcomes, id_field: str, chunk_lines: int = CHUNK_LINES
) -> Scan:
    """Read the logs once and count everything per day.

    Raises:
        PipelineError: naming the file and line of the first malformed line.
    """
    result, digest, days = Scan(), hashlib.sha256(), {}
    for batch in chunks(read_lines(paths, digest), chunk_lines):
        parsed = [parse_line(raw, number, source, served, days) for source, number, raw in batch]
        raw = [_id(line.record, id_field) for line in parsed]
        unique = {str(v): v for v in raw if v is not None}  # the ids as JSON gave them, for the query
        known = outcomes.lookup([unique[k] for k in sorted(unique)])
        count(result, parsed, [None if v is None else str(v) for v in raw], known, served)
        result.lines += len(parsed)
    result.digest = digest.hexdigest()
    return result


def _id(record: dict[str, Any] | None, field_name: str) -> Any:
    value = record.get(field_name) if record is not None else None
    return value if isinstance(value, (str, int)) and not isinstance(value, bool) else None


def count(
    result: Scan, lines: list[Line], ids: list[str | None], known: dict[str, Any], served: Served
) -> None:
    """Add one chunk of lines to the per-day sums and sketches."""
    by_day: dict[str, list[int]] = {}
    for i, line in enumerate(lines):
        by_day.setdefault(line.day, []).append(i)
    for name, rows in by_day.items():
        day = result.days.setdefault(name, Day())
        groups: dict[tuple[str, str], list[int]] = {}
        for i in rows:
            groups.setdefault((lines[i].arm, lines[i].version), []).append(i)
        for key, members in groups.items():
            labelled = [i for i in members if ids[i] in known]
            row_losses = outcome_losses(
                served, [lines[i] for i in labelled], [known[ids[i]] for i in labelled]
            )
            day.sums.setdefault(key, Sums()).add(len(members), row_losses)
        records = [lines[i].record or {} for i in rows]
        frame = pd.DataFrame.from_records(records, columns=served.inputs)
        for column in served.inputs:
            sketch = day.inputs.setdefault(column, served.reference.inputs[column].empty_like())
            sketch.add(frame[column])
        own = [lines[i] for i in rows if lines[i].version == served.version]
        if day.prediction is None:
            day.prediction = served.reference.prediction.empty_like()
        day.prediction.add(predicted(served, own))


def probabilities(classes: list[str], lines: list[Line]) -> np.ndarray:
    """The logged class probabilities as ``(n, k)``, in the order of ``classes``."""
    return np.array([[float(line.output.get(c, 0.0)) for c in classes] for line in lines]).reshape(
        -1, len(classes)
    )


def predicted(served: Served, lines: list[Line]) -> np.ndarray:
    """What the prediction sketch counts: the number, or the predicted label."""
    if served.classes is None:
        return np.array([line.output for line in lines], np.float64)
    picks = decisions.predicted_classes(probabilities(served.classes, lines), served.threshold)
    return np.array(served.classes, dtype=object)[picks]


def outcome_losses(served: Served, lines: list[Line], actual: list[Any]) -> dict[str, np.ndarray]:
    """The labelled lines' per-row losses.

    Raises:
        PipelineError: for an outcome that is not a number (regression) or not a known class.
    """
    if kind(served.task) == "regression":
        try:
            truth = np.array(actual, np.float64)
        except (TypeError, ValueError):
            raise PipelineError(f"an outcome of {served.target!r} is not a number") from None
        return losses(served.task, [line.output for line in lines], truth)
    classes = served.classes or []
    index = {name: i for i, name in enumerate(classes)}
    unknown = next((a for a in actual if str(a) not in index), None)
    if unknown is not None:
        raise PipelineError(f"outcome {str(unknown)[:40]!r} of {served.target!r} is not a class of the model")
    proba = probabilities(classes, lines)
    return losses(served.task, proba, [index[str(a)] for a in actual], classes, served.threshold)
