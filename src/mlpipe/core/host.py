"""What would make a number depend on the machine that computes it, pinned before any library loads,
so that a fresh clone on another host retrains the committed model bit for bit.

Measured on the demo (``bench/host_independence.py``): the trained weights changed with oneDNN's
instruction set (``ONEDNN_MAX_CPU_ISA``: SSE4.1 against AVX2) and with TensorFlow's thread count
(one core against two, through the work split of its reductions); the linear baselines changed
with OpenBLAS's kernels (``OPENBLAS_CORETYPE``) and threads, which :mod:`mlpipe.evaluation.portable` avoids.
So every stage (:func:`mlpipe.core.stage.run`) caps oneDNN at AVX2, which every x86-64 server since
2013 has (a host without it cannot reproduce the model, and is warned), and runs TensorFlow's
kernels on one thread; the network is small, so this costs little (the README's figure).
``OPENBLAS_CORETYPE`` is left alone: some hosts set it for correctness, and nothing committed
goes through BLAS.
"""

from __future__ import annotations

import logging
import os
import platform
from pathlib import Path

log = logging.getLogger("mlpipe.core.host")

ONEDNN_ISA = "AVX2"  # the floor: oneDNN dispatches no wider kernels, whatever the CPU has
TENSORFLOW_THREADS = "1"  # the split of a reduction depends on the thread count
PINNED = {
    "ONEDNN_MAX_CPU_ISA": ONEDNN_ISA,
    "TF_NUM_INTRAOP_THREADS": TENSORFLOW_THREADS,
    "TF_NUM_INTEROP_THREADS": TENSORFLOW_THREADS,
}


def pin() -> None:
    """Set the pinned variables in this process's environment (its children inherit them),
    overriding a different value with a warning; warn when the CPU lacks the instruction set."""
    environ = os.environ
    for name, value in PINNED.items():
        if environ.get(name, value) != value:
            log.warning(
                "%s=%s overridden to %s: the committed model was trained so", name, environ[name], value
            )
        environ[name] = value
    if not has_avx2():
        log.warning("not an x86-64 CPU with AVX2 and FMA: training here cannot give the committed bits")


def has_avx2() -> bool:
    """Whether the CPU is x86-64 with AVX2 and FMA (assumed where ``/proc/cpuinfo`` is missing)."""
    cpuinfo = Path("/proc/cpuinfo")
    if platform.machine() not in ("x86_64", "AMD64"):
        return False  # another architecture: other kernels altogether
    if not cpuinfo.is_file():
        return True
    flags = next(
        (
            line.split(":", 1)[1].split()
            for line in cpuinfo.read_text().splitlines()
            if line.startswith("flags")
        ),
        [],
    )
    return {"avx2", "fma"} <= set(flags)
