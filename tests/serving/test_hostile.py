"""Hostile and careless clients against a real `tunepipe serve` on a local port, and damaged bundles.

Each case was once a 500, a reset connection, unbounded memory or a silently wrong answer (issue 27). The text
server serves the tiny random-weight BERT bundle of tests/serving/conftest.py, the image server a tiny hand-built
ONNX image model (random weights): no pipeline run. Memory is read from the server process's /proc status.
"""

from __future__ import annotations

import base64
import io
import json
import random
import shutil
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from benchmarks.bench_serve import huge_png  # the decompression bomb the benchmark sends too
from tests.serving.conftest import running_server, serve_env

GOOD = "A gem of a film, warm and funny."


def memory_mb(server) -> dict[str, float]:
    """VmRSS and VmHWM (the peak) of the server process, in MB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{server.process.pid}/status").read_text().splitlines() if ":" in line)
    return {key: int(fields[key].split()[0]) / 1024 for key in ("VmRSS", "VmHWM")}


def post(server, path: str, body: bytes, content_type: str = "application/json") -> tuple[int, dict | str, dict]:
    """A POST with Python's urllib, which sends the whole body before it reads the answer (as `requests` does)."""
    return server.request("POST", path, body, content_type=content_type)


def assert_still_serving(server) -> None:
    status, body, _ = server.request("POST", "/v1/predict", {"inputs": [GOOD]})
    assert status == 200, body


@pytest.fixture(scope="module")
def text_server(single_label_bundle, tmp_path_factory):
    bundle, _ = single_label_bundle
    with running_server(str(bundle), "--max-inputs", "8", "--max-queue", "8", "--max-batch-size", "4",
                        log_dir=tmp_path_factory.mktemp("hostile-text")) as server:
        yield server
    assert "Traceback" not in server.log.read_text()


@pytest.fixture(scope="module")
def image_server(image_bundle, tmp_path_factory):
    with running_server(str(image_bundle), "--max-inputs", "8", log_dir=tmp_path_factory.mktemp("hostile-image")) as server:
        server.baseline = memory_mb(server)["VmRSS"]
        yield server
    assert "Traceback" not in server.log.read_text()


# ------------------------------------------------------------------------------------------------ bodies, JSON, metrics


