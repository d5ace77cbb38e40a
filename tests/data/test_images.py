"""Image data: readers, every image cleaning reason, kornia augmentation, the image dataset."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import io

from PIL import Image, ImageEnhance

from tunepipe.data.augment import augment_images
from tunepipe.data.cleaning import IMAGE_REASONS, clean_images
from tunepipe.data.images import difference_hash, fashion_mnist, folder_tree, pixel_hash
from tunepipe.data.readers import read_rows, resolve_source
from tunepipe.errors import DataError


def pattern(seed: int, size: int = 32) -> Image.Image:
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 255, size=(4, 4), dtype=np.uint8)
    return Image.fromarray(np.kron(blocks, np.ones((size // 4, size // 4), dtype=np.uint8)).astype(np.uint8))


@pytest.fixture
def image_folder(tmp_path):
    root = tmp_path / "images"
    for label, seeds in (("cat", range(0, 6)), ("dog", range(10, 16))):
        (root / label).mkdir(parents=True)
        for seed in seeds:
            pattern(seed).save(root / label / f"{seed}.png")
    return root


def frame_of(paths_labels):
    return pd.DataFrame([{"id": str(i), "path": str(p), "label": l} for i, (p, l) in enumerate(paths_labels)])


def test_folder_per_class_tree(image_folder):
    rows = read_rows(resolve_source({"source": "folder", "path": str(image_folder), "format": "auto", "modality": "image",
                                     "text_column": "text", "label_column": "label"}))
    assert rows["label"].value_counts().to_dict() == {"cat": 6, "dog": 6}
    assert all(p.endswith(".png") for p in rows["path"])


def test_a_folder_without_images_names_the_layout(tmp_path):
    (tmp_path / "empty" / "cat").mkdir(parents=True)
    (tmp_path / "empty" / "cat" / "notes.txt").write_text("no images here")
    with pytest.raises(DataError, match="no images found .* Expected layout: .*/<label>/<image>.png"):
        folder_tree(tmp_path / "empty")


def test_csv_of_relative_image_paths(image_folder, tmp_path):
    csv = image_folder / "labels.csv"
    csv.write_text("file,kind\ncat/0.png,cat\ndog/10.png,dog\n")
    source = resolve_source({"source": "file", "path": str(csv), "format": "auto", "modality": "image", "image_column": "file",
                             "text_column": "text", "label_column": "kind"})
    rows = read_rows(source)
    assert rows["path"].tolist() == [str(image_folder / "cat" / "0.png"), str(image_folder / "dog" / "10.png")]


def test_every_image_cleaning_reason(image_folder, tmp_path):
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png")
    truncated = tmp_path / "truncated.png"
    pattern(3).save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:40])
    tiny = tmp_path / "tiny.png"
    pattern(4, size=4).save(tiny)
    deep = tmp_path / "deep.png"
    Image.fromarray(np.full((32, 32), 40000, dtype=np.uint16)).save(deep)  # 16-bit: mode I;16
    resized = tmp_path / "brighter.png"
    ImageEnhance.Brightness(pattern(0)).enhance(1.1).save(resized)  # near-duplicate of cat/0.png
    cat, dog = sorted((image_folder / "cat").glob("*.png")), sorted((image_folder / "dog").glob("*.png"))
    rows = frame_of(
        [(p, "cat") for p in cat] + [(p, "dog") for p in dog]
        + [(corrupt, "cat"), (truncated, "cat"), (tiny, "dog"), (deep, "dog"), (resized, "cat"),
           (cat[1], "cat"),  # exact duplicate (same file again)
           (cat[2], "dog"),  # conflicting label
           (dog[0], ""), (dog[1], "bird")]
    )
    kept, report = clean_images(rows, labels=["cat", "dog"], min_size=8)
    assert set(report.removed) == set(IMAGE_REASONS)
    assert report.removed == {"unreadable": 2, "unsupported_mode": 1, "too_small": 1, "missing_label": 1, "undeclared_label": 1,
                              "conflicting_label": 2, "duplicate": 1, "near_duplicate": 1}
    assert report.examples["unreadable"] == [str(corrupt), str(truncated)]
    assert report.kept_rows == len(kept) == 11  # the 12 originals, less cat[2] (its copy carries another label)
    assert "key" in kept and "exact" not in kept


def test_perceptual_hash_sees_near_duplicates_and_pixel_hash_exact_ones():
    a, b = pattern(7), ImageEnhance.Brightness(pattern(7)).enhance(1.1)
    assert difference_hash(a) == difference_hash(b) and pixel_hash(a) != pixel_hash(b)
    jpeg = io.BytesIO()
    a.convert("RGB").save(jpeg, format="JPEG", quality=95)
    assert difference_hash(Image.open(jpeg)) == difference_hash(a)  # a re-encoded copy
    assert difference_hash(a) != difference_hash(pattern(8))
    assert pixel_hash(a) == pixel_hash(a.convert("RGB"))


def test_kornia_augmentation_writes_changed_images_reproducibly(image_folder, tmp_path):
    rows = [{"id": str(i), "path": str(p), "label": "cat"} for i, p in enumerate(sorted((image_folder / "cat").glob("*.png")))]
    cfg = {"hflip": 0.5, "degrees": 15, "translate": 0.1, "scale": 0.1, "brightness": 0.2, "contrast": 0.2, "erase": 0.5}
    first = augment_images(rows, multiplier=1.0, cfg=cfg, seed=0, out_dir=tmp_path / "a")
    second = augment_images(rows, multiplier=1.0, cfg=cfg, seed=0, out_dir=tmp_path / "b")
    assert len(first) == len(rows)
    for x, y in zip(first, second):
        pixels_x, pixels_y = np.asarray(Image.open(x["path"])), np.asarray(Image.open(y["path"]))
        assert np.array_equal(pixels_x, pixels_y)  # same seed, same image
        source = np.asarray(Image.open(rows[int(x["source_id"])]["path"]).convert("RGB"))
        assert pixels_x.shape == source.shape and not np.array_equal(pixels_x, source)


@pytest.mark.skipif(not __import__("pathlib").Path("/usr/share/datasets/fashion-mnist").exists(), reason="dataset-fashion-mnist not installed")
def test_fashion_mnist_from_the_debian_package():
    images, labels = fashion_mnist()
    assert images.shape == (70000, 28, 28) and images.dtype == np.uint8
    assert np.bincount(labels).tolist() == [7000] * 10
