"""Params overrides that make the whole pipeline run in seconds, shared by the slow tests."""

TINY = {
    "train": {"epochs": 20, "patience": 5, "lr_patience": 2, "units": [32, 16], "dropout": [0.1, 0.0]},
    "evaluate": {
        "permutation_repeats": 1,
        "hgb": {"max_iter": 30, "learning_rate": 0.1, "max_leaf_nodes": 15},
    },
    # a small model on about a thousand rows: gate on beating the mean only
    "package": {
        "gate": {
            "metric": "rmse",
            "min_improvement": {"mean": 0.3},
            "max": {"rmse": 2.0},
            "min": {"r2": 0.5},
            "parity_tolerance": 0.00001,
        }
    },
}

# The dropout classifier on the pipeline tests' 240 students: a faster learning rate (20 epochs
# at 0.001 stay worse than predicting the dropout rate), and a gate that only asks it to beat that.
DROPOUT_TINY = {
    "train": {
        "epochs": 30,
        "patience": 5,
        "lr_patience": 2,
        "units": [16],
        "dropout": [0.0],
        "learning_rate": 0.01,
    },
    "evaluate": TINY["evaluate"],
    "package": {
        "gate": {
            "metric": "log_loss",
            "min_improvement": {"majority": 0.0},
            "max": {"brier": 0.3},
            "min": {"roc_auc": 0.5},
            "parity_tolerance": 0.00001,
        }
    },
}