def test_a_body_over_the_limit_gets_a_413_that_urllib_reads(text_server):
    body = json.dumps({"inputs": ["x" * (8 << 20)]}).encode()  # 8 MB, over the default 4 MB limit
    status, answer, _ = post(text_server, "/v1/predict", body)  # before: ConnectionResetError / BrokenPipeError
    assert status == 413 and "more than the limit" in answer["error"]
    chunked = urllib.request.Request(text_server.url + "/v1/predict", data=iter([body[:1 << 20]] * 6), method="POST",
                                     headers={"Content-Type": "application/json", "Transfer-Encoding": "chunked"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(chunked, timeout=60)
    assert refused.value.code == 413
    status, answer, _ = post(text_server, "/v1/predict", body, content_type="text/plain")
    assert status == 415
    assert_still_serving(text_server)


def test_huge_json_numbers_are_a_400(text_server):
    for body in ('{"inputs": [' + "9" * 5000 + "]}", '{"inputs": ["ok"], "x": -' + "1" * 4301 + "}"):
        status, answer, _ = post(text_server, "/v1/predict", body.encode())
        assert status == 400 and "digits" in answer["error"], answer
    status, answer, _ = post(text_server, "/v2/models/tunepipe-model/infer", ('{"inputs": [{"shape": [' + "7" * 4400 + "]}]}").encode())
    assert status == 400, answer
    assert_still_serving(text_server)


def test_metrics_labels_are_closed_sets_whatever_the_method(text_server):
    import http.client

    for i in range(30):
        connection = http.client.HTTPConnection("127.0.0.1", int(text_server.url.rsplit(":", 1)[1]), timeout=30)
        connection.request(f"XM{i}", "/v1/predict")
        assert connection.getresponse().status in (400, 405)
        connection.close()
    _, text, _ = text_server.request("GET", "/metrics")
    assert "XM" not in text
    assert text_server.metric("tunepipe_http_requests_total", route="other", method="other", status="405") >= 30


def test_a_long_text_is_cut_before_tokenising_and_gives_the_same_answer(text_server, single_label_bundle):
    from tunepipe.serving.runtime import InputLimits, Predictor

    bundle, _ = single_label_bundle
    long_text = GOOD + " " + "word " * 100_000
    limited, unlimited = Predictor(bundle), Predictor(bundle, limits=InputLimits(text_chars=10**9))
    cut = limited.check([long_text])[0]
    assert len(cut) == 64 * limited.bundle.preprocessing["max_length"] and long_text.startswith(cut)
    assert limited.predict([long_text]).tolist() == unlimited.predict([long_text]).tolist()  # the model sees max_length tokens either way
    huge = long_text + "word " * 680_000  # 3.9 MB: before, tokenised whole on the model's thread (2.2 s) while others waited
    body = text_server.predict([huge, GOOD])
    assert body["probabilities"][0] == pytest.approx(dict(zip(limited.labels, limited.predict([long_text])[0].tolist())), abs=1e-5)


def test_refuse_long_texts_answers_413_and_no_verify_says_so(single_label_bundle, tmp_path):
    bundle, _ = single_label_bundle
    with running_server(str(bundle), "--max-text-chars", "100", "--refuse-long-texts", "--no-verify", log_dir=tmp_path) as server:
        status, answer, _ = server.request("POST", "/v1/predict", {"inputs": [GOOD, "y" * 101]})
        assert status == 413 and "inputs[1] is 101 characters" in answer["error"] and "--max-text-chars" in answer["error"]
        assert server.predict(["y" * 100])["labels"]
        assert "bundle verification is off (--no-verify)" in server.log.read_text()


def test_a_full_queue_answers_503_with_retry_after_and_nothing_else_fails(text_server):
    results: list[tuple[int, dict]] = []
    barrier = threading.Barrier(24)

    def one() -> None:
        barrier.wait()
        status, body, headers = text_server.request("POST", "/v1/predict", {"inputs": [GOOD + " and more words" * 20] * 8})
        results.append((status, headers))

    threads = [threading.Thread(target=one) for _ in range(24)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    statuses = sorted(status for status, _ in results)
    assert set(statuses) <= {200, 503} and 200 in statuses and 503 in statuses, statuses
    assert all(int({k.lower(): v for k, v in headers.items()}["retry-after"]) >= 1 for status, headers in results if status == 503)
    assert_still_serving(text_server)


def test_the_queue_admits_up_to_its_bound():
    from tunepipe.serving.server import MicroBatcher, RequestError

    batcher = MicroBatcher.__new__(MicroBatcher)
    batcher.max_queue, batcher.admitted, batcher.seconds_per_input = 8, 0, 0.5
    batcher.admit(8)
    with pytest.raises(RequestError) as full:
        batcher.admit(1)
    assert full.value.status == 503 and full.value.headers == {"Retry-After": "4"}
    batcher.release(8)
    batcher.admit(1)


def test_oip_checks_the_whole_request_before_inference(text_server, single_label_bundle):
    from tunepipe.serving.runtime import load_bundle

    loaded = load_bundle(single_label_bundle[0])
    before = {label: text_server.metric("tunepipe_predictions_total", version=loaded.version, label=label) for label in loaded.labels}
    batches = text_server.metric("tunepipe_batch_size_count", version=loaded.version)
    status, answer, _ = text_server.request("POST", "/v2/models/tunepipe-model/infer", {
        "inputs": [{"name": "input", "shape": [2], "datatype": "BYTES", "data": [GOOD, GOOD]}], "outputs": [{"name": "nope"}]})
    assert status == 400 and "unknown output 'nope'" in answer["error"]
    assert {label: text_server.metric("tunepipe_predictions_total", version=loaded.version, label=label) for label in loaded.labels} == before
    assert text_server.metric("tunepipe_batch_size_count", version=loaded.version) == batches


def mutate(data: bytes, rng: random.Random) -> bytes:
    """A random damage: flipped bytes, a cut, an insertion, or a repeated slice."""
    data = bytearray(data)
    kind = rng.randrange(4)
    if kind == 0:
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
    elif kind == 1:
        del data[rng.randrange(1, len(data)):]
    elif kind == 2:
        at = rng.randrange(len(data))
        data[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
    else:
        at = rng.randrange(len(data))
        data[at:at] = data[at:at + rng.randint(1, 64)] * rng.randint(2, 50)
    return bytes(data)


ODD_JSON = ['"\\ud800"', "1e999", "-0", "[[[[[[]]]]]]", "{}", "null", "true", '"\\u0000"', "1" * 4400, '"' + "é" * 50 + '"', "[" * 5000 + "]" * 5000,
            '{"name": "input"}', "0.1e-99999"]


def test_fuzzed_json_bodies_never_get_a_500(text_server):
    rng = random.Random(27)
    seeds = [json.dumps({"inputs": [GOOD, "Dull."]}), json.dumps({"id": "1", "inputs": [{"name": "input", "shape": [1], "datatype": "BYTES", "data": [GOOD]}],
                                                                  "outputs": [{"name": "label"}]})]
    statuses = []
    for case in range(300):
        seed = rng.choice(seeds)
        path = "/v1/predict" if seed.startswith('{"inputs"') else "/v2/models/tunepipe-model/infer"
        if case % 3 == 0:  # a structural change: an odd JSON value in place of one of the seed's values
            parts = seed.split('"')
            value = rng.choice(ODD_JSON)
            body = seed.replace(rng.choice([p for p in parts if p][:6]), value, 1) if rng.random() < 0.5 else seed.replace("[", "[" + value + ",", 1)
            body = body.encode()
        else:
            body = mutate(seed.encode(), rng)
        status, answer, _ = post(text_server, path, body)
        assert status < 500, (case, body[:200], answer)
        statuses.append(status)
    assert {200, 400} <= set(statuses)
    assert_still_serving(text_server)


# ------------------------------------------------------------------------------------------------ images


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def encoded(image, format: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format, **options)
    return buffer.getvalue()


def test_oversized_images_are_refused_before_decoding_and_memory_stays_bounded(image_server):
    bomb = b64(huge_png(9459))  # 89 M pixels each in about 90 KB of base64
    status, answer, _ = image_server.request("POST", "/v1/predict", {"inputs": [bomb] * 4})
    assert status == 413 and "inputs[0] is 9459x9459 pixels" in answer["error"] and "--max-image-pixels" in answer["error"], answer
    at_budget = b64(huge_png(2048))  # exactly one image's budget: four fit in a request, five do not
    assert image_server.predict([at_budget] * 4)["labels"]
    status, answer, _ = image_server.request("POST", "/v1/predict", {"inputs": [at_budget] * 5})
    assert status == 413 and "inputs[4]" in answer["error"] and "--max-request-pixels" in answer["error"], answer
    assert memory_mb(image_server)["VmHWM"] < image_server.baseline + 300  # before: 100 MB -> 900 MB on the four bombs


def test_a_large_jpeg_is_decoded_at_a_reduced_scale(image_server):
    from PIL import Image

    photo = encoded(Image.new("RGB", (3000, 3000), (30, 200, 90)), "JPEG")  # 9 M pixels, over the 4.2 M budget; draft halves it
    assert image_server.predict([b64(photo)])["labels"]


def test_only_the_listed_image_formats_are_decoded(image_server):
    from PIL import Image

    spider = encoded(Image.new("F", (16, 16), 1.0), "SPIDER")
    dds = encoded(Image.new("RGBA", (16, 16), (1, 2, 3, 4)), "DDS")
    for name, data in (("SPIDER", spider), ("DDS", dds), ("DDS mutated", dds[:84] + b"\xff" * 4 + dds[88:])):
        status, answer, _ = image_server.request("POST", "/v1/predict", {"inputs": [b64(data)]})
        assert status == 422 and "inputs[0] is not a decodable image" in answer["error"], (name, answer)
    assert image_server.predict([b64(encoded(Image.new("RGB", (20, 20), (9, 9, 9)), "PNG"))])["labels"]


def test_fuzzed_images_never_get_a_500_and_memory_stays_bounded(image_server):
    from PIL import Image

    rng = random.Random(2027)
    picture = Image.frombytes("RGB", (24, 18), bytes(rng.randrange(256) for _ in range(24 * 18 * 3)))
    seeds = [encoded(picture, fmt) for fmt in ("PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP")]
    seeds += [encoded(picture, "PNG", optimize=True), encoded(picture, "JPEG", progressive=True), encoded(picture, "TIFF", compression="tiff_deflate"),
              encoded(picture.convert("RGBA"), "PNG"), encoded(picture.convert("P"), "GIF"), encoded(picture.convert("L"), "JPEG")]
    statuses = []
    for case in range(300):
        data = mutate(rng.choice(seeds), rng)
        status, answer, _ = image_server.request("POST", "/v1/predict", {"inputs": [b64(data)]})
        assert status < 500, (case, answer)
        assert status == 200 or "inputs[0]" in answer["error"], answer
        statuses.append(status)
    assert {200, 422} <= set(statuses)
    assert image_server.predict([b64(seeds[0])])["labels"]
    assert memory_mb(image_server)["VmHWM"] < image_server.baseline + 300


# ------------------------------------------------------------------------------------------------ bundles


def damaged_copies(bundle: Path, folder: Path) -> dict[str, tuple[Path, str]]:
    """name -> (a copy of `bundle` damaged that way, the words its one-line error must hold)."""
    cases = {}

    def copy(name: str) -> Path:
        target = folder / name
        shutil.copytree(bundle, target)
        return target

    from tunepipe.io import read_json, write_json

    swapped = copy("swapped-labels")
    (swapped / "labels.json").unlink()
    write_json(swapped / "labels.json", read_json(bundle / "labels.json")[::-1])  # the same bytes in another order
    cases["swapped labels"] = (swapped, "labels.json: sha256 differs from bundle.json")
    truncated = copy("truncated-model")
    data = (truncated / "model.onnx").read_bytes()
    (truncated / "model.onnx").unlink()  # the copy may be a hard link to the fixture's file
    (truncated / "model.onnx").write_bytes(data[: len(data) // 2])
    cases["truncated model"] = (truncated, f"model.onnx: {len(data) // 2} bytes, bundle.json says {len(data)}")
    for name, edit, words in (("format-string", lambda m: dict(m, format_version="2"), "format_version '2' is not a bundle format"),
                              ("format-newer", lambda m: dict(m, format_version=7), "bundle format 7 is newer"),
                              ("manifest-list", lambda m: [m], "bundle.json: a JSON list"),
                              ("no-digests", lambda m: dict(m, files={}), "lists no sha256 for labels.json")):
        target = copy(name)
        (target / "bundle.json").write_text(json.dumps(edit(json.loads((target / "bundle.json").read_text()))))
        cases[name] = (target, words)
    return cases


def test_a_damaged_bundle_is_a_one_line_error_naming_the_file(single_label_bundle, tmp_path):
    from tunepipe.serving.runtime import BundleError, Predictor

    bundle, _ = single_label_bundle
    cases = damaged_copies(bundle, tmp_path)
    for name, (damaged, words) in cases.items():
        with pytest.raises(BundleError, match=words.replace("(", r"\(")):
            Predictor(damaged)
    # --no-verify accepts the risk: the swapped labels are served as they are, a truncated model is still one line
    assert Predictor(cases["swapped labels"][0], verify=False).labels == Predictor(bundle).labels[::-1]
    with pytest.raises(BundleError, match="model.onnx: ONNX Runtime cannot load it"):
        Predictor(cases["truncated model"][0], verify=False)
    table = tmp_path / "texts.csv"
    table.write_text(f"text\n{GOOD}\n")
    predict, serve = [str(table), "-o", str(tmp_path / "out.csv"), "--no-progress"], ["--port", "9"]
    for command, args, name in (("predict", predict, "swapped labels"), ("predict", predict, "manifest-list"), ("serve", serve, "swapped labels"),
                                ("serve", serve, "truncated model")):
        damaged, words = cases[name]
        done = subprocess.run([sys.executable, "-m", "tunepipe.cli", command, str(damaged), *args], capture_output=True, text=True,
                              env=serve_env(), timeout=120)
        assert done.returncode == 2 and words in done.stderr and "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert not (tmp_path / "out.csv").exists()
    done = subprocess.run([sys.executable, "-m", "tunepipe.cli", "predict", str(cases["swapped labels"][0]), str(table), "-o", str(tmp_path / "out.csv"),
                           "--no-progress", "--no-verify"], capture_output=True, text=True, env=serve_env(), timeout=120)
    assert done.returncode == 0 and "--no-verify" in done.stderr, done.stderr


def test_fuzzed_manifests_are_a_bundle_error_or_load(image_bundle, tmp_path):
    """200 seeded edits of bundle.json (byte damage, or one value swapped for an odd JSON value): never another exception."""
    from tunepipe.serving.runtime import BundleError, Predictor

    rng = random.Random(1127)
    target = tmp_path / "bundle"
    shutil.copytree(image_bundle, target)
    original = (image_bundle / "bundle.json").read_text()
    manifest = json.loads(original)
    odd = [None, [], {}, "", -1, 2**70, 1.5, True, "x" * 300, [1, 2], {"sha256": 3}]
    outcomes = []
    for case in range(200):
        if case % 2:
            text = mutate(original.encode(), rng).decode("utf-8", "replace")
        else:
            edited = json.loads(original)
            key = rng.choice(list(manifest))
            if isinstance(edited[key], dict) and edited[key] and rng.random() < 0.7:
                inner = rng.choice(list(edited[key]))
                edited[key][inner] = rng.choice(odd)
            else:
                edited[key] = rng.choice(odd)
            text = json.dumps(edited)
        (target / "bundle.json").write_text(text)
        try:
            Predictor(target)
            outcomes.append("loaded")
        except BundleError as exc:
            assert "\n" not in str(exc) and str(target) in str(exc), exc
            outcomes.append("refused")
    assert {"loaded", "refused"} <= set(outcomes)
