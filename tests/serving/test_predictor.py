"""The predictor: verification before loading, refusal of unsafe files, and per-field schema errors."""

from __future__ import annotations

import json
import math
import pickle
from pathlib import Path

import numpy as np
import onnx
import pandas as pd
import pytest
from onnx import TensorProto, helper
from tests.serving.bundles import refresh_checksums

from mlpipe.bundle import layout as bundle
from mlpipe.bundle.layout import BundleError
from mlpipe.serving.predictor import Predictor, RecordError


class Exploit:
    """Unpickling this writes a marker file: proof that a pickle was loaded."""

    marker: Path

    def __reduce__(self):
        return (Path.write_text, (self.marker, "unpickled"))


def test_nothing_is_read_until_first_use(bundle_copy: Path, record: dict):
    predictor = Predictor(bundle_copy)
    assert not predictor.ready
    (bundle_copy / "model.onnx").write_bytes(b"corrupt")  # altered before first use: caught at first use
    with pytest.raises(BundleError, match="model.onnx: sha256 does not match"):
        predictor.predict_one(record)
    assert not predictor.ready


@pytest.mark.parametrize(
    "name",
    ["model.onnx", "metadata.json", "README.md", "SHA256SUMS", "saved_model/variables/variables.index"],
)
def test_flipping_one_byte_of_any_file_refuses_the_bundle(bundle_copy: Path, name: str, record: dict):
    path = bundle_copy / name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    predictor = Predictor(bundle_copy)
    with pytest.raises(BundleError):
        predictor.load()
    with pytest.raises(BundleError):  # and it stays refused
        predictor.predict_one(record)
    assert predictor.load_error


def test_a_planted_pickle_is_refused_without_being_unpickled(bundle_copy: Path, tmp_path: Path):
    Exploit.marker = tmp_path / "pwned"
    (bundle_copy / "scaler.pkl").write_bytes(pickle.dumps(Exploit()))
    with pytest.raises(BundleError, match=r"scaler.pkl: .pkl files can run code when loaded"):
        Predictor(bundle_copy).load()
    refresh_checksums(bundle_copy)  # even when the checksums were forged to list it
    with pytest.raises(BundleError, match=r"scaler.pkl: .pkl files can run code"):
        Predictor(bundle_copy).load()
    assert not Exploit.marker.exists()


@pytest.mark.parametrize("name", ["model.h5", "saved_model/keras_model.keras", "weights.joblib"])
def test_code_running_formats_are_refused_by_name(bundle_copy: Path, name: str):
    (bundle_copy / name).write_bytes(b"\x89HDF\r\n")
    refresh_checksums(bundle_copy)
    with pytest.raises(BundleError, match="can run code when loaded"):
        Predictor(bundle_copy).load()


def test_an_unlisted_file_is_refused(bundle_copy: Path):
    (bundle_copy / "notes.txt").write_text("hello")
    with pytest.raises(BundleError, match="notes.txt: not in SHA256SUMS"):
        Predictor(bundle_copy).load()


def test_a_missing_file_is_refused(bundle_copy: Path):
    (bundle_copy / "README.md").unlink()
    with pytest.raises(BundleError, match="README.md: listed in SHA256SUMS but missing"):
        Predictor(bundle_copy).load()


def test_a_graph_with_custom_operators_is_refused(bundle_copy: Path):
    node = helper.make_node("Exec", ["x"], ["prediction"], domain="com.example.evil")
    graph = helper.make_graph(
        [node],
        "evil",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 1])],
        [helper.make_tensor_value_info("prediction", TensorProto.FLOAT, [None, 1])],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 21), helper.make_opsetid("com.example.evil", 1)]
    )
    (bundle_copy / "model.onnx").write_bytes(model.SerializeToString())
    refresh_checksums(bundle_copy)
    predictor = Predictor(bundle_copy)
    with pytest.raises(BundleError, match=r"operators outside standard ONNX \(com\.example\.evil\)"):
        predictor.load()  # named by its domain, refused before ONNX Runtime is asked to run it
    assert predictor.load_error and not predictor.ready


def test_a_missing_bundle_is_a_clear_error(tmp_path: Path):
    with pytest.raises(BundleError, match="bundle folder not found"):
        Predictor(tmp_path / "nowhere").load()


