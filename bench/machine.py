"""What every benchmark prints first: the machine it ran on."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def describe() -> str:
    """``machine: <cores> cores, <CPU model>, Python <version>``."""
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    models = [ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")]
    cpu = models[0] if models else platform.processor()
    return f"machine: {os.cpu_count()} cores, {cpu}, Python {platform.python_version()}"
