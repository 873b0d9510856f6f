"""Early warning on the demo: the dual-branch GRU against logistic regression and gradient boosting
on point-in-time aggregates, and the oracle, by cutoff week, on one test split of students.

    python bench/early_warning.py [--students 20000] [--weeks 16] [--cutoffs 2 4 6 8] [--seed 42]

Prints a table per cutoff (ROC-AUC, log loss, recall among the riskiest 10%) and the issue's
targets (the model within 0.02 ROC-AUC of the oracle, at least the better baseline's minus 0.005,
log loss within 5% of the oracle's), and writes bench/out/early_warning.json. The oracle is the
observable one (:mod:`mlpipe.demo.filtering`: the best given what a model sees); the latent one
(which knows the engagement itself) is printed beside it, as a ceiling no model can reach.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

from mlpipe.demo import activity, filtering
from mlpipe.evaluation import early_warning
from mlpipe.features import history
from mlpipe.training import sequence

CHANNELS = {"minutes": "sum", "clicks": "sum", "submissions": "sum", "score": "mean"}
STATIC = ["prior_gpa", "age", "part_time"]


def cohort_frames(
    cohort: activity.Cohort, cutoffs: list[int]
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    parts = list(activity.chunks(cohort))
    students = pd.concat([c.students for c in parts], ignore_index=True)
    students["part_time"] = (students["study_mode"] == "part_time").astype(np.int64)
    rows = pd.concat([c.activity for c in parts], ignore_index=True)
    observable = [
        filtering.observable_oracle(c, k, cohort.seed).assign(cutoff=k) for c in parts for k in cutoffs
    ]
    latent = [activity.oracle(c, k, cohort.seed).assign(cutoff=k) for c in parts for k in cutoffs]
    return students, rows, pd.concat(observable), pd.concat(latent)


def splits(students: pd.DataFrame, seed: int) -> dict[str, pd.DataFrame]:
    """By student, 70/15/15: every cutoff of a student lands in one split."""
    order = np.random.default_rng([seed, 10]).permutation(students["student_id"].to_numpy())
    n_test = n_val = round(0.15 * len(order))
    chosen = {"test": order[:n_test], "val": order[n_test : n_test + n_val], "train": order[n_test + n_val :]}
    return {name: students[students["student_id"].isin(ids)] for name, ids in chosen.items()}


def histories(
    students: pd.DataFrame, rows: pd.DataFrame, cutoffs: list[int], weeks: int
) -> dict[int, history.History]:
    own = rows[rows["student_id"].isin(students["student_id"])]
    return {k: history.as_of(students, own, k, weeks, CHANNELS, STATIC) for k in cutoffs}


def stacked(found: dict[int, history.History]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    parts = list(found.values())
    return (
        np.concatenate([h.static.to_numpy(np.float64) for h in parts]),
        np.concatenate([h.sequence for h in parts]),
        np.concatenate([h.mask for h in parts]),
        np.concatenate([h.label for h in parts]),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--students", type=int, default=20_000)
    parser.add_argument("--weeks", type=int, default=16)
    parser.add_argument("--cutoffs", type=int, nargs="+", default=[2, 4, 6, 8])
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    began = time.perf_counter()
    cohort = activity.Cohort(args.students, args.weeks, dt.date(2026, 9, 7), args.seed)
    students, rows, oracle, latent = cohort_frames(cohort, args.cutoffs)
    made = time.perf_counter()
    by_split = {
        name: histories(part, rows, args.cutoffs, args.weeks)
        for name, part in splits(students, args.seed).items()
    }
    result = early_warning.by_cutoff(by_split["test"], by_split["train"], args.seed, oracle=oracle)
    static, seq, mask, y = stacked(by_split["train"])
    scale = sequence.SequenceScale.fit(static, seq, mask)
    spec = sequence.SequenceSpec()
    model = sequence.build(static.shape[1], args.weeks, len(CHANNELS), spec, args.seed)
    v_static, v_seq, v_mask, v_y = stacked(by_split["val"])
    fit_began = time.perf_counter()
    sequence.fit(model, scale.apply(static, seq, mask), y, scale.apply(v_static, v_seq, v_mask), v_y, spec)
    fit_seconds = time.perf_counter() - fit_began
    for k, test in by_split["test"].items():
        inputs = scale.apply(test.static.to_numpy(np.float64), test.sequence, test.mask)
        result[str(k)]["model"] = early_warning.cutoff_metrics(
            test.label, model.predict(inputs, verbose=0)[:, 0]
        )
        known = latent[latent["cutoff"] == k].set_index("student_id")["probability"].reindex(test.ids)
        result[str(k)]["latent_oracle"] = early_warning.cutoff_metrics(test.label, known.to_numpy())
    print(
        f"{args.students} students, {len(rows):,} activity rows; made in {made - began:.1f} s,"
        f" GRU trained in {fit_seconds:.1f} s on {len(y):,} rows (load {os.getloadavg()[0]:.2f})"
    )
    print(
        f"{'week':>4} {'model':>7} {'logistic':>9} {'hgb':>7} {'oracle':>7}"
        "   log loss model/oracle   recall@10%  targets   latent oracle"
    )
    for week, found in result.items():
        model_m, oracle_m, base = found["model"], found["oracle"], found["baselines"]
        better = max(b["roc_auc"] for b in base.values())
        met = [
            model_m["roc_auc"] >= oracle_m["roc_auc"] - 0.02,
            model_m["roc_auc"] >= better - 0.005,
            model_m["log_loss"] <= 1.05 * oracle_m["log_loss"],
        ]
        print(
            f"{week:>4} {model_m['roc_auc']:7.4f} {base['logistic']['roc_auc']:9.4f}"
            f" {base['hgb']['roc_auc']:7.4f}"
            f" {oracle_m['roc_auc']:7.4f}   {model_m['log_loss']:.4f}/{oracle_m['log_loss']:.4f}"
            f"          {model_m['recall_at_10pct']:.3f}   {' '.join('yes' if m else 'NO' for m in met)}"
            f"   {found['latent_oracle']['roc_auc']:.4f}"
        )
    out = Path(__file__).parent / "out"
    out.mkdir(exist_ok=True)
    (out / "early_warning.json").write_text(json.dumps({"by_cutoff": result}, indent=2, sort_keys=True))


if __name__ == "__main__":
    main()
