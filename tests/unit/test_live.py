"""Live accuracy follows the rule evaluate and serving use: a binary model's threshold."""

from __future__ import annotations

import numpy as np
import pytest

from mlpipe.core import decisions
from mlpipe.core.errors import PipelineError
from mlpipe.evaluation import metrics
from mlpipe.monitoring.live import losses
from mlpipe.serving.prediction import Prediction

PROBA = np.array([[0.8, 0.2], [0.6, 0.4], [0.35, 0.65], [0.9, 0.1]])
TRUTH = np.array([0, 1, 1, 1])


@pytest.mark.parametrize("threshold", [0.15, 0.3, 0.5, 0.7])
def test_live_accuracy_is_test_accuracy_and_serving_labels_at_any_threshold(threshold):
    live = 1 - losses("binary", PROBA, TRUTH, ["no", "yes"], threshold)["error"].mean()
    test = metrics.score("binary", TRUTH, PROBA[:, 1], ["no", "yes"], threshold)["accuracy"]
    served = Prediction(PROBA[:, 1], "m", "v1", ["no", "yes"], threshold).labels
    assert live == pytest.approx(test)
    assert list(served) == [["no", "yes"][i] for i in decisions.predicted_classes(PROBA, threshold)]


def test_a_threshold_other_than_a_half_changes_live_accuracy_from_argmax():
    argmax = 1 - (PROBA.argmax(axis=1) != TRUTH).mean()
    at_03 = 1 - losses("binary", PROBA, TRUTH, ["no", "yes"], 0.3)["error"].mean()
    assert argmax == 0.5 and at_03 == 0.75


def test_binary_classes_need_the_threshold_multiclass_does_not():
    with pytest.raises(PipelineError, match="threshold"):
        losses("binary", PROBA, TRUTH, ["no", "yes"])
    three = np.array([[0.2, 0.5, 0.3], [0.6, 0.3, 0.1]])
    assert losses("multiclass", three, np.array([1, 2]), ["a", "b", "c"])["error"].tolist() == [0.0, 1.0]
