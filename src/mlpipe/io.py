"""The only place that touches the file system: atomic writes and the few formats stages share.

Every output is written under a temporary name in its destination folder and renamed into place
only when complete, so a failed stage leaves no half-written file (house style, point 9).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], *, directory: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling of ``path`` to write into; rename it onto ``path`` on success.

    Args:
        path: Final location of the file or folder.
        directory: Yield an empty temporary folder instead of a file name.

    On an exception the temporary file or folder is removed and ``path`` is left untouched.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    if directory:
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    else:
        fd, name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
        os.close(fd)
        tmp = Path(name)
    try:
        yield tmp
        if directory:
            os.chmod(tmp, 0o755)
            if final.exists():
                shutil.rmtree(final)
        else:
            os.chmod(tmp, 0o644)
        os.replace(tmp, final)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise


def _clean(value: Any) -> Any:
    """Make a value JSON-safe and stable: numpy scalars to Python, NaN/inf to None."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def dumps_json(data: Any, *, sort_keys: bool = True) -> str:
    """Serialise with a trailing newline, so equal data gives equal bytes.

    Args:
        data: What to write; numpy scalars become Python numbers and NaN becomes null.
        sort_keys: Sort mapping keys; turn off where key order carries meaning.
    """
    return json.dumps(_clean(data), indent=2, sort_keys=sort_keys, allow_nan=False) + "\n"


def write_json(path: str | os.PathLike[str], data: Any, *, sort_keys: bool = True) -> None:
    """Atomically write ``data`` as deterministic JSON (see :func:`dumps_json`)."""
    with atomic_path(path) as tmp:
        tmp.write_text(dumps_json(data, sort_keys=sort_keys), encoding="utf-8")


def read_json(path: str | os.PathLike[str]) -> Any:
    """Read a JSON file."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def write_parquet(path: str | os.PathLike[str], frame: pd.DataFrame) -> None:
    """Atomically write a frame as Parquet without its index (byte-stable for equal frames)."""
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False, engine="pyarrow", compression="zstd")


def read_parquet(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a Parquet file written by :func:`write_parquet`."""
    return pd.read_parquet(path, engine="pyarrow")


def parquet_rows(path: str | os.PathLike[str]) -> int:
    """The number of rows of a Parquet file, from its footer (no data is read)."""
    import pyarrow.parquet as pq

    return pq.ParquetFile(path).metadata.num_rows
