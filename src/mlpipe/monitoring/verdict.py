"""The monitoring verdict: the served bundle's view, the window of days, live metrics against the
test metrics, drift, and the alerts (exit statuses of ``mlpipe monitor``)."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path
from typing import Any

from mlpipe.bundle import layout as bundle
from mlpipe.bundle import reference
from mlpipe.core import files
from mlpipe.core.errors import PipelineError
from mlpipe.core.params import MonitorParams
from mlpipe.monitoring import report
from mlpipe.monitoring.live import Sums, compare, metric_loss
from mlpipe.monitoring.scan import Day, Scan, Served


def served_by(folder: Path) -> Served:
    """The bundle's view of its predictions, after verifying it.

    Raises:
        PipelineError: if the bundle fails verification or has no reference statistics.
    """
    verified = bundle.verify(folder)
    meta = verified.metadata
    ref_path = folder / reference.FILE
    if not ref_path.is_file():
        raise PipelineError(
            f"{folder}: no {reference.FILE} (a bundle packaged before reference statistics):"
            " re-run `dvc repro` to package it again"
        )
    ref = reference.Reference.from_dict(files.read_json(ref_path), str(ref_path))
    classes = meta["output"].get("classes")
    return Served(
        name=str(meta["name"]),
        version=str(meta["version"]),
        task=str(meta["task"]),
        target=str(meta["output"]["target"]),
        classes=[str(c) for c in classes] if classes else None,
        inputs=list(meta["inputs"]),
        reference=ref,
        test_metrics=dict(meta.get("metrics", {}).get("model", {})),
        threshold=meta["output"].get("threshold"),
    )


def window_of(result: Scan, days: int, until: str | None) -> tuple[str, str, list[Day]]:
    """The window's first and last day, and its days."""
    if not result.days:
        raise PipelineError("the prediction log holds no predictions")
    end = dt.date.fromisoformat(until) if until else max(dt.date.fromisoformat(d) for d in result.days)
    start = end - dt.timedelta(days=days - 1)
    chosen = [result.days[d] for d in sorted(result.days) if start.isoformat() <= d <= end.isoformat()]
    return start.isoformat(), end.isoformat(), chosen


def merged(days: list[Day]) -> Day:
    total = Day()
    for day in days:
        for key, sums in day.sums.items():
            total.sums.setdefault(key, Sums()).merge(sums)
        for column, sketch in day.inputs.items():
            total.inputs.setdefault(column, sketch.empty_like()).merge(sketch)
        if day.prediction is not None:
            if total.prediction is None:
                total.prediction = day.prediction.empty_like()
            total.prediction.merge(day.prediction)
    return total


def live_metrics(window: Day, served: Served) -> dict[str, dict[str, Any]]:
    """arm -> version -> predictions, labelled, the live metrics and their ratio to the test metrics
    (for the bundle's own version)."""
    out: dict[str, dict[str, Any]] = {}
    for (arm, version), sums in sorted(window.sums.items()):
        entry: dict[str, Any] = {"predictions": sums.predictions, "labelled": sums.labelled}
        if sums.labelled:
            entry.update(sums.metrics(served.task))
        if version == served.version and sums.labelled:
            entry["ratio"] = {
                m: entry[m] / served.test_metrics[m]
                for m in sums.metrics(served.task)
                if served.test_metrics.get(m)
            }
        out.setdefault(arm, {})[version] = entry
    return out


def drift(window: Day, served: Served, min_rows: int = 1) -> dict[str, Any]:
    """PSI and the chi-square p-value of each input and of the prediction, with the live sample
    size ``n``; a column with fewer than ``min_rows`` live values is not measured (``too_few``)."""

    def measure(ref: reference.Sketch, live: reference.Sketch | None) -> dict[str, Any]:
        n = 0 if live is None else live.total
        if n < min_rows:
            return {"psi": math.nan, "p_value": math.nan, "n": n, "too_few": True}
        return {"psi": reference.psi(ref, live), "p_value": reference.chi_square(ref, live), "n": n}

    inputs = {c: measure(served.reference.inputs[c], window.inputs.get(c)) for c in served.inputs}
    return {"inputs": inputs, "prediction": measure(served.reference.prediction, window.prediction)}


def arm_sums(window: Day, arm: str) -> Sums:
    total = Sums()
    for (name, _), sums in window.sums.items():
        if name == arm:
            total.merge(sums)
    return total


def judge(
    window: Day, served: Served, params: MonitorParams
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any] | None, list[str], str]:
    """Live metrics, drift, the comparison, the alerts and the verdict of one window."""
    metric_loss(params.metric)
    live = live_metrics(window, served)
    measured = drift(window, served, params.min_drift_rows)
    own = live.get("champion", {}).get(served.version, {})
    labelled = own.get("labelled", 0)
    alerts: list[str] = []
    ratio = own.get("ratio", {}).get(params.metric)
    if ratio is not None and labelled >= params.min_labelled and ratio > params.max_error_ratio:
        alerts.append(
            f"live {params.metric} {own[params.metric]:.4g} is {ratio:.2f}x the bundle's test"
            f" {params.metric} {served.test_metrics[params.metric]:.4g} (max {params.max_error_ratio}x)"
        )
    every = [*measured["inputs"].items(), ("prediction", measured["prediction"])]
    drifted = [
        f"{name} (PSI {values['psi']:.2f})"
        for name, values in sorted(every, key=lambda item: -report.sortable(item[1]["psi"]))
        if values["psi"] > params.max_psi
    ]
    if drifted:
        alerts.append(f"drift over PSI {params.max_psi}: {', '.join(drifted)}")
    comparison = None
    if any(arm == "challenger" for arm, _ in window.sums):
        comparison = compare(
            arm_sums(window, "champion"), arm_sums(window, "challenger"), params.metric, params.min_labelled
        )
    verdict = "alert" if alerts else "healthy"
    measured["too_few"] = sorted(name for name, values in every if values.get("too_few"))
    if verdict == "healthy" and labelled < params.min_labelled:
        verdict = "not enough data"
        alerts.append(
            f"{labelled} labelled predictions of {served.version} in the window, fewer than"
            f" monitor.min_labelled ({params.min_labelled}): cannot judge"
        )
    return live, measured, comparison, alerts, verdict
