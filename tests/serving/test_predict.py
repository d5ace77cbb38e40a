"""The bundle, the light runtime's encoders and `tunepipe predict`, against what export's ONNX runs saw."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
import subprocess
import sys

import numpy as np
import pytest

from tests.serving.conftest import serve_env
from tunepipe.io import read_json, read_jsonl
from tunepipe.serving.runtime import Bundle, ImageEncoder, TextEncoder, load_bundle


def predict_cli(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tunepipe.cli", "predict", *map(str, args), "--no-progress"], capture_output=True, text=True,
                          cwd=cwd, env=serve_env(), timeout=300)


def read_scores(path) -> list[dict]:
    with open(path, encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def export_probabilities(project, model_file: str) -> tuple[list[str], np.ndarray]:
    """The test split's probabilities exactly as export computed its ONNX predictions (modality.encode + ort_logits)."""
    from tunepipe.checkpoints import load_model
    from tunepipe.modalities import get_modality
    from tunepipe.optimize.onnx_export import ort_logits, ort_session
    from tunepipe.optimize.variants import PARITY_BATCH_SIZE
    from tunepipe.serving.runtime import softmax

    _, payload = load_model(project / "results" / "prune" / "model.pt")
    modality = get_modality(payload["modality"])
    rows = read_jsonl(project / "results" / "split" / "test.jsonl")
    dataset = modality.encode(rows, None, payload["model_cfg"], modality.load_processor(payload["model_cfg"]))
    card = read_json(project / "results" / "export" / "model_card.json")
    logits = ort_logits(ort_session(project / "results" / "export" / model_file, 1), [spec["name"] for spec in card["inputs"]], dataset, PARITY_BATCH_SIZE)
    return [str(row["id"]) for row in rows], softmax(logits.astype(np.float64))


def assert_same_predictions(scored: list[dict], ids: list[str], probabilities: np.ndarray, labels: list[str]) -> None:
    assert [row["id"] for row in scored] == ids
    assert [row["label"] for row in scored] == [labels[i] for i in probabilities.argmax(1)]
    got = np.array([[float(row[f"prob_{label}"]) for label in labels] for row in scored])
    np.testing.assert_allclose(got, probabilities, atol=2e-5)
    np.testing.assert_allclose([float(row["confidence"]) for row in scored], probabilities.max(1), atol=2e-5)


def test_the_bundle_holds_what_inference_needs_with_checked_digests(bundle, tiny_run):
    manifest = read_json(bundle / "bundle.json")
    assert manifest["format_version"] == 1 and manifest["modality"] == "text"
    assert set(manifest["files"]) == {"model.onnx", "model.int8.onnx", "tokenizer.json", "labels.json", "preprocessing.json", "model_card.json", "monitoring.json"}
    assert manifest["input_names"] == ["input_ids", "attention_mask"]
    loaded = load_bundle(bundle, verify=True)
    assert loaded.labels == read_json(tiny_run / "results" / "export" / "model_card.json")["labels"]
    assert (bundle / "model.onnx").read_bytes() == (tiny_run / "results" / "export" / "model.onnx").read_bytes()
    test_labels = [row["label"] for row in read_jsonl(tiny_run / "results" / "split" / "test.jsonl")]
    distribution = loaded.monitoring["label_distribution"]
    assert list(distribution) == loaded.labels
    assert distribution == pytest.approx({label: test_labels.count(label) / len(test_labels) for label in loaded.labels})
    assert loaded.monitoring["metrics"]["accuracy"] == loaded.card["metrics"]["accuracy"]


def test_text_encoding_is_exactly_the_pipelines(bundle):
    from tunepipe.data.datamodule import EncodedTexts
    from tunepipe.models.backbone import load_tokenizer

    loaded = load_bundle(bundle)
    tokenizer = load_tokenizer(loaded.card["params"]["model"]["pretrained"])
    max_length = loaded.preprocessing["max_length"]
    texts = ["A gem of a film.", "word " * 200, "Ünïcödé  café — naïve 😀 ", "  tabs\tand\nnewlines  ", "UPPER lower MiXeD, punctuation!?", "x"]
    dataset = EncodedTexts(texts, None, tokenizer, max_length)
    expected = dataset.collate([dataset[i] for i in range(len(texts))])
    feeds = TextEncoder(loaded).feeds(texts)
    assert set(feeds) == {"input_ids", "attention_mask"}
    for name in feeds:
        assert feeds[name].dtype == np.int64
        np.testing.assert_array_equal(feeds[name], expected[name].numpy())
    assert feeds["input_ids"].shape[1] == max_length  # the long text was truncated, the others padded to it