@pytest.fixture(scope="module")
def predictor(built: Path) -> Predictor:
    return Predictor(built / "bundle").load()


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"age": None}, "age", "must not be null"),
        ({"age": "24"}, "age", "must be a number, got str"),
        ({"age": True}, "age", "must be a number, got bool"),
        ({"age": 24.5}, "age", "must be a whole number, got 24.5"),
        ({"age": 99}, "age", "99 is above the maximum 35"),
        ({"avg_focus_duration": math.nan}, "avg_focus_duration", "must be finite, got nan"),
        ({"avg_focus_duration": -3.0}, "avg_focus_duration", "-3.0 is below the minimum 1"),
        ({"subject": 3}, "subject", "must be a string, got int"),
        ({"time_of_day": "noon"}, "time_of_day", "unknown category 'noon'"),
    ],
)
def test_each_bad_value_is_named_by_field(predictor: Predictor, record: dict, change, field, message):
    with pytest.raises(RecordError) as caught:
        predictor.predict_one({**record, **change})
    assert [(e.row, e.field) for e in caught.value.errors] == [(0, field)]
    assert message in caught.value.errors[0].message


def test_a_missing_field_and_a_non_object_are_named(predictor: Predictor, record: dict):
    partial = {k: v for k, v in record.items() if k != "environment"}
    with pytest.raises(RecordError, match=r"row 1, field 'environment': missing field"):
        predictor.predict_records([record, partial])
    with pytest.raises(RecordError, match="row 0: a record must be an object, got list"):
        predictor.predict_records([[1, 2]])


def test_unknown_category_follows_the_bundle_policy(predictor: Predictor, bundle_copy: Path, record: dict):
    # policy "ignore" for subject, within the data contract's allowed levels: a level outside
    # them is refused at scoring, as validate quarantines it in training
    spec = predictor.metadata["inputs"]["subject"]
    assert spec["unknown"] == "ignore" and "astronomy" not in spec["allowed"]
    with pytest.raises(RecordError, match="field 'subject': 'astronomy' is not allowed \\(the data contract"):
        predictor.predict_one({**record, "subject": "astronomy"})
    # with no allowed list in the contract, an unseen level encodes as no level (every indicator 0),
    # like in training, so any two unseen levels predict the same, and differently from a seen one
    meta = json.loads((bundle_copy / bundle.METADATA).read_text())
    del meta["inputs"]["subject"]["allowed"]
    (bundle_copy / bundle.METADATA).write_text(json.dumps(meta))
    refresh_checksums(bundle_copy)
    open_contract = Predictor(bundle_copy)
    unseen = [open_contract.predict_one({**record, "subject": level}) for level in ("astronomy", "zoology")]
    assert unseen[0] == unseen[1]
    assert unseen[0] != open_contract.predict_one(record)


def test_records_frames_and_single_records_agree(predictor: Predictor, test_frame: pd.DataFrame):
    frame = test_frame.head(40)
    records = [
        {k: (v.item() if hasattr(v, "item") else v) for k, v in row.items() if k != "session_date"}
        for row in frame.to_dict(orient="records")
    ]
    from_frame = predictor.predict_frame(frame).values
    assert np.array_equal(predictor.predict_records(records).values, from_frame)
    assert predictor.predict_one(records[7]) == pytest.approx(from_frame[7], abs=0)
    big = records * 3  # past the small-batch path: the vectorised checks agree
    assert np.array_equal(predictor.predict_records(big).values, np.tile(from_frame, 3))


def test_frame_checks_report_every_bad_row(predictor: Predictor, test_frame: pd.DataFrame):
    frame = test_frame.head(6).astype({"age": "object"}).reset_index(drop=True)
    frame.loc[1, "age"] = "abc"
    frame.loc[3, "subject"] = None
    frame.loc[4, "energy_level"] = 9
    _, errors = predictor.check_frame(frame)
    assert [(e.row, e.field, e.message) for e in errors] == [
        (1, "age", "not a number: 'abc'"),
        (3, "subject", "missing value (an empty cell, a null, or a null text such as NA, n/a or NULL)"),
        (4, "energy_level", "9 is above the maximum 5"),
    ]
    with pytest.raises(RecordError, match="all rows, field 'breaks_taken': missing column"):
        predictor.predict_frame(frame.drop(columns="breaks_taken"))


def test_numbers_read_as_text_are_parsed_in_frames(predictor: Predictor, test_frame: pd.DataFrame):
    frame = test_frame.head(10)
    as_text = frame.astype({c: "str" for c in ("age", "avg_focus_duration")})
    assert np.array_equal(predictor.predict_frame(as_text).values, predictor.predict_frame(frame).values)


