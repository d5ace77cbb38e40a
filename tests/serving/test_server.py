"""`tunepipe serve` for real: a subprocess on a free local port, real HTTP requests."""

from __future__ import annotations

import base64
import json
import signal
import threading
import time

import pytest

from tests.serving.conftest import running_server
from tunepipe.serving.runtime import Predictor, load_bundle

TEXTS = ["A gem of a film, warm and funny.", "Dull, tedious and far too long.", "It was fine."]


@pytest.fixture(scope="module")
def server(bundle, tmp_path_factory):
    # A small body limit and inputs limit so the over-limit requests stay small.
    with running_server(str(bundle), "--max-inputs", "8", "--max-body-mb", "0.05", "--max-batch-size", "4", "--max-wait-ms", "20",
                        log_dir=tmp_path_factory.mktemp("serve")) as running:
        yield running


def test_predict_returns_labels_confidences_probabilities_and_the_version(server, bundle):
    body = server.predict(TEXTS)
    loaded = load_bundle(bundle)
    expected = Predictor(bundle).predict(TEXTS)
    assert body["model_version"] == loaded.version and body["model_name"] == "tunepipe-model"
    assert body["labels"] == [loaded.labels[i] for i in expected.argmax(1)]
    assert body["confidences"] == pytest.approx(expected.max(1).tolist(), abs=1e-5)
    assert [list(p) for p in body["probabilities"]] == [loaded.labels] * len(TEXTS)
    got = [p[label] for p in body["probabilities"] for label in loaded.labels]
    assert got == pytest.approx(expected.ravel().tolist(), abs=1e-5)


def test_oip_v2_routes_work_for_a_kserve_style_client(server, bundle):
    loaded = load_bundle(bundle)
    assert server.request("GET", "/v2/health/live")[:2] == (200, {"live": True})
    assert server.request("GET", "/v2/health/ready")[:2] == (200, {"ready": True})
    assert server.request("GET", "/v2/models/tunepipe-model/ready")[:2] == (200, {"name": "tunepipe-model", "ready": True})
    status, meta, _ = server.request("GET", "/v2/models/tunepipe-model")
    assert status == 200 and meta["versions"] == [loaded.version] and meta["inputs"][0]["datatype"] == "BYTES"
    status, body, _ = server.request("POST", "/v2/models/tunepipe-model/infer",
                                     {"id": "req-1", "inputs": [{"name": "input", "shape": [3], "datatype": "BYTES", "data": TEXTS}]})
    assert status == 200, body
    assert body["id"] == "req-1" and body["model_version"] == loaded.version
    outputs = {out["name"]: out for out in body["outputs"]}
    expected = Predictor(bundle).predict(TEXTS)
    assert outputs["label"]["data"] == [loaded.labels[i] for i in expected.argmax(1)] and outputs["label"]["shape"] == [3]
    assert outputs["probabilities"]["shape"] == [3, len(loaded.labels)]
    assert outputs["probabilities"]["data"] == pytest.approx(expected.ravel().tolist(), abs=1e-5)
    status, body, _ = server.request("POST", "/v2/models/tunepipe-model/infer",
                                     {"inputs": [{"name": "input", "shape": [1, 1], "datatype": "BYTES", "data": [["ok"]]}], "outputs": [{"name": "label"}]})
    assert status == 200 and [out["name"] for out in body["outputs"]] == ["label"]


