"""Writing a bundle folder: the files around the SavedModel, their checksums and signature, then
the same check serving makes before it loads one (:func:`mlpipe.bundle.layout.verify`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlpipe.bundle import card, signing
from mlpipe.bundle import layout as bundle
from mlpipe.core import files


def write_bundle(
    folder: Path, onnx_bytes: bytes, meta: dict[str, Any], key: Any = None, model_card: str | None = None
) -> None:
    """The ONNX model, the model card (default: a flat model's), the metadata and the checksums,
    next to the SavedModel already in ``folder``, and with a signing ``key`` their signature; then
    verify the folder as serving will (against the key's public half)."""
    (folder / bundle.MODEL).write_bytes(onnx_bytes)
    (folder / bundle.CARD).write_text(model_card or card.model_card(meta), encoding="utf-8")
    meta["files"] = bundle.file_hashes(folder)
    metadata = files.dumps_json(meta, sort_keys=False).encode("utf-8")
    (folder / bundle.METADATA).write_bytes(metadata)
    hashes = {**meta["files"], bundle.METADATA: bundle.sha256(metadata)}
    checksums = bundle.format_checksums(hashes).encode("utf-8")
    (folder / bundle.CHECKSUMS).write_bytes(checksums)
    if key is not None:
        (folder / bundle.SIGNATURE).write_text(signing.sign(checksums, key), encoding="ascii")
    bundle.verify(folder, trusted_key=None if key is None else key.public_key())
