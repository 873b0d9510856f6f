"""Judging an early-warning model on a cohort it scored as of a date (``mlpipe predict --as-of``),
once the outcomes are known (``mlpipe monitor-cohort``).

The scored file says who was scored at which cutoff week and with what probability; the student
table as it stands later says who dropped out (a dropout date; all the scored students were still
enrolled on the scoring date, so any date is "dropped out after the cutoff"). Joined on the key,
they give the live metrics of each cutoff (:func:`mlpipe.evaluation.early_warning.cutoff_metrics`),
set beside the bundle's test metrics at the same week. Drift is measured on what the model read:
the histories are rebuilt as of the scoring date by the same code that scored them, and each
static field, each channel's weekly values (``history.<channel>``) and the probabilities are
counted into the bundle's reference bins (``reference.json``), giving the PSI of each.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlpipe.bundle import reference
from mlpipe.core.errors import PipelineError
from mlpipe.evaluation.early_warning import cutoff_metrics
from mlpipe.features import history, point_in_time
from mlpipe.serving import as_of
from mlpipe.serving.predictor import Predictor


def read_scored(path: str | Path, key: str, version: str) -> pd.DataFrame:
    """The scored file, checked: one date, this bundle's version, each student once.

    Raises:
        PipelineError: naming what does not fit.
    """
    scored = point_in_time.read_table(path)
    missing = [c for c in (key, "as_of", "cutoff_week", "probability", "version") if c not in scored.columns]
    if missing:
        raise PipelineError(f"{path}: no column {missing[0]!r}: not a file `mlpipe predict --as-of` wrote")
    if set(scored["version"].astype(str)) - {version}:
        raise PipelineError(f"{path}: scored by another version than the bundle's {version}")
    if scored["as_of"].nunique() > 1:
        raise PipelineError(f"{path}: scored as of more than one date")
    if scored[key].duplicated().any():
        raise PipelineError(f"{path}: {key} {scored[key][scored[key].duplicated()].iloc[0]} scored twice")
    return scored


def labels(scored: pd.DataFrame, students: pd.DataFrame, names: history.Columns) -> np.ndarray:
    """1 for each scored student with a dropout date in the later student table.

    Raises:
        PipelineError: for a scored student the table lacks.
    """
    outcome = students.set_index(names.key)[names.outcome]
    found = outcome.reindex(scored[names.key])
    unknown = ~scored[names.key].isin(outcome.index).to_numpy()
    if unknown.any():
        raise PipelineError(
            f"the student table has no {names.key} {scored[names.key].iloc[np.argmax(unknown)]}"
        )
    return pd.to_datetime(found).notna().to_numpy().astype(np.int64)


def drift(
    predictor: Predictor, sources: tuple[Path, Path], day: dt.date, probability: np.ndarray, min_rows: int
) -> dict[str, dict[str, Any]]:
    """PSI of each static field, channel and the probabilities against the bundle's reference, with
    the live sample size ``n``; with fewer than ``min_rows`` values, no PSI (``too_few``)."""
    document = (Path(predictor.folder) / reference.FILE).read_text(encoding="utf-8")
    ref = reference.Reference.from_dict(json.loads(document), reference.FILE)
    live = {name: sketch.empty_like() for name, sketch in ref.inputs.items()}
    channels = list(predictor.metadata["history"]["channels"])
    for found in as_of.histories(predictor, *sources, day, as_of.BATCH_ROWS, as_of.Report()):
        for name in found.static.columns:
            live[name].add(found.static[name].to_numpy(np.float64))
        observed = found.sequence[found.mask].astype(np.float64)
        for j, channel in enumerate(channels):
            live[f"history.{channel}"].add(observed[:, j])
    live["prediction"] = ref.prediction.empty_like()
    live["prediction"].add(probability)
    references = {**ref.inputs, "prediction": ref.prediction}
    return {
        name: {"psi": None, "n": sketch.total, "too_few": True}
        if sketch.total < min_rows
        else {"psi": round(reference.psi(references[name], sketch), 6), "n": sketch.total}
        for name, sketch in live.items()
    }


def judge(
    predictor: Predictor,
    scored_path: str | Path,
    students_path: str | Path,
    activity_path: str | Path,
    max_error_ratio: float,
    max_psi: float,
    min_drift_rows: int = 200,
) -> dict[str, Any]:
    """The monitoring summary: live metrics by cutoff beside the test ones, drift, alerts, verdict."""
    spec = predictor.metadata.get("history")
    if spec is None:
        raise PipelineError(f"{predictor.name} reads no history: monitor-cohort judges early-warning models")
    names = history.Columns(**spec["columns"])
    scored = read_scored(scored_path, names.key, predictor.version)
    day = pd.Timestamp(scored["as_of"].iloc[0]).date() if len(scored) else None
    label = labels(scored, point_in_time.read_table(students_path), names)
    live, alerts = {}, []
    tested = predictor.metadata.get("metrics", {}).get("by_cutoff", {})
    for week in sorted(scored["cutoff_week"].unique()):
        rows = (scored["cutoff_week"] == week).to_numpy()
        found = cutoff_metrics(label[rows], scored["probability"].to_numpy()[rows])
        test = tested.get(str(int(week)), {}).get("model")
        if test:
            found["log_loss_ratio"] = found["log_loss"] / test["log_loss"]
            found["test"] = {k: test[k] for k in ("roc_auc", "log_loss", "recall_at_10pct")}
            if found["log_loss_ratio"] > max_error_ratio:
                alerts.append(f"week {week}: live log loss {found['log_loss_ratio']:.2f}x the test's")
        live[str(int(week))] = found
    sources = (Path(students_path), Path(activity_path))
    measured = drift(predictor, sources, day, scored["probability"].to_numpy(), min_drift_rows)
    alerts += [
        f"{name}: PSI {value['psi']:.3f} > {max_psi}"
        for name, value in measured.items()
        if value["psi"] is not None and value["psi"] > max_psi
    ]
    return {
        "model": predictor.name,
        "version": predictor.version,
        "as_of": str(day),
        "scored": len(scored),
        "live": live,
        "drift": measured,
        "alerts": alerts,
        "verdict": "alert" if alerts else "healthy",
    }
