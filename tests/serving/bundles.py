"""Bundles altered the way a test needs: forged checksums, or another version of the same model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from mlpipe.bundle import layout as bundle


def refresh_checksums(folder: Path, version: bool = True) -> None:
    """Rewrite SHA256SUMS and metadata's file list (and, with ``version``, its version id, the
    model's hash) as a forger would, so only format checks remain."""
    meta = json.loads((folder / "metadata.json").read_text())
    if version:
        meta["version"] = bundle.version_of((folder / bundle.MODEL).read_bytes())
    listed = [
        n for n in bundle.list_files(folder) if n not in (bundle.CHECKSUMS, bundle.SIGNATURE, bundle.METADATA)
    ]
    meta["files"] = {n: bundle.sha256((folder / n).read_bytes()) for n in listed}
    (folder / "metadata.json").write_text(json.dumps(meta))
    (folder / "SHA256SUMS").write_text(bundle.checksums_text(folder))


def another_version(source: Path, dest: Path, shift: float) -> Path:
    """A copy of the bundle at ``source`` whose output layer's bias is raised by ``shift``: another
    model, consistently versioned (the version is its ONNX file's hash, as the package stage sets it)."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    folder = Path(shutil.copytree(source, dest))
    model = onnx.load(folder / bundle.MODEL)
    bias = [t for t in model.graph.initializer if t.name.startswith("bias_")][-1]
    raised = numpy_helper.to_array(bias) + np.asarray(shift, numpy_helper.to_array(bias).dtype)
    bias.CopyFrom(numpy_helper.from_array(raised, bias.name))
    data = model.SerializeToString()
    (folder / bundle.MODEL).write_bytes(data)
    refresh_checksums(folder)
    return folder
