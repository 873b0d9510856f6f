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
