"""Training on the small demo data: the model learns, and training is byte-for-byte repeatable."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from mlpipe import preprocess, train
from mlpipe.core import files
from mlpipe.evaluation import metrics
from mlpipe.features import preprocessor

keras = pytest.importorskip("keras")
from mlpipe.training.model import build_model, load_model, predict  # noqa: E402


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, valid_frame, params_dict) -> Path:
    """Splits and a preprocessor from the small demo data, and params for a short training."""
    root = tmp_path_factory.mktemp("train")
    data = dict(params_dict)
    data["train"] = {
        **params_dict["train"],
        "epochs": 60,
        "patience": 8,
        "units": [64, 32],
        "dropout": [0.1, 0.0],
    }
    (root / "params.yaml").write_text(yaml.safe_dump(data))
    files.write_parquet(root / "valid.parquet", valid_frame)
    preprocess.main(
        [
            "--params",
            str(root / "params.yaml"),
            "--data",
            str(root / "valid.parquet"),
            "--out",
            str(root / "splits"),
        ]
        + ["--preprocessor", str(root / "prep.json"), "--metrics", str(root / "prep_metrics.json")]
    )
    return root


def run_train(root: Path, name: str) -> Path:
    out = root / name
    train.main(
        ["--params", str(root / "params.yaml"), "--splits", str(root / "splits")]
        + [
            "--preprocessor",
            str(root / "prep.json"),
            "--out",
            str(out / "model"),
            "--live",
            str(out / "live"),
        ]
    )
    return out


def test_build_model_follows_params(params):
    model = build_model(12, params.train)
    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    assert [layer.units for layer in dense] == [*params.train.units, 1]
    rates = [layer.rate for layer in model.layers if isinstance(layer, keras.layers.Dropout)]
    assert rates == [r for r in params.train.dropout if r > 0]
    assert model.loss == "mse" and model.output_shape == (None, 1)
    assert float(model.optimizer.learning_rate) == pytest.approx(params.train.learning_rate)
    assert model.optimizer.weight_decay == pytest.approx(params.train.weight_decay)


def test_model_learns_and_beats_the_mean(workdir):
    out = run_train(workdir, "a")
    prep = preprocessor.Preprocessor.from_dict(files.read_json(workdir / "prep.json"))
    test = files.read_parquet(workdir / "splits" / "test.parquet")
    y = preprocessor.target(test, prep)
    predicted = predict(load_model(out / "model"), preprocessor.transform(test, prep))
    model_rmse = metrics.regression_metrics(y, predicted)["rmse"]
    mean_rmse = metrics.regression_metrics(y, np.full_like(y, y.mean()))["rmse"]
    assert model_rmse < 0.5 * mean_rmse
    summary = files.read_json(out / "live" / "metrics.json")
    assert summary["epochs_run"] > summary["best_epoch"] >= 1
    lr = (out / "live" / "plots" / "metrics" / "train" / "learning_rate.tsv").read_text().split()
    assert lr[:2] == ["step", "learning_rate"]


def test_training_is_byte_for_byte_repeatable(workdir):
    first = workdir / "a" if (workdir / "a").exists() else run_train(workdir, "a")
    second = run_train(workdir, "b")
    for relative in ("model/model.weights.h5", "model/model.json", "live/metrics.json"):
        assert (first / relative).read_bytes() == (second / relative).read_bytes(), relative


def test_training_stops_on_bad_params_before_touching_outputs(workdir, capsys):
    from mlpipe.core.stage import run

    data = yaml.safe_load((workdir / "params.yaml").read_text())
    data["train"]["learning_rat"] = 0.1
    (workdir / "bad.yaml").write_text(yaml.safe_dump(data))
    argv = ["--params", str(workdir / "bad.yaml"), "--splits", str(workdir / "splits")]
    argv += ["--preprocessor", str(workdir / "prep.json"), "--out", str(workdir / "c" / "m")]
    assert run(train.main, [*argv, "--live", str(workdir / "c" / "l")]) == 1
    assert "unknown key 'train.learning_rat'" in capsys.readouterr().err
    assert not (workdir / "c").exists()


def test_balanced_class_weights_equalise_the_classes():
    labels = np.array([0, 0, 0, 1])
    weights = train.class_weights(labels, 2)
    assert weights == {0: pytest.approx(4 / 6), 1: pytest.approx(2.0)}
    assert weights[0] * 3 == pytest.approx(weights[1] * 1)
    from mlpipe.core.errors import PipelineError

    with pytest.raises(PipelineError, match="applies only to classification"):
        train.class_weights(np.array([0.5, 1.5]), 0)
    with pytest.raises(PipelineError, match="class 2 has no training rows"):
        train.class_weights(np.array([0, 1, 1]), 3)


def test_the_output_layer_follows_the_task(params):
    binary = build_model(5, params.train, "binary")
    multi = build_model(5, params.train, "multiclass", n_classes=4)
    assert binary.layers[-1].get_config()["activation"] == "sigmoid" and binary.output_shape == (None, 1)
    assert multi.layers[-1].get_config()["activation"] == "softmax" and multi.output_shape == (None, 4)
    assert binary.loss == "binary_crossentropy" and multi.loss == "sparse_categorical_crossentropy"
    x = np.zeros((3, 5), dtype=np.float32)
    np.testing.assert_allclose(predict(multi, x).sum(axis=1), 1.0, rtol=1e-6)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_workers_on_loopback_train_a_model_as_good_as_one_process(workdir):
    """MultiWorkerMirroredStrategy: two `train` processes on 127.0.0.1, TF_CONFIG from the environment."""
    import json
    import os
    import subprocess
    import sys

    single = workdir / "a" if (workdir / "a").exists() else run_train(workdir, "a")
    addresses = [f"127.0.0.1:{free_port()}" for _ in range(2)]
    workers = []
    for index in range(2):
        config = {"cluster": {"worker": addresses}, "task": {"type": "worker", "index": index}}
        env = {**os.environ, "TF_CONFIG": json.dumps(config), "TF_CPP_MIN_LOG_LEVEL": "2"}
        out = workdir / f"worker{index}"
        command = [sys.executable, "-m", "mlpipe.train", "--params", str(workdir / "params.yaml")]
        command += ["--splits", str(workdir / "splits"), "--preprocessor", str(workdir / "prep.json")]
        command += ["--out", str(out / "model"), "--live", str(out / "live")]
        workers.append(subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True))
    try:
        logs = [w.communicate(timeout=300)[1] for w in workers]
    finally:
        for w in workers:
            w.kill()
    assert [w.returncode for w in workers] == [0, 0], logs
    assert "training as worker 0 of 2 workers" in logs[0]
    assert not (workdir / "worker1").exists()  # only the chief writes
    prep = preprocessor.Preprocessor.from_dict(files.read_json(workdir / "prep.json"))
    test = files.read_parquet(workdir / "splits" / "test.parquet")
    x, y = preprocessor.transform(test, prep), preprocessor.target(test, prep)
    rmse = {
        name: metrics.regression_metrics(y, predict(load_model(folder / "model"), x))["rmse"]
        for name, folder in (("single", single), ("distributed", workdir / "worker0"))
    }
    assert rmse["distributed"] == pytest.approx(rmse["single"], rel=0.1), rmse
    summary = files.read_json(workdir / "worker0" / "live" / "metrics.json")
    assert summary["epochs_run"] > summary["best_epoch"] >= 1
    loss = (workdir / "worker0" / "live" / "plots" / "metrics" / "eval" / "loss.tsv").read_text().split()
    assert loss[:2] == ["step", "loss"] and len(loss) == 2 + 2 * summary["epochs_run"]


def test_tf_config_is_read_and_checked():
    from mlpipe.core.errors import PipelineError
    from mlpipe.training.distributed import cluster

    assert cluster({}) is None
    assert (
        cluster({"TF_CONFIG": '{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 0}}'})
        is None
    )
    two = '{"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 1}}'
    assert cluster({"TF_CONFIG": two}).chief is False
    assert cluster({"TF_CONFIG": two.replace('"index": 1', '"index": 0')}).chief is True
    chief = '{"cluster": {"chief": ["c:1"], "worker": ["a:1"]}, "task": {"type": "worker", "index": 0}}'
    assert cluster({"TF_CONFIG": chief}).chief is False
    assert cluster({"TF_CONFIG": chief.replace('"worker", "index"', '"chief", "index"')}).chief is True
    with pytest.raises(PipelineError, match="must be JSON"):
        cluster({"TF_CONFIG": "{not json"})
    with pytest.raises(PipelineError, match="not a chief or worker"):
        cluster({"TF_CONFIG": two.replace('"index": 1', '"index": 5')})


def test_the_tf_dataset_yields_exactly_the_seeded_batches():
    from mlpipe.training import feed

    x = np.arange(3000, dtype=np.float32).reshape(-1, 2)
    y = (np.arange(1500) % 3).astype(np.int32)
    batches = feed.Batches(
        x, y, 64, seed=3, shuffle=True, class_weight={0: 1.0, 1: 2.0, 2: 0.5}, block_rows=500
    )
    expected = list(batches.one_pass(0))  # 23 full batches and one of 28 rows
    got = [tuple(t.numpy() for t in b) for b in feed.dataset(batches, repeat=False)]
    assert len(got) == len(expected) == batches.steps == 24
    for mine, theirs in zip(got, expected, strict=True):
        for a, b in zip(mine, theirs, strict=True):
            np.testing.assert_array_equal(a, b)
    forever = iter(feed.dataset(batches, repeat=True))
    second_pass = [next(forever)[1].numpy() for _ in range(2 * batches.steps)][batches.steps :]
    np.testing.assert_array_equal(
        np.concatenate(second_pass), np.concatenate([b[1] for b in batches.one_pass(1)])
    )


def test_the_multiworker_schedule_stops_and_lowers_the_rate_where_keras_callbacks_do(params_dict):
    """The custom loop's schedule against Keras' own callbacks, fed the same validation losses."""
    from mlpipe.core.params import parse_params
    from mlpipe.training.distributed import Schedule

    values = {**params_dict["train"], "patience": 4, "lr_patience": 2, "lr_factor": 0.5, "min_lr": 1e-4}
    params = parse_params({**params_dict, "train": values}).train
    rng = np.random.default_rng(0)
    losses = [*(1.0 - 0.05 * np.arange(10)), *(0.55 + rng.normal(0, 0.01, 30))]  # falls, then stalls
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=values["learning_rate"]), loss="mse")
    keras_callbacks = train.callbacks(params)
    for callback in keras_callbacks:
        callback.set_model(model)
        callback.on_train_begin()
    schedule, rate = Schedule(params), values["learning_rate"]
    for epoch, loss in enumerate(losses):
        for callback in keras_callbacks:
            callback.on_epoch_end(epoch, {"val_loss": loss})
        _, new_rate, stop = schedule.after_epoch(loss, rate)
        rate = new_rate if new_rate is not None else rate
        assert rate == pytest.approx(float(model.optimizer.learning_rate.numpy()), rel=1e-6), epoch
        assert stop == model.stop_training, epoch
        if stop:
            break
    assert stop and epoch < len(losses) - 1  # the sequence did stall before its end
    assert rate < values["learning_rate"]


def test_a_model_still_improving_at_the_epoch_cap_is_reported(params):
    cap, patience = params.train.epochs, params.train.patience
    assert train.budget_warning(cap - 10, cap - 12, params.train) is None  # early stopping decided
    assert train.budget_warning(cap, cap - patience - 1, params.train) is None  # plateaued before the cap
    warning = train.budget_warning(cap, cap - 1, params.train)
    assert f"the best epoch ({cap} of train.epochs {cap}) came within train.patience ({patience})" in warning
    assert "raise train.epochs" in warning