def test_predict_equals_exports_onnx_predictions_on_the_test_split(bundle, tiny_run, tmp_path):
    labels = load_bundle(bundle).labels
    ids, expected = export_probabilities(tiny_run, "model.onnx")
    out = tmp_path / "scored.csv"
    done = predict_cli(bundle, tiny_run / "results" / "split" / "test.jsonl", "-o", out, "--batch-size", "7", "--threads", "2")
    assert done.returncode == 0, done.stderr
    assert_same_predictions(read_scores(out), ids, expected, labels)

    ids, expected = export_probabilities(tiny_run, "model.int8.onnx")
    done = predict_cli(bundle, tiny_run / "results" / "split" / "test.jsonl", "-o", out, "--int8")
    assert done.returncode == 0, done.stderr
    assert_same_predictions(read_scores(out), ids, expected, labels)


def test_a_copied_bundle_scores_a_csv_alone(bundle, tiny_run, tmp_path):
    copy = tmp_path / "elsewhere" / "my-model"
    shutil.copytree(bundle, copy)
    rows = read_jsonl(tiny_run / "results" / "split" / "test.jsonl")[:9]
    with open(tmp_path / "reviews.csv", "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["review_id", "review"])
        writer.writerows([[f"r{i}", row["text"]] for i, row in enumerate(rows)])
    done = predict_cli(copy, "reviews.csv", "-o", "scored.csv", "--text-column", "review", "--id-column", "review_id", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    scored = read_scores(tmp_path / "scored.csv")
    assert list(scored[0]) == ["id", "label", "confidence", *(f"prob_{label}" for label in load_bundle(copy).labels)]
    assert [row["id"] for row in scored] == [f"r{i}" for i in range(9)]
    parquet = tmp_path / "reviews.parquet"
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"review_id": [f"r{i}" for i in range(9)], "review": [row["text"] for row in rows]}), parquet)
    done = predict_cli(copy, parquet, "-o", tmp_path / "from-parquet.csv", "--text-column", "review", "--id-column", "review_id")
    assert done.returncode == 0, done.stderr
    assert read_scores(tmp_path / "from-parquet.csv") == scored


@pytest.mark.parametrize(("content", "name", "extra", "expect"), [
    ("id,body\n1,hello\n", "in.csv", [], "no column 'text' (columns: id, body); name the input column with --text-column"),
    ('{"text": "fine"}\n{"text": 3}\n', "in.jsonl", [], "in.jsonl row 2: the input is a number"),
    ('{"text": "fine"}\nnot json\n', "in.jsonl", [], "in.jsonl line 2: not valid JSON"),
    ("text\n\"   \"\n", "in.csv", [], "in.csv line 2: the input is an empty text"),
    ("whatever", "in.xlsx", [], "cannot read .xlsx; give a .csv, .tsv, .jsonl or .parquet file"),
])
def test_bad_input_files_get_one_line_naming_the_file_and_the_fix(bundle, tmp_path, content, name, extra, expect):
    source = tmp_path / name
    source.write_text(content, encoding="utf-8")
    out = tmp_path / "out.csv"
    done = predict_cli(bundle, source, "-o", out, *extra)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tunepipe predict: error: ") and expect in lines[0], done.stderr
    assert "Traceback" not in done.stderr and not out.exists()


def test_a_bad_bundle_path_says_what_a_bundle_is(bundle, tmp_path):
    done = predict_cli(tmp_path / "nowhere", bundle.parent.parent / "split" / "test.jsonl", "-o", tmp_path / "out.csv")
    assert done.returncode == 2 and "not a folder" in done.stderr and "results/export/bundle" in done.stderr
    partial = tmp_path / "partial"
    shutil.copytree(bundle, partial)
    (partial / "tokenizer.json").unlink()
    done = predict_cli(partial, bundle.parent.parent / "split" / "test.jsonl", "-o", tmp_path / "out.csv")
    assert done.returncode == 2 and "missing tokenizer.json; copy the whole bundle folder" in done.stderr