def test_serving_imports_neither_tensorflow_nor_keras(built: Path, record: dict):
    import json
    import subprocess
    import sys

    script = (
        "import json, sys\n"
        "from mlpipe.cli import main\nfrom mlpipe.serving import batch\nfrom mlpipe.serving.http import app\n"
        "from mlpipe.serving.predictor import Predictor\n"
        f"Predictor({str(built / 'bundle')!r}).predict_one(json.loads(sys.argv[1]))\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras'))))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, json.dumps(record)], capture_output=True, text=True, check=True
    )
    assert json.loads(out.stdout) == []


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("model.onnx", b"not an onnx graph"),
        ("metadata.json", b"{not json"),
        ("metadata.json", b'{"format_version": 1}'),
    ],
)
def test_a_broken_but_consistently_hashed_bundle_is_refused_with_a_reason(
    bundle_copy: Path, name: str, content: bytes
):
    (bundle_copy / name).write_bytes(content)
    if name != bundle.METADATA:  # forge the metadata's file list too, as an attacker would
        meta = json.loads((bundle_copy / bundle.METADATA).read_text())
        meta["files"][name] = bundle.sha256(content)
        (bundle_copy / bundle.METADATA).write_text(json.dumps(meta))
    hashes = bundle.file_hashes(bundle_copy)
    (bundle_copy / bundle.CHECKSUMS).write_text(bundle.format_checksums(hashes), encoding="utf-8")
    predictor = Predictor(bundle_copy)
    with pytest.raises(BundleError) as caught:
        predictor.load()
    assert predictor.load_error == str(caught.value) and not predictor.ready
    assert "cannot be loaded" in predictor.load_error or name in predictor.load_error


def _raise_bias(folder: Path) -> None:
    from onnx import numpy_helper

    model = onnx.load(folder / bundle.MODEL)
    bias = [t for t in model.graph.initializer if t.name.startswith("bias_")][-1]
    raised = numpy_helper.to_array(bias) + np.asarray(10, numpy_helper.to_array(bias).dtype)
    bias.CopyFrom(numpy_helper.from_array(raised, bias.name))
    (folder / bundle.MODEL).write_bytes(model.SerializeToString())


def _edit_metadata(change):
    def edit(folder: Path) -> None:
        meta = json.loads((folder / bundle.METADATA).read_text())
        change(meta)
        (folder / bundle.METADATA).write_text(json.dumps(meta))

    return edit


@pytest.mark.parametrize(
    ("tamper", "reason"),
    [
        (_raise_bias, r"version '\w+' is not the hash of model.onnx \(\w+\): the model was replaced"),
        (_edit_metadata(lambda m: m.update(version="0" * 12)), "is not the hash of model.onnx"),
        (
            _edit_metadata(
                lambda m: m["inputs"].update(age={"type": "string", "categories": ["x"], "unknown": "ignore"})
            ),
            "input 'age' is declared string, but model.onnx reads tensor\\(double\\)",
        ),
        (_edit_metadata(lambda m: m.pop("inputs")), "metadata.json: inputs: Field required"),
        (_edit_metadata(lambda m: m["inputs"]["age"].update(type="float")), "metadata.json: inputs.age.type"),
        (_edit_metadata(lambda m: m["inputs"]["age"].update(min="18")), "metadata.json: inputs.age.min"),
        (_edit_metadata(lambda m: m["inputs"]["age"].update(min=40)), "min 40.0 is above max 35"),
        (_edit_metadata(lambda m: m.update(task="binary")), "a binary model's output needs classes"),
        (_edit_metadata(lambda m: m["output"].pop("target")), "metadata.json: output.target: Field required"),
    ],
    ids=[
        "model-replaced",
        "version-rewritten",
        "type-changed",
        "no-inputs",
        "bad-type",
        "text-bound",
        "bounds",
        "task",
        "output",
    ],
)
def test_tampering_that_rewrites_the_checksums_is_refused_with_its_reason(bundle_copy: Path, tamper, reason):
    tamper(bundle_copy)
    # as a forger would: every checksum matches again (and the version, but where the test is about it)
    refresh_checksums(bundle_copy, version="is not the hash" not in reason)
    predictor = Predictor(bundle_copy)
    with pytest.raises(BundleError, match=reason):
        predictor.load()
    assert not predictor.ready
