"""The packaged model's folder: its layout, its checksums, and the checks made before loading it.

A bundle holds ``model.onnx`` (raw records in, prediction out), ``saved_model/`` (the same for
TensorFlow Serving), ``metadata.json`` (schema, lineage, metrics and the sha256 of every other file),
``reference.json`` (what monitoring measures drift against: :mod:`mlpipe.reference`) and
``README.md`` (the model card). ``SHA256SUMS`` lists the sha256 of every file, metadata.json
included, in the format ``sha256sum -c`` reads, so flipping any byte of any file is detected.

:func:`verify` reads nothing but these checksums until every file has matched them, refuses any
file that is not listed, and refuses by name the formats whose loading runs code (pickle, joblib,
HDF5/Keras files), whatever the checksums say. It never imports TensorFlow.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlpipe.errors import PipelineError

MODEL = "model.onnx"
SAVED_MODEL = "saved_model"
METADATA = "metadata.json"
CARD = "README.md"
CHECKSUMS = "SHA256SUMS"
FORMAT_VERSION = 1
# Formats whose loaders can run code or are not part of a bundle: refused by name, never opened.
UNSAFE_SUFFIXES = frozenset(
    {".pkl", ".pickle", ".joblib", ".dill", ".h5", ".hdf5", ".keras", ".npy", ".npz", ".pt", ".pth"}
)
_LINE = re.compile(r"([0-9a-f]{64})  ([^\n]+)")


class BundleError(PipelineError):
    """The bundle is incomplete, altered, or holds a file it must not."""


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def list_files(folder: Path) -> list[str]:
    """Every file under ``folder`` as a sorted POSIX relative path.

    Raises:
        BundleError: for a symbolic link or anything that is not a plain file or folder.
    """
    found = []
    for root, dirs, files in os.walk(folder):
        for name in [*dirs, *files]:
            path = Path(root, name)
            if path.is_symlink() or not (path.is_dir() or path.is_file()):
                raise BundleError(f"{path.relative_to(folder).as_posix()}: not a plain file")
        found += [Path(root, name).relative_to(folder).as_posix() for name in files]
    return sorted(found)


def file_hashes(folder: Path) -> dict[str, str]:
    """File -> sha256 of every file under ``folder`` except ``SHA256SUMS``."""
    return {name: sha256(Path(folder, name).read_bytes()) for name in list_files(folder) if name != CHECKSUMS}


def format_checksums(hashes: dict[str, str]) -> str:
    """``SHA256SUMS`` text (the ``sha256sum`` format), sorted by path."""
    return "".join(f"{digest}  {name}\n" for name, digest in sorted(hashes.items()))


def checksums_text(folder: Path) -> str:
    """``SHA256SUMS`` for every file under ``folder`` except itself."""
    return format_checksums(file_hashes(folder))


def parse_checksums(text: str) -> dict[str, str]:
    """File -> sha256 from ``SHA256SUMS`` text.

    Raises:
        BundleError: naming the line, if a line is malformed, a path escapes the folder or repeats.
    """
    listed: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        match = _LINE.fullmatch(line)
        name = match.group(2) if match else ""
        if not match or name.startswith("/") or ".." in name.split("/") or name in listed:
            raise BundleError(f"{CHECKSUMS} line {number} is malformed: {line[:80]!r}")
        listed[name] = match.group(1)
    return listed


@dataclass(frozen=True)
class Verified:
    """A bundle whose every file matched its checksum: the metadata and the ONNX model's bytes."""

    folder: Path
    metadata: dict[str, Any]
    model: bytes


def verify(folder: str | os.PathLike[str]) -> Verified:
    """Check a bundle before anything in it is loaded.

    In order: the folder exists; no file has an unsafe format; ``SHA256SUMS`` lists exactly the
    files present; each file's sha256 matches; ``metadata.json`` is a bundle of this format whose
    own file list agrees. Files are read once, so what was checked is what gets loaded.

    Raises:
        BundleError: naming the first file that fails, and why.
    """
    root = Path(folder)
    if not root.is_dir():
        raise BundleError(f"bundle folder not found: {root}")
    present = list_files(root)
    for name in present:
        if Path(name).suffix.lower() in UNSAFE_SUFFIXES:
            raise BundleError(
                f"{name}: {Path(name).suffix} files can run code when loaded; refusing the bundle"
            )
    if CHECKSUMS not in present:
        raise BundleError(f"{CHECKSUMS} is missing: not a bundle written by the package stage")
    try:
        listed = parse_checksums((root / CHECKSUMS).read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise BundleError(f"{CHECKSUMS} is not text") from None
    for name in present:
        if name != CHECKSUMS and name not in listed:
            raise BundleError(f"{name}: not in {CHECKSUMS}; refusing an unlisted file")
    contents = {}
    for name, expected in listed.items():
        path = root / name
        if not path.is_file():
            raise BundleError(f"{name}: listed in {CHECKSUMS} but missing")
        data = path.read_bytes()
        if sha256(data) != expected:
            raise BundleError(f"{name}: sha256 does not match {CHECKSUMS}; the file was altered")
        if name in (METADATA, MODEL):
            contents[name] = data
    if METADATA not in contents or MODEL not in contents:
        raise BundleError(f"{METADATA} and {MODEL} must both be listed in {CHECKSUMS}")
    metadata = json.loads(contents[METADATA])
    if not isinstance(metadata, dict) or metadata.get("format_version") != FORMAT_VERSION:
        raise BundleError(f"{METADATA}: not a version-{FORMAT_VERSION} bundle")
    expected_files = {k: v for k, v in listed.items() if k != METADATA}
    if metadata.get("files") != expected_files:
        raise BundleError(f"{METADATA}: its file list disagrees with {CHECKSUMS}")
    return Verified(root, metadata, contents[MODEL])


def check_graph(model: bytes) -> None:
    """Refuse an ONNX graph that needs custom operators or reads data from other files."""
    import onnx

    proto = onnx.load_from_string(model)
    domains = {o.domain for o in proto.opset_import} | {n.domain for n in proto.graph.node}
    foreign = sorted(d for d in domains if d not in ("", "ai.onnx"))
    if foreign or proto.functions:
        raise BundleError(f"{MODEL}: uses operators outside standard ONNX ({', '.join(foreign)})")
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in proto.graph.initializer):
        raise BundleError(f"{MODEL}: reads tensors from external files")