def test_health_ready_docs_and_openapi(server):
    assert server.request("GET", "/health")[:2] == (200, {"status": "alive"})
    assert server.request("GET", "/ready")[0] == 200
    status, docs, _ = server.request("GET", "/docs")
    assert status == 200 and "swagger" in docs.lower()
    status, spec, _ = server.request("GET", "/openapi.json")
    assert status == 200 and {"/v1/predict", "/v2/models/{name}/infer", "/metrics"} <= set(spec["paths"])
    assert spec["paths"]["/v1/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]["required"] == ["inputs"]


BAD_REQUESTS = [
    # (what, method, path, body, content type, status, words the error must hold)
    ("invalid JSON", "POST", "/v1/predict", '{"inputs": [', "application/json", 400, "not valid JSON"),
    ("wrong content type", "POST", "/v1/predict", '{"inputs": ["a"]}', "text/plain", 415, "content-type must be application/json"),
    ("no content type", "POST", "/v1/predict", '{"inputs": ["a"]}', None, 415, "content-type must be application/json"),
    ("empty body", "POST", "/v1/predict", "", "application/json", 400, "body is empty"),
    ("not UTF-8", "POST", "/v1/predict", b'{"inputs": ["\xff"]}', "application/json", 400, "not UTF-8"),
    ("missing inputs", "POST", "/v1/predict", {"texts": ["a"]}, "application/json", 422, 'no "inputs"'),
    ("a list body", "POST", "/v1/predict", ["a"], "application/json", 422, "send an object"),
    ("inputs not a list", "POST", "/v1/predict", {"inputs": "a"}, "application/json", 422, '"inputs" is str'),
    ("empty list", "POST", "/v1/predict", {"inputs": []}, "application/json", 422, "empty list"),
    ("a non-string text", "POST", "/v1/predict", {"inputs": ["fine", 3]}, "application/json", 422, "inputs[1] is a number"),
    ("a null text", "POST", "/v1/predict", {"inputs": [None]}, "application/json", 422, "inputs[0] is null"),
    ("an empty text", "POST", "/v1/predict", {"inputs": ["fine", "   "]}, "application/json", 422, "inputs[1] is an empty text"),
    ("a lone surrogate", "POST", "/v1/predict", '{"inputs": ["fine", "bad \\ud800"]}', "application/json", 422, "inputs[1] is not valid Unicode"),
    ("JSON nested too deeply", "POST", "/v1/predict", "[" * 5000 + "]" * 5000, "application/json", 400, "nested too deeply"),
    ("too many inputs", "POST", "/v1/predict", {"inputs": ["a"] * 9}, "application/json", 413, "more than the limit of 8"),
    ("a body over the limit", "POST", "/v1/predict", {"inputs": ["a" * 60000]}, "application/json", 413, "more than the limit of 52428"),
    ("an unknown route", "GET", "/v1/nothing", None, None, 404, "no route GET /v1/nothing"),
    ("a wrong method", "GET", "/v1/predict", None, None, 405, "GET is not allowed"),
    ("an unknown model", "POST", "/v2/models/other/infer", {"inputs": []}, "application/json", 404, "no model 'other'"),
    ("OIP: no tensors", "POST", "/v2/models/tunepipe-model/infer", {"inputs": []}, "application/json", 400, 'no "inputs" list'),
    ("OIP: wrong datatype", "POST", "/v2/models/tunepipe-model/infer", {"inputs": [{"name": "input", "shape": [1], "datatype": "FP32", "data": [1.0]}]},
     "application/json", 400, "send BYTES"),
    ("OIP: shape mismatch", "POST", "/v2/models/tunepipe-model/infer", {"inputs": [{"name": "input", "shape": [2], "datatype": "BYTES", "data": ["a"]}]},
     "application/json", 400, "does not match its 1 data elements"),
    ("OIP: an empty text", "POST", "/v2/models/tunepipe-model/infer", {"inputs": [{"name": "input", "shape": [1], "datatype": "BYTES", "data": [""]}]},
     "application/json", 422, "inputs[0] is an empty text"),
    ("OIP: unknown output", "POST", "/v2/models/tunepipe-model/infer",
     {"inputs": [{"name": "input", "shape": [1], "datatype": "BYTES", "data": ["a"]}], "outputs": [{"name": "embedding"}]}, "application/json", 400, "unknown output"),
]


@pytest.mark.parametrize(("what", "method", "path", "body", "content_type", "status", "words"), BAD_REQUESTS, ids=[case[0] for case in BAD_REQUESTS])
def test_every_bad_request_gets_a_4xx_json_error_and_the_server_keeps_serving(server, what, method, path, body, content_type, status, words):
    got, answer, headers = server.request(method, path, body, content_type=content_type)
    assert (got, isinstance(answer, dict)) == (status, True), answer
    assert set(answer) == {"error"} and words in answer["error"], answer
    assert headers["content-type"].startswith("application/json")
    assert server.predict(["still serving?"])["labels"]


def test_a_chunked_body_over_the_limit_is_refused_too(server):
    import http.client
    from urllib.parse import urlparse

    url = urlparse(server.url)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    chunks = [b'{"inputs": ["', b"a" * 40000, b"a" * 40000, b'"]}']
    connection.request("POST", "/v1/predict", body=iter(chunks), headers={"Content-Type": "application/json"}, encode_chunked=True)
    response = connection.getresponse()
    assert response.status == 413 and "more than the limit" in json.loads(response.read())["error"]
    connection.close()


def test_metrics_move_with_traffic(server, bundle):
    version = load_bundle(bundle).version
    before = {
        "ok": server.metric("tunepipe_http_requests_total", route="/v1/predict", method="POST", status="200"),
        "bad": server.metric("tunepipe_http_requests_total", route="/v1/predict", method="POST", status="422"),
        "latency": server.metric("tunepipe_http_request_duration_seconds_count", route="/v1/predict", status="200"),
        "batches": server.metric("tunepipe_batch_size_sum", version=version),
    }
    labels = load_bundle(bundle).labels
    predicted_before = {label: server.metric("tunepipe_predictions_total", version=version, label=label) for label in labels}
    answers = [server.predict(TEXTS) for _ in range(2)]
    server.request("POST", "/v1/predict", {"inputs": []})
    assert server.metric("tunepipe_http_requests_total", route="/v1/predict", method="POST", status="200") == before["ok"] + 2
    assert server.metric("tunepipe_http_requests_total", route="/v1/predict", method="POST", status="422") == before["bad"] + 1
    assert server.metric("tunepipe_http_request_duration_seconds_count", route="/v1/predict", status="200") == before["latency"] + 2
    assert server.metric("tunepipe_batch_size_sum", version=version) == before["batches"] + 2 * len(TEXTS)
    predicted = [label for answer in answers for label in answer["labels"]]
    for label in labels:
        assert server.metric("tunepipe_predictions_total", version=version, label=label) == predicted_before[label] + predicted.count(label)
    _, text, _ = server.request("GET", "/metrics")
    assert f'tunepipe_label_drift_psi{{version="{version}"}}' in text
    # Only one label, over and over: the live distribution drifts away from the test split's.
    psi_before = server.metric("tunepipe_label_drift_psi", version=version)
    server.predict([TEXTS[0]] * 8)
    server.predict([TEXTS[0]] * 8)
    assert server.metric("tunepipe_label_drift_psi", version=version) > psi_before


def test_concurrent_requests_are_batched_together(server, bundle):
    version = load_bundle(bundle).version
    count_before = server.metric("tunepipe_batch_size_count", version=version)
    sum_before = server.metric("tunepipe_batch_size_sum", version=version)
    results, barrier = [], threading.Barrier(8)

    def one(i: int) -> None:
        barrier.wait()
        results.append(server.predict([TEXTS[i % 3]]))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 8
    batches = server.metric("tunepipe_batch_size_count", version=version) - count_before
    assert server.metric("tunepipe_batch_size_sum", version=version) - sum_before == 8
    assert batches < 8  # some requests shared a batch (at most 4 inputs each: --max-batch-size 4)
    assert server.metric("tunepipe_batch_size_bucket", version=version, le="4.0") == server.metric("tunepipe_batch_size_count", version=version)


def test_ab_split_is_sticky_per_client_key_and_metrics_are_per_version(bundle, tmp_path):
    with running_server(str(bundle), "--ab", str(bundle), "--split", "0.5", "--version", "v-a", "--ab-version", "v-b", log_dir=tmp_path) as server:
        seen = {}
        for i in range(24):
            key = f"client-{i}"
            first = server.predict(["Good."], headers={"X-Client-Key": key})["model_version"]
            again = [server.predict(["Bad."], headers={"X-Client-Key": key})["model_version"] for _ in range(2)]
            assert again == [first, first]  # sticky
            seen[key] = first
        assert set(seen.values()) == {"v-a", "v-b"}
        share_b = sum(version == "v-b" for version in seen.values()) / len(seen)
        assert 0.15 < share_b < 0.85
        status, body, headers = server.request("POST", "/v1/predict", {"inputs": ["x"]}, headers={"X-Client-Key": "client-0"})
        assert headers["x-model-version"] == body["model_version"] == seen["client-0"]
        per_version = {v: sum(server.metric("tunepipe_predictions_total", version=v, label=label) for label in load_bundle(bundle).labels) for v in ("v-a", "v-b")}
        expected = {v: 3 * sum(1 for s in seen.values() if s == v) for v in ("v-a", "v-b")}
        expected[seen["client-0"]] += 1
        assert per_version == expected
        _, meta, _ = server.request("GET", "/v2/models/tunepipe-model")
        assert meta["versions"] == ["v-a", "v-b"]


def test_several_workers_serve_and_their_metrics_add_up(bundle, tmp_path):
    loaded = load_bundle(bundle)
    with running_server(str(bundle), "--workers", "2", log_dir=tmp_path) as server:
        answers = [server.predict(TEXTS) for _ in range(6)]
        predicted = [label for answer in answers for label in answer["labels"]]
        for label in loaded.labels:  # whichever worker answered, /metrics counts every prediction once
            assert server.metric("tunepipe_predictions_total", version=loaded.version, label=label) == predicted.count(label)
        assert server.metric("tunepipe_http_requests_total", route="/v1/predict", method="POST", status="200") == 6
    assert server.log.read_text().count("shut down cleanly") == 2


def test_sigterm_finishes_the_request_in_flight_then_exits_cleanly(bundle, tmp_path):
    import http.client
    from urllib.parse import urlparse

    with running_server(str(bundle), log_dir=tmp_path) as server:
        url = urlparse(server.url)
        body = json.dumps({"inputs": TEXTS * 20}).encode()
        connection = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
        connection.putrequest("POST", "/v1/predict")
        connection.putheader("Content-Type", "application/json")
        connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body[:10])  # the request has begun: the server must finish it before it exits
        time.sleep(0.5)
        server.process.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        connection.send(body[10:])
        response = connection.getresponse()
        answer = json.loads(response.read())
        assert response.status == 200 and len(answer["labels"]) == len(TEXTS) * 20
        # uvicorn re-raises the signal after its graceful shutdown, so the exit status is the signal's, as for any SIGTERM.
        assert server.process.wait(timeout=60) in (0, -signal.SIGTERM)
        log = server.log.read_text()
        assert "shut down cleanly" in log and "Traceback" not in log
        with pytest.raises(OSError):
            server.request("GET", "/health")


