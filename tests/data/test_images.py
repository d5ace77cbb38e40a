"""Image data: readers, every image cleaning reason, kornia augmentation, the image dataset."""

from __future__ import annotations

import io
import json
import os
import struct
import zlib

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageEnhance

from tunepipe.data.augment import augment_images
from tunepipe.data.cleaning import IMAGE_REASONS, clean_images
from tunepipe.data.images import FASHION_MNIST_DIR, ImageTooLarge, difference_hash, fashion_mnist, folder_tree, open_image, pixel_hash
from tunepipe.data.readers import read_image_folder, read_image_table, resolve_source
from tunepipe.errors import DataError
from tunepipe.tasks import get_task

AUGMENT_CFG = {"hflip": 0.5, "degrees": 15, "translate": 0.1, "scale": 0.1, "brightness": 0.2, "contrast": 0.2, "erase": 0.5}

SINGLE = get_task("single_label")


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


def png_claiming(path, width: int, height: int) -> None:
    """A tiny PNG whose header declares width x height pixels (all Pillow reads before it decides to decode)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + header + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))


def frame_of(paths_labels):
    return pd.DataFrame([{"id": str(i), "path": str(p), "label": l} for i, (p, l) in enumerate(paths_labels)])


def test_folder_per_class_tree(image_folder):
    rows = read_image_folder(resolve_source({"source": "folder", "path": str(image_folder), "format": "auto", "modality": "image",
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
    rows = read_image_table(source)
    assert rows["path"].tolist() == [str(image_folder / "cat" / "0.png"), str(image_folder / "dog" / "10.png")]


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_a_missing_label_in_an_image_table_is_a_missing_label_not_a_class(image_folder, suffix):
    table = pd.DataFrame({"file": [f"cat/{i}.png" for i in range(6)] + [f"dog/{i}.png" for i in range(10, 16)],
                          "kind": ["cat"] * 5 + [None] + ["dog"] * 6})
    path = image_folder / f"labels{suffix}"
    if suffix == ".jsonl":
        path.write_text("\n".join(json.dumps(row) for row in table.to_dict(orient="records")) + "\n")
    else:
        table.to_parquet(path)
    source = resolve_source({"source": "file", "path": str(path), "format": "auto", "modality": "image", "image_column": "file",
                             "text_column": "text", "label_column": "kind"})
    rows = read_image_table(source)
    assert rows["label"].tolist()[5] == ""
    kept, report = clean_images(rows, labels=None, min_size=8, task=SINGLE)
    assert report.removed["missing_label"] == 1 and report.examples["missing_label"] == [str(image_folder / "cat" / "5.png")]
    assert report.label_names == ["cat", "dog"] and len(kept) == 11


def test_every_image_cleaning_reason(image_folder, tmp_path):
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png")
    truncated = tmp_path / "truncated.png"
    pattern(3).save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:40])
    huge = tmp_path / "huge.png"
    png_claiming(huge, 20000, 20000)
    tiny = tmp_path / "tiny.png"
    pattern(4, size=4).save(tiny)
    deep = tmp_path / "deep.png"
    Image.fromarray(np.full((32, 32), 40000, dtype=np.uint16)).save(deep)  # 16-bit: mode I;16
    resized = tmp_path / "brighter.png"
    ImageEnhance.Brightness(pattern(0)).enhance(1.1).save(resized)  # near-duplicate of cat/0.png
    cat, dog = sorted((image_folder / "cat").glob("*.png")), sorted((image_folder / "dog").glob("*.png"))
    rows = frame_of(
        [(p, "cat") for p in cat] + [(p, "dog") for p in dog]
        + [(corrupt, "cat"), (truncated, "cat"), (huge, "cat"), (tiny, "dog"), (deep, "dog"), (resized, "cat"),
           (cat[1], "cat"),  # exact duplicate (same file again)
           (cat[2], "dog"),  # conflicting label
           (dog[0], ""), (dog[1], "bird")]
    )
    kept, report = clean_images(rows, labels=["cat", "dog"], min_size=8, task=SINGLE)
    assert set(report.removed) == set(IMAGE_REASONS)
    assert report.removed == {"unreadable": 2, "too_large": 1, "unsupported_mode": 1, "too_small": 1, "missing_label": 1, "undeclared_label": 1,
                              "conflicting_label": 2, "duplicate": 1, "near_duplicate": 1}
    assert report.examples["unreadable"] == [str(corrupt), str(truncated)]
    assert report.examples["too_large"] == [str(huge)]
    assert report.kept_rows == len(kept) == 11  # the 12 originals, less cat[2] (its copy carries another label)
    assert "key" in kept and "exact" not in kept


def test_an_oversized_image_in_a_folder_is_removed_and_named_not_a_crash(image_folder):
    """A 20000x20000 PNG is a small file (Pillow refuses to decode it: DecompressionBombError)."""
    oversized = image_folder / "dog" / "poster.png"
    Image.new("1", (20000, 20000)).save(oversized)  # 1 bit per pixel: 50 MB in memory while writing
    assert oversized.stat().st_size < 1_000_000
    rows = read_image_folder(resolve_source({"source": "folder", "path": str(image_folder), "format": "auto", "modality": "image",
                                             "text_column": "text", "label_column": "label"}))
    kept, report = clean_images(rows, labels=None, min_size=8, task=SINGLE)
    assert report.removed["too_large"] == 1 and report.examples["too_large"] == [str(oversized.resolve())]
    assert sum(report.removed.values()) == 1 and report.labels == {"cat": 6, "dog": 6}


def test_an_image_just_over_pillows_limit_is_refused_before_decoding(tmp_path, monkeypatch):
    """Between once and twice MAX_IMAGE_PIXELS Pillow only warns, then decodes (hundreds of MB for real photos)."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 2000)
    path = tmp_path / "big.png"
    pattern(1, size=48).save(path)  # 2304 pixels: over the limit, under twice it
    with pytest.raises(ImageTooLarge, match="48x48 pixels"):
        open_image(path)
    pattern(2, size=40).save(tmp_path / "fine.png")  # 1600 pixels
    assert open_image(tmp_path / "fine.png").size == (40, 40)


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
    first = list(augment_images(rows, multiplier=1.0, cfg=AUGMENT_CFG, seed=0, out_dir=tmp_path / "a"))
    second = list(augment_images(rows, multiplier=1.0, cfg=AUGMENT_CFG, seed=0, out_dir=tmp_path / "b"))
    assert len(first) == len(rows)
    for x, y in zip(first, second):
        pixels_x, pixels_y = np.asarray(Image.open(x["path"])), np.asarray(Image.open(y["path"]))
        assert np.array_equal(pixels_x, pixels_y)  # same seed, same image
        source = np.asarray(Image.open(rows[int(x["source_id"])]["path"]).convert("RGB"))
        assert pixels_x.shape == source.shape and not np.array_equal(pixels_x, source)


