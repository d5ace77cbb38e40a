"""Each modality is one object implementing the whole protocol; nothing else branches on the modality."""

from __future__ import annotations

import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tunepipe.errors import ParamsError
from tunepipe.modalities import NAMES, Modality, get_modality
from tunepipe.tasks import get_task

SRC = Path(__file__).resolve().parents[2] / "src" / "tunepipe"
ATTRIBUTES = {
    "text": {"name": "text", "input_field": "text", "task": "text classification", "baseline_features": "TF-IDF",
             "default_quantization": "dynamic"},
    "image": {"name": "image", "input_field": "path", "task": "image classification", "baseline_features": "pixels",
              "default_quantization": "static"},
}


def protocol_methods() -> dict[str, inspect.Signature]:
    return {name: inspect.signature(member) for name, member in vars(Modality).items() if inspect.isfunction(member) and not name.startswith("_")}


def test_the_modalities_are_text_and_image():
    assert NAMES == ("image", "text")


@pytest.mark.parametrize("name", ["text", "image"])
def test_each_modality_has_every_attribute_and_method_of_the_protocol(name):
    modality = get_modality(name)
    assert {key: getattr(modality, key) for key in Modality.__annotations__} == ATTRIBUTES[name]
    for method, signature in protocol_methods().items():
        implemented = inspect.signature(getattr(type(modality), method))
        expected = [(p.name, p.kind) for p in signature.parameters.values()]
        assert [(p.name, p.kind) for p in implemented.parameters.values()][: len(expected)] == expected, method
        extra = list(implemented.parameters.values())[len(expected):]
        assert all(p.default is not inspect.Parameter.empty for p in extra), method  # only optional extras


def test_an_unknown_modality_is_a_params_error_naming_the_key():
    with pytest.raises(ParamsError, match=r"data.modality 'audio' is not one of: image, text"):
        get_modality("audio")


def test_importing_the_package_loads_no_heavy_library():
    code = "import sys, tunepipe.modalities as m; m.get_modality('text'); m.get_modality('image'); " \
           "print(sorted(k for k in ('torch', 'pandas', 'numpy', 'transformers', 'PIL') if k in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_no_stage_branches_on_the_modality():
    offenders = [f"{path.name}:{n}" for path in sorted((SRC / "stages").glob("*.py"))
                 for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
                 if re.search(r"modality\s*[!=]=|[\"']image[\"']|[\"']text[\"']\s*(?:if|else)", line)]
    assert offenders == []


def test_models_and_data_know_nothing_of_modalities_checkpoints_or_optimize():
    for folder, banned in (("models", ("tunepipe.modalities", "tunepipe.checkpoints", "tunepipe.optimize")),
                           ("data", ("tunepipe.models", "tunepipe.modalities"))):
        for path in (SRC / folder).glob("*.py"):
            text = path.read_text(encoding="utf-8")
            imported = set(re.findall(r"^\s*(?:from|import) (tunepipe(?:\.\w+)?)", text, flags=re.M))
            assert not imported & set(banned), path
            assert "modality ==" not in text and "modality !=" not in text, path


def test_a_text_source_read_as_images_is_a_params_error(default_params):
    with pytest.raises(ParamsError, match="data.source 'rotten_tomatoes' holds texts.*data.modality: text"):
        get_modality("image").read(default_params["data"], Path("unused"))


def test_each_modality_reads_its_rows_with_its_input_field(tmp_path, default_params):
    from PIL import Image

    table = tmp_path / "texts.csv"
    table.write_text("text,label\ngood film,pos\nbad film,neg\n", encoding="utf-8")
    texts = get_modality("text").read(dict(default_params["data"], source="file", path=str(table), label_column="label"), tmp_path / "images")
    assert texts[["id", "text", "label"]].to_dict(orient="records") == [
        {"id": "0", "text": "good film", "label": "pos"}, {"id": "1", "text": "bad film", "label": "neg"}]
    for label in ("cat", "dog"):
        (tmp_path / "folder" / label).mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(tmp_path / "folder" / label / "a.png")
    images = get_modality("image").read(dict(default_params["data"], modality="image", source="folder", path=str(tmp_path / "folder")),
                                        tmp_path / "images")
    assert sorted(images["label"]) == ["cat", "dog"] and all(Path(p).is_file() for p in images["path"])


def test_clean_keeps_max_examples_per_reason_whatever_the_report_shows(default_params):
    import pandas as pd

    from tunepipe.data.cleaning import MAX_EXAMPLES

    frame = pd.DataFrame({"id": [str(i) for i in range(30)], "text": [f"w{i}" for i in range(30)], "label": ["a", "b"] * 15})
    frame = pd.concat([frame, pd.DataFrame({"id": ["x", "y"], "text": ["a long enough text", "another long enough text"], "label": ["a", "b"]})])
    kept, report = get_modality("text").clean(frame, labels=None, clean_cfg=dict(default_params["clean"], min_words=2), source="rows.jsonl")
    assert report.removed["too_short"] == 30 and len(report.examples["too_short"]) == MAX_EXAMPLES == 20
    assert sorted(kept["id"]) == ["x", "y"]


def test_text_augment_and_baseline_use_the_text(labelled_rows, default_params):
    text = get_modality("text")
    extra = list(text.augment(labelled_rows, augment_cfg=dict(default_params["augment"], multiplier=0.5), seed=1, out_dir=Path("unused")))
    assert extra and all(row["augmented"] and row["text"] for row in extra)
    labels = [int(row["label"] == "pos") for row in labelled_rows]
    probs = text.baseline_outputs(labelled_rows, labels, labelled_rows[:5], baseline_cfg=default_params["baseline"], seed=0,
                                  task=get_task("single_label"), names=["neg", "pos", "unused"])
    assert probs.shape == (5, 3) and (probs[:, 2] == 0).all() and abs(probs.sum(axis=1) - 1).max() < 1e-9


def test_text_encoding_truncates_to_max_length(tiny_model_cfg):
    text = get_modality("text")
    data = text.encode([{"text": "word " * 100}, {"text": "short"}], None, tiny_model_cfg, text.load_processor(tiny_model_cfg))
    assert max(data.lengths()) == tiny_model_cfg["max_length"] and data.labels == [-1, -1]


def test_preprocessing_and_limits_say_what_a_serving_runtime_must_do():
    text, image = get_modality("text"), get_modality("image")
    assert text.preprocessing({"pretrained": "m", "max_length": 64}) == {
        "modality": "text", "tokenizer": "m", "max_length": 64,
        "steps": ["tokenize with the model's tokenizer (WordPiece)", "truncate to 64 tokens", "pad to the longest row; attention_mask marks real tokens"]}
    assert image.preprocessing({"image_size": 224})["steps"][0] == "decode, convert to RGB, resize to 224x224"
    assert "max_length" in text.input_limit({}) and "resized" in image.input_limit({})


def test_examples_are_the_text_itself_or_an_inline_thumbnail(tmp_path):
    from PIL import Image

    image = get_modality("image")
    assert get_modality("text").show_example("<b>a text</b>") == "<b>a text</b>"  # the template escapes it
    path = tmp_path / "shoe.png"
    Image.new("L", (28, 28), 200).save(path)
    html = str(image.show_example(str(path)))
    assert html.startswith('<img class="thumb" src="data:image/png;base64,') and "shoe.png" in html
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"nope")
    assert "not readable" in str(image.show_example(str(broken)))
    sneaky = str(image.show_example("<script>alert(1)</script>.png"))
    assert "<script>" not in sneaky and "&lt;script&gt;" in sneaky