def test_a_bad_bundle_or_flag_is_a_one_line_error(tmp_path):
    import subprocess
    import sys

    from tests.serving.conftest import serve_env

    for args, words in [([str(tmp_path)], "no bundle.json"), ([], "give a bundle folder"), ([str(tmp_path), "--split", "0.3"], "--split needs --ab")]:
        done = subprocess.run([sys.executable, "-m", "tunepipe.cli", "serve", *args], capture_output=True, text=True, env=serve_env(), timeout=60)
        assert done.returncode == 2 and words in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_images_are_sent_base64_and_undecodable_ones_get_a_422(tiny_image_run, tmp_path):
    from tunepipe.io import read_jsonl

    image_bundle = tiny_image_run / "results" / "export" / "bundle"
    rows = read_jsonl(tiny_image_run / "results" / "split" / "test.jsonl")[:3]
    images = [base64.b64encode(open(row["path"], "rb").read()).decode() for row in rows]
    with running_server(str(image_bundle), log_dir=tmp_path) as server:
        body = server.predict(images)
        expected = Predictor(image_bundle).predict([row["path"] for row in rows])
        assert body["confidences"] == pytest.approx(expected.max(1).tolist(), abs=1e-5)
        assert server.predict(["data:image/png;base64," + images[0]])["labels"] == body["labels"][:1]
        for value, words in [("not base64!", "inputs[0] is not valid base64"), (base64.b64encode(b"no image here").decode(), "inputs[0] is not a decodable image"),
                             (7, "must be a base64-encoded image")]:
            status, answer, _ = server.request("POST", "/v1/predict", {"inputs": [value]})
            assert status == 422 and words in answer["error"], answer
        status, body, _ = server.request("POST", "/v2/models/tunepipe-model/infer", {"inputs": [{"name": "input", "shape": [1], "datatype": "BYTES", "data": images[:1]}]})
        assert status == 200 and body["outputs"][0]["data"] == [load_bundle(image_bundle).labels[int(expected[0].argmax())]]
