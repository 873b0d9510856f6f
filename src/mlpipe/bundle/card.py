"""The bundle's model card (``README.md``): what the model predicts, from what data, how well, and
its limits; written from the bundle's metadata alone.
"""

from __future__ import annotations

from typing import Any

SHOWN = (
    "rmse",
    "mae",
    "r2",
    "rmse_over_noise_floor",
    "accuracy",
    "f1_weighted",
    "roc_auc",
    "pr_auc",
    "log_loss",
    "brier",
)


def metrics_table(evaluation: dict[str, Any]) -> list[str]:
    """The model's and each baseline's test metrics as a Markdown table."""
    rows = [("model (this bundle)", evaluation["model"])]
    rows += [(f"baseline: {name}", scores) for name, scores in evaluation["baselines"].items()]
    names = [m for m in SHOWN if m in evaluation["model"]]
    table = ["| | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    return table + [f"| {label} | " + " | ".join(f"{s[m]:.3f}" for m in names) + " |" for label, s in rows]


def gate_lines(verdict: dict[str, Any]) -> list[str]:
    """One bullet per gate check: pass or FAIL, its value and its bound."""
    return [
        f"- {'pass' if c['passed'] else 'FAIL'}: {name} = {c['value']:.4g}"
        + (f" (min {c['min']:g})" if "min" in c else f" (max {c['max']:g})")
        for name, c in verdict["checks"].items()
    ]


def input_rows(inputs: dict[str, dict[str, Any]]) -> list[str]:
    """One table row per input field: its type and what it allows."""
    rows = []
    for name, spec in inputs.items():
        if spec["type"] == "string":
            refused = (
                "; other values are refused"
                if spec["unknown"] == "error"
                else "; other values encode as none"
            )
            detail = ", ".join(spec["categories"]) + refused
        else:
            detail = f"{spec.get('min', '-inf')} to {spec.get('max', 'inf')}"
        if "fill" in spec:
            detail += f"; null becomes {spec['fill']!r}"
        rows.append(f"| `{name}` | {spec['type']} | {detail} |")
    return rows


def shortfall_lines(meta: dict[str, Any]) -> list[str]:
    """A bullet for each baseline that beats the model on the gate's metric: said, not hidden."""
    from mlpipe.core.decisions import lower_is_better

    metric = meta["params"]["package"]["gate"]["metric"]
    model = meta["metrics"]["model"].get(metric)
    if model is None:
        return []
    lines = []
    for name, scores in meta["metrics"]["baselines"].items():
        theirs = scores.get(metric)
        if theirs is None or theirs == model or (theirs < model) != lower_is_better(metric):
            continue
        share = abs(model - theirs) / abs(theirs) if theirs else float("inf")
        lines.append(
            f"- The {name} baseline beats this model on the test split: {metric} {theirs:.4g} against"
            f" the model's {model:.4g} ({'lower' if lower_is_better(metric) else 'higher'} is better;"
            f" the model is {share:.1%} worse). Prefer the baseline where that matters more than one"
            " verified bundle that carries its preprocessing."
        )
    return lines


FILES = (
    "- Files: `model.onnx` (ONNX Runtime), `saved_model/` (TensorFlow Serving), checked by"
    " `sha256sum -c SHA256SUMS`."
)


def heading(meta: dict[str, Any]) -> list[str]:
    """A card's title (name and version) and the model's description."""
    return [f"# Model card: {meta['name']} ({meta['version']})", "", meta["description"], ""]


def model_card(meta: dict[str, Any]) -> str:
    """The bundle's README, from its metadata."""
    data, git, output = meta["data"], meta["git"], meta["output"]
    classes = f" (classes: {', '.join(map(str, output['classes']))})." if "classes" in output else "."
    dirty = " with uncommitted changes" if git["dirty"] else ""
    return "\n".join(
        [
            *heading(meta),
            f"- Task: {meta['task']}; predicts `{output['target']}`{classes}",
            f"- Built from commit `{git['revision']}`{dirty};"
            " the md5 of every upstream output is in `metadata.json` (`lineage`).",
            f"- Data: {data['train_rows']} training, {data['val_rows']} validation and {data['test_rows']}"
            f" test rows, split by `{data['group']}` so that no group is in two splits."
            if data.get("group")
            else " test rows, split row by row (no group column).",
            "",
            "## Test metrics against baselines",
            "",
            *metrics_table(meta["metrics"]),
            "",
            "## Gate",
            "",
            *gate_lines(meta["gate"]),
            "",
            "## Inputs",
            "",
            "| field | type | allowed |",
            "|---|---|---|",
            *input_rows(meta["inputs"]),
            "",
            "## Limits",
            "",
            "- Valid only for records inside the ranges above; the predictor refuses the rest.",
            *shortfall_lines(meta),
            "- Scores are measured on held-out groups of the same source; a shift in who or what is"
            " measured needs a new evaluation.",
            FILES,
            "",
        ]
    )
