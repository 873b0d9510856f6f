"""``mlpipe monitor``: judge the served model on the outcomes that have arrived since it was served.

Reads the prediction log(s) that ``mlpipe serve --log`` appends, the bundle that served them (its
metadata and ``reference.json``) and the outcomes (``monitor.outcomes`` on ``monitor.url``, by
default the source database), and writes, only once all of it has been read:

- the metrics file (``metrics/monitor.json``: ``dvc metrics diff`` compares two monitoring runs):
  the window, live metrics per arm and version with their ratio to the bundle's test metrics, drift
  per input and for the prediction (PSI and the chi-square p-value), the champion/challenger
  comparison, the alerts and the verdict;
- plots for ``dvc plots show`` (``error.json``: the live error per day; ``drift.json``: PSI per
  column) and ``report.html``, in the plots folder.

The window is the ``monitor.window_days`` days up to the newest prediction in the log (``--until``
to choose), so the same log and outcomes give the same files. Exit status: 0 healthy, 2 an alert
(live error over ``monitor.max_error_ratio`` times the test error, or a PSI over
``monitor.max_psi``), 3 too few labelled predictions to judge (``monitor.min_labelled``), 1 an
error (a malformed log line, a log of another model, outcomes without the id column, a bundle
without reference statistics), with nothing written.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import sys
from pathlib import Path
from typing import Any

from mlpipe import bundle, io, reference
from mlpipe.errors import PipelineError
from mlpipe.monitoring import report
from mlpipe.monitoring.live import Sums, compare, metric_loss
from mlpipe.monitoring.scan import Day, Outcomes, Scan, Served, scan
from mlpipe.params import MonitorParams, Params, load_params

HEALTHY, ALERT, NOT_ENOUGH = 0, 2, 3


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
    ref = reference.Reference.from_dict(io.read_json(ref_path), str(ref_path))
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


def drift(window: Day, served: Served) -> dict[str, Any]:
    def measure(ref: reference.Sketch, live: reference.Sketch | None) -> dict[str, float]:
        if live is None or live.total == 0:
            return {"psi": math.nan, "p_value": math.nan, "n": 0}
        return {"psi": reference.psi(ref, live), "p_value": reference.chi_square(ref, live), "n": live.total}

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
    measured = drift(window, served)
    own = live.get("champion", {}).get(served.version, {})
    alerts: list[str] = []
    ratio = own.get("ratio", {}).get(params.metric)
    if ratio is not None and own["labelled"] >= params.min_labelled and ratio > params.max_error_ratio:
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
    labelled = own.get("labelled", 0)
    if alerts:
        verdict = "alert"
    elif labelled < params.min_labelled:
        verdict = "not enough data"
        alerts.append(
            f"{labelled} labelled predictions of {served.version} in the window, fewer than"
            f" monitor.min_labelled ({params.min_labelled}): cannot judge"
        )
    else:
        verdict = "healthy"
    return live, measured, comparison, alerts, verdict


def run(args: argparse.Namespace) -> int:
    """Monitor; the exit status says the verdict (module docstring)."""
    from mlpipe.ingest import database_url

    params: Params = load_params(args.params)
    if params.monitor is None:
        raise PipelineError(f"{args.params}: no monitor section (see the README's monitoring section)")
    settings = params.monitor
    served = served_by(Path(args.bundle))
    if args.until:
        try:
            dt.date.fromisoformat(args.until)
        except ValueError:
            raise PipelineError(f"--until must be a date, YYYY-MM-DD: {args.until!r}") from None
    outcomes = Outcomes(
        database_url(settings.url or params.ingest.url), settings.outcomes, settings.id, served.target
    )
    try:
        result = scan([Path(p) for p in args.logs], served, outcomes, settings.id)
    finally:
        outcomes.close()
    start, end, days = window_of(result, settings.window_days, args.until)
    window = merged(days)
    live, measured, comparison, alerts, verdict = judge(window, served, settings)
    summary = {
        "model": served.name,
        "version": served.version,
        "window": {"start": start, "end": end, "days": settings.window_days},
        "limits": {
            "max_error_ratio": settings.max_error_ratio,
            "max_psi": settings.max_psi,
            "min_labelled": settings.min_labelled,
        },
        "log": {"lines": result.lines, "sha256": result.digest},
        "live": live,
        "drift": measured,
        **({"comparison": comparison} if comparison else {}),
        "alerts": alerts,
        "verdict": verdict,
    }
    daily = report.daily_error(result, served, settings.metric)
    report.write(Path(args.metrics), Path(args.plots), summary, daily)
    for alert in alerts:
        print(f"mlpipe: {'alert' if verdict == 'alert' else verdict}: {alert}", file=sys.stderr)
    if comparison:
        print(f"mlpipe: challenger vs champion: {comparison['verdict']}", file=sys.stderr)
    print(
        f"mlpipe: monitor {served.name} {served.version} {start}..{end}: {verdict} -> {args.metrics}",
        file=sys.stderr,
    )
    return {"healthy": HEALTHY, "alert": ALERT}.get(verdict, NOT_ENOUGH)