def test_the_global_seed_changes_every_augmented_image(image_folder, tmp_path):
    """Each image's own seed comes from (seed, row id, copy number); ids as long as prepare's ("12345") must not
    push the global seed out of it."""
    paths = sorted(image_folder.rglob("*.png"))
    rows = [{"id": str(10000 + i), "path": str(p), "label": p.parent.name} for i, p in enumerate(paths)]

    def augmented(seed: int, run: str) -> list[np.ndarray]:
        # one row per call, so both seeds augment the same (row, copy 0) and only the seed differs
        return [np.asarray(Image.open(next(augment_images([row], multiplier=1.0, cfg=AUGMENT_CFG, seed=seed, out_dir=tmp_path / run))["path"]))
                for row in rows]

    seed0, again, seed1 = augmented(0, "a"), augmented(0, "b"), augmented(1, "c")
    assert all(np.array_equal(x, y) for x, y in zip(seed0, again))
    assert sum(not np.array_equal(x, y) for x, y in zip(seed0, seed1)) >= len(rows) - 1


def test_fashion_mnist_from_the_debian_package():
    if not FASHION_MNIST_DIR.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"dataset-fashion-mnist is not installed ({FASHION_MNIST_DIR}): `make setup` installs it when run as root")
        pytest.skip("dataset-fashion-mnist is not installed")
    images, labels = fashion_mnist()
    assert images.shape == (70000, 28, 28) and images.dtype == np.uint8
    assert np.bincount(labels).tolist() == [7000] * 10
