"""The packaged model's folder: its layout, its checksums, and the checks made before loading it.

A bundle holds ``model.onnx`` (raw records in, prediction out), ``saved_model/`` (the same for
TensorFlow Serving), ``metadata.json`` (schema, lineage, metrics and the sha256 of every other file),
``reference.json`` (what monitoring measures drift against: :mod:`mlpipe.bundle.reference`) and
``README.md`` (the model card). ``SHA256SUMS`` lists the sha256 of every file, metadata.json
included, in the format ``sha256sum -c`` reads, so flipping any byte of any file is detected.

:func:`verify` reads nothing but these checksums until every file has matched them, refuses any
file that is not listed, and refuses by name the formats whose loading runs code (pickle, joblib,
HDF5/Keras files), whatever the checksums say. Then the metadata must fit its schema
(:class:`Metadata`, pydantic) and name as its version the hash of the model it sits next to, so a
replaced model cannot pass under an old version. Given a trusted public key, it also requires
``SHA256SUMS.sig`` to be that key's signature of the checksums (:mod:`mlpipe.bundle.signing`), which proves
who built the bundle. It never imports TensorFlow.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from mlpipe.core.errors import PipelineError

MODEL = "model.onnx"
SAVED_MODEL = "saved_model"
METADATA = "metadata.json"
CARD = "README.md"
CHECKSUMS = "SHA256SUMS"
SIGNATURE = (
    "SHA256SUMS.sig"  # optional: the builder's Ed25519 signature of SHA256SUMS (mlpipe.bundle.signing)
)
FORMAT_VERSION = 1
# Formats whose loaders can run code or are not part of a bundle: refused by name, never opened.
UNSAFE_SUFFIXES = frozenset(
    {".pkl", ".pickle", ".joblib", ".dill", ".h5", ".hdf5", ".keras", ".npy", ".npz", ".pt", ".pth"}
)
_LINE = re.compile(r"([0-9a-f]{64})  ([^\n]+)")
VERSION_LENGTH = 12  # a version id is the first hex digits of model.onnx's sha256


class BundleError(PipelineError):
    """The bundle is incomplete, altered, or holds a file it must not."""


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def version_of(model: bytes) -> str:
    """A bundle's version id: the start of its ONNX model's sha256 (another model, another id)."""
    return sha256(model)[:VERSION_LENGTH]


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
    """File -> sha256 of every file under ``folder`` except ``SHA256SUMS`` and its signature."""
    return {
        name: sha256(Path(folder, name).read_bytes())
        for name in list_files(folder)
        if name not in (CHECKSUMS, SIGNATURE)
    }


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


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class InputSpec(_Strict):
    """One input field: its JSON type, range (numbers) or levels (text), and its fill for a null."""

    type: Literal["integer", "number", "string"]
    min: float | None = None
    max: float | None = None
    categories: list[str] | None = None
    unknown: Literal["error", "ignore"] | None = None
    allowed: list[str] | None = None  # the data contract's levels, where unseen ones are ignored
    fill: float | str | None = None

    @model_validator(mode="after")
    def _fits_its_type(self) -> InputSpec:
        text = self.type == "string"
        if text and (self.categories is None or self.unknown is None):
            raise ValueError("a string input needs its categories and its unknown policy")
        if not text and (self.categories is not None or self.unknown is not None or self.allowed is not None):
            raise ValueError("a number input has no categories")
        if text and (self.min is not None or self.max is not None):
            raise ValueError("a string input has no range")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is above max {self.max}")
        return self


class OutputSpec(_Strict):
    name: str
    target: str
    type: str
    classes: list[Any] | None = None
    threshold: float | None = None


class Metadata(BaseModel):
    """What serving reads from ``metadata.json``, checked before it is used (other keys, e.g. the
    lineage and metrics, are for people and pass through as they are)."""

    model_config = ConfigDict(extra="allow", strict=True)

    format_version: Literal[1]
    name: str
    version: str
    task: Literal["regression", "binary", "multiclass"]
    inputs: dict[str, InputSpec]
    output: OutputSpec
    ids: list[str] = []
    files: dict[str, str]

    @model_validator(mode="after")
    def _consistent(self) -> Metadata:
        if not self.inputs:
            raise ValueError("the model has no inputs")
        if (self.task == "regression") != (self.output.classes is None):
            raise ValueError(
                f"a {self.task} model's output {'has no' if self.task == 'regression' else 'needs'} classes"
            )
        if self.task == "binary" and (self.output.threshold is None or len(self.output.classes or ()) != 2):
            raise ValueError("a binary model's output needs two classes and a threshold")
        return self


def parse_metadata(data: bytes) -> dict[str, Any]:
    """``metadata.json``'s content, checked against :class:`Metadata`.

    Raises:
        BundleError: naming the first field that does not fit, and why.
    """
    try:
        raw = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{METADATA}: not JSON: {exc}") from None
    if not isinstance(raw, dict) or raw.get("format_version") != FORMAT_VERSION:
        raise BundleError(f"{METADATA}: not a version-{FORMAT_VERSION} bundle")
    try:
        Metadata.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "metadata"
        raise BundleError(f"{METADATA}: {where}: {first['msg']}"[:300]) from None
    return raw


@dataclass(frozen=True)
class Verified:
    """A bundle whose every file matched its checksum: the metadata and the ONNX model's bytes."""

    folder: Path
    metadata: dict[str, Any]
    model: bytes


def verify(folder: str | os.PathLike[str], trusted_key: Any = None) -> Verified:
    """Check a bundle before anything in it is loaded; with ``trusted_key`` (an Ed25519 public key),
    first that the bundle is signed by it.

    In order: the folder exists; no file has an unsafe format; ``SHA256SUMS`` lists exactly the
    files present; each file's sha256 matches; ``metadata.json`` is a bundle of this format whose
    own file list agrees, its fields fit :class:`Metadata` and its version is the model's hash.
    Files are read once, so what was checked is what gets loaded.

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
    checksums = (root / CHECKSUMS).read_bytes()
    if trusted_key is not None:
        check_signature(root, checksums, trusted_key, present)
    try:
        listed = parse_checksums(checksums.decode("utf-8"))
    except UnicodeDecodeError:
        raise BundleError(f"{CHECKSUMS} is not text") from None
    for name in present:
        if name not in (CHECKSUMS, SIGNATURE) and name not in listed:
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
    metadata = parse_metadata(contents[METADATA])
    model_hash = version_of(contents[MODEL])
    if metadata["version"] != model_hash:
        raise BundleError(
            f"{METADATA}: version {metadata['version']!r} is not the hash of {MODEL} ({model_hash}):"
            " the model was replaced"
        )
    expected_files = {k: v for k, v in listed.items() if k != METADATA}
    if metadata.get("files") != expected_files:
        raise BundleError(f"{METADATA}: its file list disagrees with {CHECKSUMS}")
    return Verified(root, metadata, contents[MODEL])


def check_signature(root: Path, checksums: bytes, trusted_key: Any, present: list[str]) -> None:
    """Refuse a bundle that is unsigned, or whose signature is not ``trusted_key``'s of ``checksums``."""
    from mlpipe.bundle import signing

    if SIGNATURE not in present:
        raise BundleError(f"{SIGNATURE} is missing: the bundle is unsigned, and a trusted key was given")
    try:
        line = (root / SIGNATURE).read_text(encoding="ascii")
    except UnicodeDecodeError:
        raise BundleError(f"{SIGNATURE}: malformed (not text)") from None
    try:
        signing.check(checksums, line, trusted_key, SIGNATURE)
    except signing.SignatureError as exc:
        raise BundleError(str(exc)) from None


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
