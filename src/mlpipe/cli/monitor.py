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
import sys
from pathlib import Path
from typing import Any

from mlpipe.cli.options import command
from mlpipe.core.errors import PipelineError
from mlpipe.core.params import Params, load_params
from mlpipe.monitoring import report
from mlpipe.monitoring.scan import Outcomes, scan
from mlpipe.monitoring.verdict import judge, merged, served_by, window_of

HEALTHY, ALERT, NOT_ENOUGH = 0, 2, 3


def run(args: argparse.Namespace) -> int:
    """Monitor; the exit status says the verdict (module docstring)."""
    from mlpipe.sources.reading import database_url

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
    if measured["too_few"]:
        n = measured["prediction"]["n"]
        print(
            f"mlpipe: drift not judged, too few values (n = {n} < monitor.min_drift_rows"
            f" {settings.min_drift_rows}): {', '.join(measured['too_few'])}",
            file=sys.stderr,
        )
    if comparison:
        print(f"mlpipe: challenger vs champion: {comparison['verdict']}", file=sys.stderr)
    print(
        f"mlpipe: monitor {served.name} {served.version} {start}..{end}: {verdict} -> {args.metrics}",
        file=sys.stderr,
    )
    return {"healthy": HEALTHY, "alert": ALERT}.get(verdict, NOT_ENOUGH)


def run_cohort(args: argparse.Namespace) -> int:
    """Judge an early-warning model on a cohort it scored as of a date (:mod:`mlpipe.monitoring.cohort`)."""
    from mlpipe.core import files
    from mlpipe.monitoring import cohort
    from mlpipe.serving.predictor import Predictor

    predictor = Predictor(args.bundle, threads=1).load()
    summary = cohort.judge(
        predictor,
        args.scored,
        args.students,
        args.activity,
        args.max_error_ratio,
        args.max_psi,
        args.min_drift_rows,
    )
    files.write_json(args.metrics, summary)
    for alert in summary["alerts"]:
        print(f"mlpipe: alert: {alert}", file=sys.stderr)
    print(
        f"mlpipe: monitor {summary['model']} {summary['version']} as of {summary['as_of']}:"
        f" {summary['verdict']} -> {args.metrics}",
        file=sys.stderr,
    )
    return HEALTHY if summary["verdict"] == "healthy" else ALERT


def add(commands: Any) -> None:
    """``mlpipe monitor``: live metrics and drift from the prediction log and the outcomes."""
    monitor = command(
        commands,
        "monitor",
        "judge the served model on the outcomes that arrived: live error, drift, challenger",
        "Joins the prediction log with the outcomes in the database (params.yaml: monitor) and writes"
        " metrics/monitor.json, plots and report.html. Exit 0 healthy, 2 alert (live error or drift"
        " over its limit), 3 too few labelled predictions, 1 error.",
    )
    monitor.add_argument("logs", nargs="+", help="prediction logs (JSON lines from `mlpipe serve --log`)")
    monitor.add_argument("--bundle", default="models/package", help="champion bundle (default: %(default)s)")
    monitor.add_argument(
        "--params", default="params.yaml", help="params with a monitor section (default: %(default)s)"
    )
    monitor.add_argument(
        "--metrics", default="metrics/monitor.json", help="metrics file (default: %(default)s)"
    )
    monitor.add_argument(
        "--plots", default="metrics/monitor", help="plots and report.html (default: %(default)s)"
    )
    monitor.add_argument(
        "--until", help="last day of the window, YYYY-MM-DD (default: the newest prediction)"
    )
    monitor.set_defaults(run=run)
    cohort = command(
        commands,
        "monitor-cohort",
        "judge an early-warning model on a cohort it scored as of a date, once outcomes are known",
        "Joins `mlpipe predict --as-of`'s scores with the student table as it stands later (its dropout"
        " dates), gives the live metrics of each cutoff week beside the bundle's test ones, and the PSI"
        " of each static field, each channel's weekly values and the probabilities against the bundle's"
        " reference. Exit 0 healthy, 2 alert, 1 error.",
    )
    cohort.add_argument("scored", help="the file `mlpipe predict --as-of` wrote")
    cohort.add_argument("--students", required=True, help="the student table, with the outcomes now known")
    cohort.add_argument("--activity", required=True, help="the activity table the cohort was scored from")
    cohort.add_argument("--bundle", required=True, help="the early-warning bundle that scored it")
    cohort.add_argument("--metrics", default="metrics/monitor.json", help="summary (default: %(default)s)")
    cohort.add_argument(
        "--max-error-ratio", type=float, default=1.25, help="live/test log loss (default: 1.25)"
    )
    cohort.add_argument("--max-psi", type=float, default=0.2, help="drift limit per input (default: 0.2)")
    cohort.add_argument(
        "--min-drift-rows", type=int, default=200, help="fewer values of an input: no PSI (default: 200)"
    )
    cohort.set_defaults(run=run_cohort)
