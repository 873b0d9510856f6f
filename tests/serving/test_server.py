"""The HTTP contract, against the real ``mlpipe serve`` (uvicorn) on a free 127.0.0.1 port."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psutil
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families
from tests.serving.bundles import another_version

from mlpipe.serving.http import scoring
from mlpipe.serving.http.service import challenger_fraction
from mlpipe.serving.predictor import Predictor, StaleBundle, shared


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def serving(*args: str, wait_ready: bool = True) -> Iterator[httpx.Client]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "mlpipe.cli", "serve", "--port", str(port), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)
    client.process = process  # type: ignore[attr-defined]  # for the tests that signal it
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if client.get("/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, (
                process.stdout and process.stdout.read()
            )
            time.sleep(0.1)
        while wait_ready and client.get("/ready").status_code != 200:
            assert time.monotonic() < deadline, client.get("/ready").text
            time.sleep(0.1)
        yield client
    finally:
        client.close()
        try:
            children = psutil.Process(process.pid).children(recursive=True)  # its scoring processes
        except psutil.NoSuchProcess:
            children = []
        process.terminate()
        process.wait(timeout=10)
        _, alive = psutil.wait_procs(children, timeout=5)
        assert not alive, f"the server left {len(alive)} processes behind"


def settled(client: httpx.Client, within: float = 5.0) -> httpx.Response:
    """``/ready`` once it no longer says ``loading``, which must be within ``within`` seconds of
    ``/health`` answering (the time a refused bundle may take to be refused)."""
    deadline = time.monotonic() + within
    while (ready := client.get("/ready")).json()["status"] == "loading":
        assert time.monotonic() < deadline, f"still loading after {within} s"
        time.sleep(0.05)
    return ready


@pytest.fixture(scope="module")
def service(built: Path, tmp_path_factory) -> Iterator[tuple[httpx.Client, Path]]:
    log = tmp_path_factory.mktemp("log") / "predictions.jsonl"
    with serving("--bundle", str(built / "bundle"), "--log", str(log), "--max-batch", "50") as client:
        yield client, log


def test_health_ready_metadata_and_docs(service, built: Path):
    client, _ = service
    assert client.get("/health").json() == {"status": "alive"}
    version = Predictor(built / "bundle").version
    ready = client.get("/ready").json()
    assert ready == {"status": "ready", "models": {"champion": {"name": "study-time", "version": version}}}
    meta = client.get("/metadata").json()["champion"]
    assert meta["version"] == version and "age" in meta["inputs"]
    openapi = client.get("/openapi.json").json()
    body = openapi["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body["oneOf"][0]["properties"]["age"] == {"type": "integer", "minimum": 18, "maximum": 35}
    assert client.get("/docs").status_code == 200


def test_predict_one_record_and_a_batch(service, built: Path, record: dict):
    client, log = service
    expected = Predictor(built / "bundle").predict_records([record, {**record, "age": 30}]).values
    one = client.post("/predict", json=record)
    assert one.status_code == 200
    assert one.json()["prediction"] == pytest.approx(expected[0], abs=1e-12)
    assert one.json()["arm"] == "champion" and one.json()["model"] == "study-time"
    batch = client.post("/predict", json=[record, {**record, "age": 30}]).json()["predictions"]
    assert [p["prediction"] for p in batch] == pytest.approx(expected.tolist(), abs=1e-12)
    logged = [json.loads(line) for line in log.read_text().splitlines()]
    assert logged[-1]["record"]["age"] == 30 and logged[-1]["prediction"] == batch[1]["prediction"]
    assert logged[-1]["arm"] == "champion" and logged[-1]["version"] == batch[1]["version"]


def test_the_readmes_example_record_is_answered(service):
    client, _ = service
    example = Path(__file__).resolve().parents[2] / "data" / "examples" / "record.json"
    answer = client.post(  # as the README's `curl -H 'content-type: application/json' -d @...` sends it
        "/predict", content=example.read_bytes(), headers={"content-type": "application/json"}
    )
    assert answer.status_code == 200 and answer.json()["arm"] == "champion"
    assert isinstance(answer.json()["prediction"], float)


def test_a_body_must_be_uncompressed_utf8_json_or_it_gets_415_naming_the_header(service, record: dict):
    import gzip

    client, _ = service
    body = json.dumps(record).encode()
    cases = {
        "gzip": ({"content-encoding": "gzip", "content-type": "application/json"}, gzip.compress(body)),
        "raw JSON labelled gzip": ({"content-encoding": "gzip"}, body),
        "text/plain": ({"content-type": "text/plain"}, body),
        "curl -d without -H": ({"content-type": "application/x-www-form-urlencoded"}, body),
        "latin-1": ({"content-type": "application/json; charset=latin-1"}, body),
    }
    for case, (headers, content) in cases.items():
        answer = client.post("/predict", content=content, headers=headers)
        assert answer.status_code == 415, case
        assert any(h in answer.json()["detail"] for h in ("Content-Encoding", "Content-Type", "charset")), (
            case
        )
    for headers in (
        {},
        {"content-type": "application/json; charset=UTF-8"},
        {"content-encoding": "identity"},
    ):
        assert client.post("/predict", content=body, headers=headers).status_code == 200, headers


def test_malformed_requests_get_4xx_naming_the_field(service, record: dict):
    client, _ = service
    bad = client.post("/predict", json={**record, "age": "old", "subject": None})
    assert bad.status_code == 422
    assert bad.json()["detail"] == [
        {"row": 0, "field": "age", "message": "must be a number, got str"},
        {"row": 0, "field": "subject", "message": "must not be null"},
    ]
    second = client.post("/predict", json=[record, {k: v for k, v in record.items() if k != "age"}])
    assert second.status_code == 422 and second.json()["detail"][0]["row"] == 1
    assert second.json()["detail"][0]["field"] == "age"
    assert client.post("/predict", content=b"{not json").status_code == 400
    for payload in ("x", 3, None, [], [1], {"records": []}, [[record]]):
        response = client.post("/predict", json=payload)
        assert 400 <= response.status_code < 500, (payload, response.text)


def test_oversized_bodies_and_batches_get_413(service, record: dict):
    client, _ = service
    big = b"[" + b" " * (1 << 20) + b"]"
    assert client.post("/predict", content=big).status_code == 413

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit is enforced while reading
        for _ in range(40):
            yield b" " * 65536

    assert client.post("/predict", content=chunks()).status_code == 413
    too_many = client.post("/predict", json=[record] * 51)
    assert too_many.status_code == 413 and "at most 50" in too_many.text
    assert client.post("/predict", json=[record] * 50).status_code == 200


def test_challenger_routing_is_stable_and_close_to_the_share(built: Path, tmp_path: Path, record: dict):
    challenger = shutil.copytree(built / "bundle", tmp_path / "challenger")
    args = ["--bundle", str(built / "bundle"), "--challenger", str(challenger), "--challenger-share", "0.3"]
    with serving(*args) as client:
        ready = client.get("/ready").json()
        assert set(ready["models"]) == {"champion", "challenger"}
        records = [{**record, "student_id": i} for i in range(1, 1001)]
        arms = [p["arm"] for p in client.post("/predict", json=records[:500]).json()["predictions"]]
        arms += [p["arm"] for p in client.post("/predict", json=records[500:]).json()["predictions"]]
        assert arms == [
            "challenger" if challenger_fraction(str(i)) < 0.3 else "champion" for i in range(1, 1001)
        ]
        assert 0.25 < arms.count("challenger") / len(arms) < 0.35
        for student in (3, 17, 256):  # the same student always gets the same arm
            seen = {
                client.post("/predict", json={**record, "student_id": student}).json()["arm"]
                for _ in range(5)
            }
            assert seen == {arms[student - 1]}
        missing = client.post("/predict", json={k: v for k, v in record.items() if k != "student_id"})
        assert missing.status_code == 422 and missing.json()["detail"][0]["field"] == "student_id"


def test_a_tampered_bundle_never_becomes_ready(built: Path, tmp_path: Path, record: dict):
    folder = shutil.copytree(built / "bundle", tmp_path / "tampered")
    data = bytearray((folder / "model.onnx").read_bytes())
    data[100] ^= 0xFF
    (folder / "model.onnx").write_bytes(bytes(data))
    with serving("--bundle", str(folder), wait_ready=False) as client:
        assert client.get("/health").status_code == 200
        settled(client)
        for _ in range(3):
            ready = client.get("/ready")
            assert ready.status_code == 503
            assert (
                ready.json()["status"] == "failed"
                and "model.onnx: sha256 does not match" in ready.json()["error"]
            )
            time.sleep(0.2)
        assert client.post("/predict", json=record).status_code == 503
        assert client.get("/metadata").status_code == 503


def test_huge_invalid_batches_deep_records_and_long_values_get_bounded_answers(
    built: Path, tmp_path: Path, record: dict
):
    log = tmp_path / "predictions.jsonl"
    with serving("--bundle", str(built / "bundle"), "--log", str(log)) as client:
        empty = client.post("/predict", json=[{}] * 10_000)  # scored in a worker thread
        schema = client.get("/metadata").json()["champion"]["inputs"]
        inputs = list(schema)
        strict = next(name for name, spec in schema.items() if spec.get("unknown") == "error")
        assert empty.status_code == 422
        assert len(empty.json()["detail"]) == 100 and empty.json()["problems"] == 10_000 * len(inputs)
        assert empty.json()["detail"][0] == {"row": 0, "field": inputs[0], "message": "missing field"}

        long_value = client.post("/predict", json={**record, strict: "x" * 900_000})
        assert long_value.status_code == 422 and len(long_value.content) < 1000
        assert long_value.json()["detail"][0]["message"].startswith("unknown category 'xxx")

        nested: object = 1
        for _ in range(300):  # JSON reads it, but orjson cannot write it back
            nested = [nested]
        deep = client.post("/predict", json={**record, "extra": nested})
        assert deep.status_code == 200
        line = json.loads(log.read_text().splitlines()[-1])
        assert line["record"] is None and "recursion" in line["record_error"].lower()
        assert line["prediction"] == deep.json()["prediction"]

        many = client.post("/predict", json=[record] * 500)  # a valid batch off the event loop
        assert many.status_code == 200 and len(many.json()["predictions"]) == 500
        large = client.post("/predict", json=[record] * 1500)  # in a scoring process
        assert large.status_code == 200
        assert {p["prediction"] for p in large.json()["predictions"]} == {deep.json()["prediction"]}
        rejected = samples(client)[sample("mlpipe_schema_rejections_total", field=inputs[0])]
        assert rejected == 10_000  # counted from the scoring process's problems, every one

        huge = client.post("/predict", json=[{**record, "age": 1e308}] * 100)  # 309 digits each
        assert huge.status_code == 422 and len(huge.content) < 20_000
        assert "..." in huge.json()["detail"][0]["message"] and len(huge.json()["detail"][0]["message"]) < 150

        named = client.post("/predict", json={**record, "n" * 900_000: 1, "note": "t" * 50_000})
        assert named.status_code == 200  # extra fields are ignored, and logged cut
        line = log.read_text().splitlines()[-1]
        assert len(line) < 3_000 and json.loads(line)["record"]["n" * 77 + "..."] == 1


def test_a_scoring_process_scores_as_the_server_and_refuses_a_folder_holding_another_version(
    built: Path, bundle_copy: Path, record: dict
):
    predictor = Predictor(built / "bundle").load()
    records = [record, {**record, "age": 30}, {**record, "age": "old"}]
    body, groups = json.dumps(records[:2]).encode(), {"champion": [0, 1]}
    bundles = {"champion": (str(built / "bundle"), predictor.version)}
    kind, results = scoring.score_body(body, groups, bundles, 1, None)
    assert kind == "scored" and results == scoring.score_records(records[:2], groups, {"champion": predictor})
    kind, (detail, _, fields) = scoring.score_body(
        json.dumps(records).encode(), {"champion": [0, 1, 2]}, bundles, 1, None
    )
    assert kind == "refused" and detail == [
        {"row": 2, "field": "age", "message": "must be a number, got str"}
    ]
    assert fields == {"age": 1}
    with pytest.raises(StaleBundle, match=f"holds {predictor.version}, not 000000000000"):
        shared(str(bundle_copy), "000000000000", 1, None)


def samples(client: httpx.Client) -> dict[tuple[str, frozenset], float]:
    """``/metrics`` as (sample name, labels) -> value."""
    text = client.get("/metrics").text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def sample(name: str, **labels: str) -> tuple[str, frozenset]:
    return name, frozenset(labels.items())


def test_metrics_count_requests_rows_rejections_and_the_bundle_served(service, built: Path, record: dict):
    client, _ = service
    version = Predictor(built / "bundle").version
    before = samples(client)
    assert client.post("/predict", json=record).status_code == 200
    assert client.post("/predict", json=[record] * 3).status_code == 200
    assert client.post("/predict", json=[{**record, "age": "old"}, {}]).status_code == 422
    assert client.post("/predict", content=b"{").status_code == 400
    after = samples(client)

    def delta(name: str, **labels: str) -> float:
        return after.get(sample(name, **labels), 0.0) - before.get(sample(name, **labels), 0.0)

    assert delta("mlpipe_requests_total", arm="champion", version=version, status="200") == 2
    assert delta("mlpipe_rows_scored_total", arm="champion", version=version) == 4
    assert delta("mlpipe_requests_total", arm="none", version="none", status="422") == 1
    assert delta("mlpipe_requests_total", arm="none", version="none", status="400") == 1
    assert delta("mlpipe_schema_rejections_total", field="age") == 2  # one bad, one missing
    assert delta("mlpipe_schema_rejections_total", field="subject") == 1
    assert delta("mlpipe_request_duration_seconds_count", arm="champion") == 2
    info = {"arm": "champion", "model": "study-time", "version": version, "folder": str(built / "bundle")}
    assert after[sample("mlpipe_bundle_info", **info)] == 1
    assert client.get("/metrics").headers["content-type"].startswith("text/plain; version=")


def test_versions_swap_under_load_without_a_failed_or_mixed_answer(built: Path, tmp_path: Path, record: dict):
    """SIGHUP swaps three times while four clients send requests: every answer is 200 and its
    prediction is exactly what the version it names predicts (no request meets a half-loaded model)."""
    import threading

    versions = [built / "bundle", another_version(built / "bundle", tmp_path / "v2", shift=1.0)]
    pool = [{**record, "age": age, "student_id": age} for age in range(18, 36)]
    expected = {
        Predictor(folder).version: Predictor(folder).predict_records(pool).values.tolist()
        for folder in versions
    }
    assert len(expected) == 2
    live = Path(shutil.copytree(versions[0], tmp_path / "live"))
    answers: list[tuple[int, int, str | None, float | None]] = []
    stop = threading.Event()

    def client_loop(port_url: str, seed: int) -> None:
        with httpx.Client(base_url=port_url, timeout=10) as http:
            i = seed
            while not stop.is_set():
                response = http.post("/predict", json=pool[i % len(pool)])
                body = response.json() if response.status_code == 200 else {}
                answers.append(
                    (i % len(pool), response.status_code, body.get("version"), body.get("prediction"))
                )
                i += 1

    with serving("--bundle", str(live)) as client:
        url = str(client.base_url)
        threads = [threading.Thread(target=client_loop, args=(url, s)) for s in range(4)]
        for thread in threads:
            thread.start()
        try:
            for swap in range(3):
                while len(answers) < 400 * (swap + 1):
                    time.sleep(0.01)
                target = versions[(swap + 1) % 2]
                shutil.rmtree(live)
                shutil.copytree(target, tmp_path / "next")
                os.rename(tmp_path / "next", live)
                client.process.send_signal(signal.SIGHUP)
                wanted = Predictor(target).version
                deadline = time.monotonic() + 30
                while client.get("/ready").json()["models"]["champion"]["version"] != wanted:
                    assert time.monotonic() < deadline, client.get("/ready").text
                    time.sleep(0.05)
            while len(answers) < 2000:
                time.sleep(0.01)
        finally:
            stop.set()
            for thread in threads:
                thread.join()
        swapped = samples(client)[sample("mlpipe_bundle_reloads_total", arm="champion", result="swapped")]
    assert len(answers) >= 2000 and swapped == 3
    assert [a for a in answers if a[1] != 200] == []
    assert {a[2] for a in answers} == set(expected)
    mixed = [a for a in answers if a[3] != pytest.approx(expected[a[2]][a[0]], abs=1e-12)]
    assert mixed == []


def test_watch_swaps_after_a_checkout_and_refuses_a_broken_bundle_while_the_old_one_serves(
    built: Path, tmp_path: Path, record: dict
):
    v2 = another_version(built / "bundle", tmp_path / "v2", shift=1.0)
    live = Path(shutil.copytree(built / "bundle", tmp_path / "live"))
    old, new = Predictor(live).version, Predictor(v2).version

    def wait_for(check, what: str) -> dict:
        deadline = time.monotonic() + 30
        while not check(ready := client.get("/ready").json()):
            assert time.monotonic() < deadline, f"{what}: {ready}"
            time.sleep(0.1)
        return ready

    with serving("--bundle", str(live), "--watch") as client:
        for name in bundle_files(v2):  # file by file, in place, as `dvc checkout` does
            shutil.copyfile(v2 / name, live / name)
        wait_for(lambda r: r["models"]["champion"]["version"] == new, "swap")
        assert client.post("/predict", json=record).json()["version"] == new

        data = bytearray((live / "model.onnx").read_bytes())
        data[100] ^= 0xFF
        (live / "model.onnx").write_bytes(bytes(data))
        ready = wait_for(lambda r: "refused" in r, "refusal")
        assert ready["status"] == "ready" and ready["models"]["champion"]["version"] == new
        assert "model.onnx: sha256 does not match" in ready["refused"]["champion"]
        assert client.post("/predict", json=record).json()["version"] == new
        refused = sample("mlpipe_bundle_reloads_total", arm="champion", result="refused")
        assert samples(client)[refused] >= 1

        for name in bundle_files(built / "bundle"):  # back to the first version: the refusal clears
            shutil.copyfile(built / "bundle" / name, live / name)
        ready = wait_for(lambda r: r["models"]["champion"]["version"] == old, "swap back")
        assert "refused" not in ready


def bundle_files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def read_until_closed(sock: socket.socket, within: float) -> tuple[bytes, float]:
    """What the server sends before it closes ``sock``, and how long that took."""
    sock.settimeout(within)
    start, received = time.monotonic(), b""
    while chunk := sock.recv(4096):
        received += chunk
    return received, time.monotonic() - start


def test_slow_clients_are_timed_out_and_connections_past_the_limit_get_503(built: Path, record: dict):
    limits = ["--head-timeout", "1", "--body-timeout", "1", "--max-connections", "20"]
    with serving("--bundle", str(built / "bundle"), *limits) as client:
        port = client.base_url.port
        address = ("127.0.0.1", port)
        heads = [socket.create_connection(address) for _ in range(5)]
        for sock in heads:  # a request line and half the headers, never finished
            sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\n")
        short = socket.create_connection(address)  # a Content-Length the body never reaches
        short.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n")
        short.sendall(b'Content-Length: 1000\r\n\r\n{"age": 2')
        assert client.post("/predict", json=record).status_code == 200  # others are answered meanwhile
        for sock in heads:
            received, took = read_until_closed(sock, within=10)
            assert received.startswith(b"HTTP/1.1 408") and took < 5
        received, _ = read_until_closed(short, within=10)
        assert received.startswith(b"HTTP/1.1 408") and b"did not arrive within 1 s" in received

        idle = [socket.create_connection(address) for _ in range(25)]  # past the limit of 20
        try:
            crowded = httpx.post(f"http://127.0.0.1:{port}/predict", json=record, timeout=10)
            assert crowded.status_code == 503
        finally:
            for sock in idle:
                sock.close()
        deadline = time.monotonic() + 10
        while (after := client.post("/predict", json=record)).status_code != 200:
            assert time.monotonic() < deadline, after.status_code
            time.sleep(0.1)


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


def valid_values(spec: dict) -> st.SearchStrategy:
    """A value the OpenAPI property allows, its edges included."""
    if spec["type"] == "string":
        levels = spec.get("enum") or []
        return (
            st.sampled_from(levels)
            if levels
            else st.sampled_from(spec.get("examples", [])) | st.text(max_size=12)
        )
    low, high = spec.get("minimum", -1e6), spec.get("maximum", 1e6)
    if spec["type"] == "integer":
        return st.integers(int(low), int(high))
    return st.floats(low, high) | st.just(low) | st.just(high)


def wrong_values(spec: dict) -> st.SearchStrategy:
    """Just past the edges, a level the bundle never saw, or any JSON value at all."""
    low, high = spec.get("minimum", -1e6), spec.get("maximum", 1e6)
    near = st.sampled_from([low - 1, high + 1, 1e308, -1e308, -0.0, "", "1", True])
    return near | JSON_VALUES


def records_from(schema: dict) -> st.SearchStrategy:
    """Valid records, valid records with a few fields made wrong, missing or extra, and any JSON."""
    properties = schema["properties"]
    valid = st.fixed_dictionaries({name: valid_values(spec) for name, spec in properties.items()})

    @st.composite
    def mutated(draw) -> dict:
        record = draw(valid)
        for name in draw(st.lists(st.sampled_from(sorted(properties)), min_size=1, max_size=3, unique=True)):
            action = draw(st.sampled_from(["wrong", "missing", "extra"]))
            if action == "wrong":
                record[name] = draw(wrong_values(properties[name]))
            elif action == "missing":
                record.pop(name)
            else:
                record[f"{name}_extra"] = draw(JSON_VALUES)
        return record

    return valid | mutated() | JSON_VALUES


def test_fuzzed_predict_requests_never_get_a_500(service):
    """Requests generated from the service's own OpenAPI record schema (valid, edge and wrong
    values, missing and extra fields, any JSON in any place, single and batch): every answer is 200
    or a 4xx naming the problem, never a 500, and the service stays up."""
    client, _ = service
    openapi = client.get("/openapi.json").json()
    schema = openapi["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    record = records_from(schema["oneOf"][0])
    seen: Counter = Counter()

    @settings(max_examples=300, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(st.one_of(record, st.lists(record, min_size=0, max_size=5)))
    def answered(payload):
        response = client.post(
            "/predict", content=json.dumps(payload).encode(), headers={"content-type": "application/json"}
        )
        seen[response.status_code] += 1
        assert response.status_code in (200, 400, 413, 422), (payload, response.status_code, response.text)
        if response.status_code == 422:
            assert response.json()["detail"], response.text

    answered()
    assert seen[200] > 0 and seen[422] > 0, seen  # the fuzz reached both sides of the schema
    assert client.get("/health").status_code == 200


def corpus(record: dict) -> list[tuple[str, bytes, set[int]]]:
    """Malformed bodies, each class the probing found or tried, and the statuses each may get."""
    good = json.dumps(record)
    strict = '"time_of_day"'
    return [
        ("empty body", b"", {400}),
        ("whitespace", b"  \n ", {400}),
        ("null", b"null", {422}),
        ("a number", b"3", {422}),
        ("empty batch", b"[]", {422}),
        ("not UTF-8", b'{"age": "\xff\xfe"}', {400}),
        ("UTF-16", good.encode("utf-16"), {400}),
        ("NaN literal", good.replace('"age": ', '"age": NaN, "x": ', 1).encode(), {400}),
        ("1e400", good.replace('"age": ', '"age": 1e400, "x": ', 1).encode(), {400, 422}),
        (
            "a 100-digit integer",
            good.replace('"age": ', '"age": ' + "9" * 100 + ', "x": ', 1).encode(),
            {400, 422},
        ),
        (
            "NUL in a level",
            good.replace(strict + ": ", strict + ': "morning\\u0000", "y": ', 1).encode(),
            {422},
        ),
        (
            "a lone surrogate",
            good.replace(strict + ": ", strict + ': "\\ud800", "y": ', 1).encode(),
            {400, 422},
        ),
        ("duplicate keys", good.replace("{", '{"age": "old", ', 1).encode(), {200, 422}),
        ("nested 100,000 deep", b"[" * 100_000 + b"]" * 100_000, {400}),
        ("a deep extra field", (good[:-1] + ', "x": ' + "[" * 1000 + "]" * 1000 + "}").encode(), {200, 400}),
        ("an array of arrays", f"[[{good}]]".encode(), {422}),
        ("truncated", good[: len(good) // 2].encode(), {400}),
    ]


def test_the_malformed_request_corpus_gets_4xx_and_never_a_500(service, record: dict):
    client, _ = service
    for name, body, allowed in corpus(record):
        response = client.post("/predict", content=body, headers={"content-type": "application/json"})
        assert response.status_code in allowed, (name, response.status_code, response.text[:300])
        assert len(response.content) < 20_000, name
    assert client.post("/predict", json=record).status_code == 200  # and the service is still fine
