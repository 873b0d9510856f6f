"""Stage ``package`` of the early-warning pipeline: the signed, verified bundle that serving loads,
with raw history in (:mod:`mlpipe.bundle.sequence_bundle`).

Inputs: the point-in-time arrays (``test`` for the parity check, ``train`` for the reference), the
preprocessor JSON, the model folder, evaluate's metrics and ``dvc.lock`` (the lineage). Outputs: the
bundle folder (``model.onnx`` with ONNX's own GRU/LSTM operator, ``saved_model/``,
``metadata.json``, the model card, ``reference.json`` (what monitoring measures drift against),
``SHA256SUMS`` and, with ``MLPIPE_SIGNING_KEY`` set, its signature) and metrics: the largest
difference of ONNX Runtime and the SavedModel from Keras on the test rows.
Params: ``package.*`` (and the sections the metadata names).

Refused, nothing written, if either export differs from Keras by more than
``package.parity_tolerance``.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mlpipe.bundle import layout as bundle
from mlpipe.bundle import lineage, reference, sequence_bundle, sequence_onnx, signing
from mlpipe.bundle.writing import write_bundle
from mlpipe.core import files
from mlpipe.core.errors import PipelineError
from mlpipe.core.params import load_early_warning_params
from mlpipe.core.stage import run
from mlpipe.features import point_in_time

log = logging.getLogger("mlpipe.early_warning.package")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m mlpipe.early_warning.package", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--params", default="params.yaml", help="params file")
    parser.add_argument("--splits", required=True, help="preprocess's folder of point-in-time arrays")
    parser.add_argument("--preprocessor", required=True, help="preprocessor JSON")
    parser.add_argument("--model", required=True, help="model folder from train")
    parser.add_argument("--evaluation", required=True, help="evaluate's metrics JSON")
    parser.add_argument("--lock", default="dvc.lock", help="dvc.lock, for the lineage")
    parser.add_argument("--out", required=True, help="bundle folder to write")
    parser.add_argument("--metrics", required=True, help="parity metrics JSON to write")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    params = load_early_warning_params(args.params)
    prep = files.read_json(args.preprocessor)
    rows = {n: len(np.load(Path(args.splits, n, "ids.npy"))) for n in ("train", "val", "test")}
    configured = signing.from_env(signing.SIGNING_KEY_ENV)
    key = signing.private_key(configured) if configured else None  # read first: a bad key fails fast
    meta = sequence_bundle.metadata(prep, params, files.read_json(args.evaluation), rows)
    lock = lineage.read_lock(Path(args.lock))
    meta["lineage"] = lineage.outputs(lock, "package", Path(args.lock))

    from mlpipe.bundle.savedmodel import load_signature
    from mlpipe.training.model import load_model

    meta["git"] = lineage.git_revision(lineage.code_files(lock))  # after the imports: they are code
    network, scale = load_model(args.model), point_in_time.SequenceScale.from_dict(prep["scale"])
    onnx_bytes = sequence_onnx.build(network, scale, params.package.name).SerializeToString()
    meta["version"] = bundle.version_of(onnx_bytes)
    with files.atomic_path(args.out, directory=True) as folder:
        sequence_bundle.export(network, scale, folder / bundle.SAVED_MODEL)
        signature = load_signature(folder / bundle.SAVED_MODEL)
        test = point_in_time.load(args.splits, "test")
        meta["parity"], probability = sequence_bundle.parity(network, scale, onnx_bytes, signature, test)
        files.write_json(args.metrics, {"parity": meta["parity"]})
        worst = max(meta["parity"].values())
        if worst > params.package.parity_tolerance:
            raise PipelineError(
                f"parity {worst:.2e} is above package.parity_tolerance {params.package.parity_tolerance}:"
                " the exports disagree with the trained network; not packaging"
            )
        train = point_in_time.load(args.splits, "train")
        files.write_json(
            folder / reference.FILE, sequence_bundle.reference_document(train, prep, probability)
        )
        write_bundle(folder, onnx_bytes, meta, key, sequence_bundle.card(meta))
    log.info(
        "packaged %s %s: parity %.2e (ONNX), %.2e (SavedModel), %s",
        meta["name"],
        meta["version"],
        meta["parity"]["onnx"],
        meta["parity"]["saved_model"],
        f"signed by key {signing.key_id(key.public_key())}" if key else "unsigned",
    )


if __name__ == "__main__":
    raise SystemExit(run(main))
