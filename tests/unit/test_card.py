"""The model card's parts, from metadata alone: no model needed."""

from __future__ import annotations

from mlpipe.bundle import card

EVALUATION = {
    "model": {"rmse": 0.4212, "r2": 0.9, "log_loss_ignored": 1.0},
    "baselines": {"mean": {"rmse": 1.4, "r2": 0.0}},
}


def test_the_metrics_table_shows_known_metrics_for_the_model_and_each_baseline():
    table = card.metrics_table(EVALUATION)
    assert table[0] == "| | rmse | r2 |"
    assert table[2:] == ["| model (this bundle) | 0.421 | 0.900 |", "| baseline: mean | 1.400 | 0.000 |"]


def test_gate_lines_say_pass_or_fail_with_the_bound():
    verdict = {
        "checks": {
            "rmse": {"value": 0.61, "max": 0.5, "passed": False},
            "rmse_improvement_over_mean": {"value": 0.7, "min": 0.5, "passed": True},
        }
    }
    assert card.gate_lines(verdict) == [
        "- FAIL: rmse = 0.61 (max 0.5)",
        "- pass: rmse_improvement_over_mean = 0.7 (min 0.5)",
    ]


def test_input_rows_give_categories_ranges_and_fills():
    inputs = {
        "subject": {"type": "string", "categories": ["art", "math"], "unknown": "error"},
        "device": {"type": "string", "categories": ["web"], "unknown": "zero", "fill": "web"},
        "age": {"type": "integer", "min": 10},
    }
    assert card.input_rows(inputs) == [
        "| `subject` | string | art, math; other values are refused |",
        "| `device` | string | web; other values encode as none; null becomes 'web' |",
        "| `age` | integer | 10 to inf |",
    ]


def test_a_baseline_that_beats_the_model_is_said_in_the_card():
    meta = {
        "params": {"package": {"gate": {"metric": "log_loss"}}},
        "metrics": {
            "model": {"log_loss": 0.0346},
            "baselines": {"majority": {"log_loss": 0.646}, "hgb": {"log_loss": 0.0173}},
        },
    }
    (line,) = card.shortfall_lines(meta)
    assert line.startswith("- The hgb baseline beats this model on the test split: log_loss 0.0173")
    assert "(lower is better; the model is 100.0% worse)" in line
    meta["metrics"]["baselines"]["hgb"]["log_loss"] = 0.05
    assert card.shortfall_lines(meta) == []
