"""The dual-branch network: the mask, not a padding value, says which weeks count."""

from __future__ import annotations

import numpy as np
import pytest

from mlpipe.training import sequence

SPEC = sequence.SequenceSpec(units=4, static_units=3, merged_units=3, epochs=2, batch_size=8)


@pytest.fixture(scope="module")
def network():
    return sequence.build(2, 6, 3, SPEC, seed=1)


def inputs(rng, n=5, weeks=6, observed=3):
    seq = rng.random((n, weeks, 3)) * 10
    mask = np.zeros((n, weeks), bool)
    mask[:, :observed] = True
    scale = sequence.SequenceScale.fit(rng.random((50, 2)), seq, mask)
    return scale, rng.random((n, 2)), seq, mask


def test_padded_weeks_do_not_move_the_output_and_an_idle_week_does(network):
    rng = np.random.default_rng(0)
    scale, static, seq, mask = inputs(rng)
    base = network.predict(scale.apply(static, seq, mask), verbose=0)
    garbage = seq.copy()
    garbage[:, 3:] = 1e3  # weeks after the cutoff: whatever they hold
    np.testing.assert_array_equal(base, network.predict(scale.apply(static, garbage, mask), verbose=0))
    idle = seq.copy()
    idle[:, 2] = 0.0  # an observed week with no activity is still a week
    assert not np.allclose(base, network.predict(scale.apply(static, idle, mask), verbose=0))


def test_it_trains_and_refuses_an_unknown_cell():
    rng = np.random.default_rng(1)
    scale, static, seq, mask = inputs(rng, n=40)
    y = rng.integers(0, 2, 40)
    model = sequence.build(2, 6, 3, SPEC, 2)
    losses = sequence.fit(model, scale.apply(static, seq, mask), y, scale.apply(static, seq, mask), y, SPEC)
    assert 1 <= len(losses) <= SPEC.epochs and all(np.isfinite(losses))
    probability = model.predict(scale.apply(static, seq, mask), verbose=0)
    assert ((probability > 0) & (probability < 1)).all()
    assert sequence.build(2, 6, 3, sequence.SequenceSpec(cell="lstm", units=2), 3).get_layer("lstm")
    with pytest.raises(ValueError, match="use gru or lstm"):
        sequence.build(2, 6, 3, sequence.SequenceSpec(cell="rnn"), 3)
