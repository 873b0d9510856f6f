"""Running a stage module as a program: logging set-up, the host pins (:mod:`mlpipe.core.host`) and the
one-line error contract."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Sequence

from mlpipe.core import host
from mlpipe.core.errors import PipelineError


def run(main: Callable[[Sequence[str] | None], None], argv: Sequence[str] | None = None) -> int:
    """Run a stage's ``main``; map a :class:`PipelineError` to exit 1 and one line on stderr.

    The line reads ``<module>: error: <message>``. Other exceptions are bugs and keep their
    traceback.
    """
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s", stream=sys.stderr)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ INFO lines, for stages that load it
    host.pin()  # before any stage imports TensorFlow
    try:
        main(argv)
    except PipelineError as exc:
        message = " ".join(str(exc).split())
        module = sys.modules.get(main.__module__)
        name = getattr(getattr(module, "__spec__", None), "name", None) or main.__module__
        sys.stderr.write(f"{name}: error: {message}\n")
        return 1
    return 0