def test_image_encoding_is_exactly_the_pipelines(tmp_path):
    from PIL import Image

    from tunepipe.data.images import open_image, to_array

    rng = np.random.default_rng(0)
    paths = []
    for i, (mode, size) in enumerate([("RGB", (40, 30)), ("L", (28, 28)), ("RGBA", (17, 50)), ("P", (64, 64))]):
        image = Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).convert(mode)
        path = tmp_path / f"{i}.png"
        image.save(path)
        paths.append(str(path))
    spec = {"modality": "image", "input_names": ["pixels"], "image_size": 24, "mode": "RGB"}
    encoder = ImageEncoder(Bundle(path=tmp_path, manifest={"modality": "image"}, labels=["a", "b"], preprocessing=spec, monitoring={}, card={}))
    pixels = encoder.feeds([encoder.check(path, i) for i, path in enumerate(paths)])["pixels"]
    np.testing.assert_array_equal(pixels, np.stack([to_array(open_image(path), 24) for path in paths]))
    from_bytes = encoder.feeds([encoder.check((tmp_path / "0.png").read_bytes(), 0)])["pixels"]
    np.testing.assert_array_equal(from_bytes[0], pixels[0])
    from tunepipe.serving.runtime import InputError

    with pytest.raises(InputError, match=r"inputs\[3\] is not a decodable image"):
        encoder.check(b"not an image", 3)


def test_a_folder_output_replaces_an_old_folder_atomically(tmp_path):
    from tunepipe.io import commit_partial, partial_path, remove_path

    final = tmp_path / "bundle"
    final.mkdir()
    (final / "old.txt").write_text("old")
    partial = partial_path(final)
    partial.mkdir()
    (partial / "new.txt").write_text("new")
    commit_partial(partial, final)
    assert sorted(p.name for p in final.iterdir()) == ["new.txt"] and not partial.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["bundle"]  # nothing left aside
    remove_path(final)
    remove_path(final)
    assert not final.exists()


def test_the_model_card_in_the_bundle_names_the_bundles_files(bundle):
    card = json.loads((bundle / "model_card.json").read_text())
    assert card["model"]["file"] == "model.onnx" and card["model"]["int8_file"] == "model.int8.onnx"


def test_predict_on_images_equals_exports_onnx_predictions_and_reads_a_folder(tiny_image_run, tmp_path):
    image_bundle = tiny_image_run / "results" / "export" / "bundle"
    labels = load_bundle(image_bundle).labels
    assert read_json(image_bundle / "preprocessing.json")["image_size"] == read_json(image_bundle / "model_card.json")["preprocessing"]["image_size"]
    ids, expected = export_probabilities(tiny_image_run, "model.onnx")
    out = tmp_path / "scored.csv"
    done = predict_cli(image_bundle, tiny_image_run / "results" / "split" / "test.jsonl", "-o", out)
    assert done.returncode == 0, done.stderr
    assert_same_predictions(read_scores(out), ids, expected, labels)

    rows = read_jsonl(tiny_image_run / "results" / "split" / "test.jsonl")[:4]
    folder = tmp_path / "photos" / "day one"
    folder.mkdir(parents=True)
    for i, row in enumerate(rows):
        shutil.copy(row["path"], folder / f"{i}{Path(row['path']).suffix}")
    (folder / "notes.txt").write_text("not an image")
    done = predict_cli(image_bundle, tmp_path / "photos", "-o", out)
    assert done.returncode == 0, done.stderr
    scored = read_scores(out)
    assert [row["id"] for row in scored] == [f"day one/{i}{Path(row['path']).suffix}" for i, row in enumerate(rows)]
    assert [row["label"] for row in scored] == [labels[i] for i in expected[: len(rows)].argmax(1)]
    (folder / "broken.png").write_bytes(b"not a png")
    done = predict_cli(image_bundle, tmp_path / "photos", "-o", out)
    assert done.returncode == 2 and "broken.png" in done.stderr and "not a decodable image" in done.stderr, done.stderr


def test_the_harness_writes_a_folder_output_over_an_old_one_and_a_killed_runs_leftover(tmp_path):
    from tunepipe.io import partial_path
    from tunepipe.stages.harness import Stage, main

    def run(ctx):
        folder = ctx.outputs["folder"]
        folder.mkdir()
        (folder / "new.txt").write_text("new")

    stage = Stage(name="folder", summary="writes a folder", inputs={}, outputs={"folder": "a folder"}, run=run)
    final = tmp_path / "out" / "bundle"
    final.mkdir(parents=True)
    (final / "old.txt").write_text("old")
    leftover = partial_path(final)
    leftover.mkdir()
    (leftover / "half-written.txt").write_text("from a killed run")
    assert main(stage, ["--params", "{}", "--out", f"folder={final}"]) == 0
    assert sorted(p.name for p in final.iterdir()) == ["new.txt"]
    assert sorted(p.name for p in final.parent.iterdir()) == ["bundle"]

    def fails(ctx):
        run(ctx)
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        main(Stage(name="folder", summary="fails", inputs={}, outputs={"folder": "a folder"}, run=fails), ["--params", "{}", "--out", f"folder={final}"])
    assert sorted(p.name for p in final.parent.iterdir()) == ["bundle"]  # the failed run's half folder is gone, the good one kept
    assert (final / "new.txt").exists()
