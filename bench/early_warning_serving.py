"""Scoring early-warning histories through the Python path a server would use: a request's
records read by :class:`mlpipe.serving.history.HistorySchema`, then the ONNX graph in ONNX Runtime.

    python bench/early_warning_serving.py [--weeks 30] [--calls 2000] [--students 20000]

Prints the p50/p99 latency of one student with a full history (one ONNX Runtime thread) and the
students per second scored in batches of 1,000, from JSON records and from point-in-time arrays
(what batch scoring from the activity table holds), for the issue's targets (p50 at most 2 ms through
the Python API; at least 20,000 students/s batch scoring). The network's weights are as built,
untrained: the time does not depend on their values.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import onnxruntime as ort

from mlpipe.bundle import sequence_onnx
from mlpipe.serving.history import HistorySchema
from mlpipe.training import sequence

STATIC = ("prior_gpa", "age", "part_time")
CHANNELS = ("minutes", "clicks", "submissions", "score")


def record(rng: np.random.Generator, weeks: int) -> dict:
    history = [
        {
            "minutes": int(rng.integers(0, 300)),
            "clicks": int(rng.integers(0, 90)),
            "submissions": 1,
            "score": 71.5,
        }
        for _ in range(weeks)
    ]
    return {"prior_gpa": 3.2, "age": 21, "part_time": 0, "history": history}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--weeks", type=int, default=30)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--students", type=int, default=20_000)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    network = sequence.build(len(STATIC), args.weeks, len(CHANNELS), sequence.SequenceSpec(), seed=1)
    seq = rng.gamma(2.0, 10.0, (500, args.weeks, len(CHANNELS)))
    scale = sequence.SequenceScale.fit(
        rng.normal(size=(500, len(STATIC))), seq, np.ones((500, args.weeks), bool)
    )
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = ort.InferenceSession(
        sequence_onnx.build(network, scale).SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    schema = HistorySchema(STATIC, CHANNELS, args.weeks)
    one = [record(rng, args.weeks)]
    for _ in range(50):
        session.run(None, schema.parse(one))
    times = []
    for _ in range(args.calls):
        began = time.perf_counter()
        session.run(None, schema.parse(one))
        times.append(time.perf_counter() - began)
    cohort = [record(rng, int(rng.integers(0, args.weeks + 1))) for _ in range(args.students)]
    began = time.perf_counter()
    for start in range(0, len(cohort), 1000):
        session.run(None, schema.parse(cohort[start : start + 1000]))
    rate = len(cohort) / (time.perf_counter() - began)
    arrays = schema.parse(cohort)  # as mlpipe predict --as-of would hold them: point-in-time arrays
    began = time.perf_counter()
    for start in range(0, len(cohort), 1000):
        session.run(None, {name: value[start : start + 1000] for name, value in arrays.items()})
    array_rate = len(cohort) / (time.perf_counter() - began)
    p50, p99 = np.percentile(np.array(times) * 1000, [50, 99])
    print(f"one student, {args.weeks} weeks: p50 {p50:.3f} ms, p99 {p99:.3f} ms (target p50 <= 2 ms)")
    print(f"batches of 1,000 JSON records: {rate:,.0f} students/s; of arrays: {array_rate:,.0f} students/s")
    print(f"(target >= 20,000 students/s batch scoring); load {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
