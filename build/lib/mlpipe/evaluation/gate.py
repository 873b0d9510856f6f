"""The package stage's gate: does the model beat each baseline by its margin, meet each absolute
bound, and do the exports predict what Keras predicts? The verdict is data: ``passed`` and each check.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mlpipe.core import decisions
from mlpipe.core.errors import PipelineError
from mlpipe.core.params import GateParams


def verdict(evaluation: dict[str, Any], params: GateParams, parity: dict[str, float]) -> dict[str, Any]:
    """Check the test metrics against the gate; return the verdict (``passed`` and each check).

    Improvement over a baseline is relative: ``(baseline - model) / baseline`` for a loss (RMSE,
    MAE, log loss, Brier), ``(model - baseline) / baseline`` for a score (R², accuracy, AUC).

    Raises:
        PipelineError: if the gate names a baseline or metric that evaluate did not report.
    """
    model = evaluation["model"]
    metric = params.metric
    if metric not in model:
        raise PipelineError(f"package.gate.metric: evaluate reports no metric {metric!r}")
    checks: dict[str, dict[str, Any]] = {}
    for baseline, margin in params.min_improvement.items():
        if baseline not in evaluation["baselines"]:
            known = ", ".join(evaluation["baselines"])
            raise PipelineError(f"package.gate.min_improvement.{baseline}: no such baseline (known: {known})")
        theirs = evaluation["baselines"][baseline][metric]
        gain = theirs - model[metric] if decisions.lower_is_better(metric) else model[metric] - theirs
        checks[f"{metric}_improvement_over_{baseline}"] = {"value": gain / abs(theirs), "min": margin}
    for bound, limits in (("max", params.max), ("min", params.min)):
        for metric, limit in limits.items():
            if metric not in model:
                raise PipelineError(f"package.gate.{bound}.{metric}: evaluate reports no such metric")
            checks[metric] = {"value": model[metric], bound: limit}
    for export, difference in parity.items():  # each export's largest difference from Keras
        checks[f"parity_max_diff_{export}"] = {"value": difference, "max": params.parity_tolerance}
    for check in checks.values():
        check["passed"] = bool(
            ("min" not in check or check["value"] >= check["min"])
            and ("max" not in check or check["value"] <= check["max"])
        )
    return {"passed": all(c["passed"] for c in checks.values()), "checks": checks}


def parity_difference(bundle_output: np.ndarray, keras_output: np.ndarray) -> float:
    """The largest difference between the bundle's and Keras' outputs: absolute up to 1, relative
    beyond (float32 carries about 7 digits, so an absolute 1e-5 is out of reach for values in the
    hundreds)."""
    scale = np.maximum(1.0, np.abs(keras_output))
    return float(np.max(np.abs(bundle_output - keras_output) / scale)) if keras_output.size else 0.0


def failures(result: dict[str, Any]) -> list[str]:
    """One line per failed check, e.g. ``rmse = 0.61 > max 0.5``."""
    lines = []
    for name, check in result["checks"].items():
        if not check["passed"]:
            bound = f"< min {check['min']:g}" if "min" in check else f"> max {check['max']:g}"
            lines.append(f"{name} = {check['value']:.4g} {bound}")
    return lines
