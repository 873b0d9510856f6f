"""The observable oracle: a calibrated probability from what a model can see, below the latent one."""

from __future__ import annotations

import datetime as dt

import numpy as np
from sklearn.metrics import roc_auc_score

from mlpipe.demo import activity, filtering


def test_systematic_resampling_keeps_what_the_weights_say():
    rng = np.random.default_rng(0)
    uniform = filtering.resample(rng, np.zeros((3, 8)))
    assert (np.sort(uniform, axis=1) == np.arange(8)).all()  # equal weights: each particle once
    one = np.full((2, 8), -np.inf)
    one[0, 5] = one[1, 2] = 0.0
    assert (filtering.resample(rng, one) == [[5], [2]]).all()


def test_the_observable_oracle_is_calibrated_and_below_the_latent_one():
    chunk = activity.make_chunk(activity.Cohort(3000, 10, dt.date(2026, 9, 7), 8), 0, 1, 3000)
    for cutoff in (2, 5):
        seen = filtering.observable_oracle(chunk, cutoff, 8)
        latent = activity.oracle(chunk, cutoff, 8)
        assert seen["student_id"].tolist() == latent["student_id"].tolist()
        assert abs(seen["probability"].mean() - seen["dropped_out"].mean()) < 0.03
        auc_seen = roc_auc_score(seen["dropped_out"], seen["probability"])
        assert 0.65 < auc_seen < roc_auc_score(latent["dropped_out"], latent["probability"])
