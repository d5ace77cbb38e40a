"""git and dvc.lock/cache reading: a file is found whether the lock versions it alone or inside a folder."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest

from tunepipe.reproduce import restore_targets
from tunepipe.vcs import GitError, cached_object, git, lock_outs, read_lock, recorded_md5, recorded_run

OLD_LOCK = {"schema": "2.0", "stages": {"pipeline": {"cmd": "snakemake", "params": {"params.yaml": {"seed": 1}}, "outs": [
    {"path": "results/evaluate/metrics.json", "md5": "a" * 32},
    {"path": "results/train/best.ckpt", "md5": "b" * 32},
    {"path": "results/train/summary.json", "md5": "c" * 32},
    {"path": "results/prepare", "md5": "d" * 32 + ".dir"},
]}}}


def put(cache: Path, data: bytes, suffix: str = "") -> str:
    md5 = hashlib.md5(data).hexdigest() + suffix
    (cache / "files" / "md5" / md5[:2]).mkdir(parents=True, exist_ok=True)
    (cache / "files" / "md5" / md5[:2] / md5[2:]).write_bytes(data)
    return md5


def new_lock(cache: Path) -> dict:
    """A lock as dvc.yaml writes it now: folders, each a `.dir` manifest in the cache."""
    evaluate = put(cache, json.dumps([{"md5": "e" * 32, "relpath": "confusion.json"}, {"md5": "a" * 32, "relpath": "metrics.json"}]).encode(), ".dir")
    train = put(cache, json.dumps([{"md5": "b" * 32, "relpath": "best.ckpt"}, {"md5": "c" * 32, "relpath": "sub/summary.json"}]).encode(), ".dir")
    return {"stages": {"pipeline": {"cmd": "snakemake", "params": {"params.yaml": {"seed": 1}}, "outs": [
        {"path": "results/evaluate", "md5": evaluate}, {"path": "results/train", "md5": train}]}}}


def test_a_file_md5_is_found_as_its_own_out_or_inside_a_folder_out(tmp_path):
    assert recorded_md5(OLD_LOCK, "results/evaluate/metrics.json", tmp_path) == "a" * 32
    assert recorded_md5(OLD_LOCK, "results/export/model.onnx", tmp_path) is None
    lock = new_lock(tmp_path)
    assert recorded_md5(lock, "results/evaluate/metrics.json", tmp_path) == "a" * 32
    assert recorded_md5(lock, "results/train/sub/summary.json", tmp_path) == "c" * 32
    assert recorded_md5(lock, "results/train/missing.json", tmp_path) is None
    assert recorded_md5(lock, "results/evaluate/metrics.json", tmp_path / "empty-cache") is None  # manifest not fetched


def test_a_recorded_run_says_whether_it_versions_the_metrics(tmp_path):
    assert recorded_run(OLD_LOCK, tmp_path).md5 == "a" * 32 and recorded_run(OLD_LOCK, tmp_path).params == {"seed": 1}
    folders = recorded_run(new_lock(tmp_path), tmp_path / "empty-cache")
    assert folders.recorded and folders.md5 is None and folders.params == {"seed": 1}
    assert not recorded_run(read_lock("stages: {pipeline: {outs: []}}"), tmp_path).recorded
    assert read_lock("not: [yaml") == {} and read_lock(None) == {}


def test_cached_objects_are_found_in_the_dvc3_and_dvc2_layouts(tmp_path):
    md5 = put(tmp_path, b"x")
    assert cached_object(tmp_path, md5) == tmp_path / "files" / "md5" / md5[:2] / md5[2:]
    (tmp_path / "ab").mkdir()
    (tmp_path / "ab" / ("c" * 30)).write_bytes(b"old")
    assert cached_object(tmp_path, "ab" + "c" * 30) == tmp_path / "ab" / ("c" * 30)
    assert cached_object(tmp_path, "f" * 32) is None


def test_checkpoints_are_restored_as_the_revision_versions_them(tmp_path):
    wanted = ["results/prepare", "results/train", "results/evaluate/metrics.json", "results/benchmarks"]
    targets, missing = restore_targets(wanted, lock_outs(OLD_LOCK))
    assert targets == ["results/prepare", "results/train/best.ckpt", "results/train/summary.json", "results/evaluate/metrics.json"]
    assert missing == ["results/benchmarks"]
    targets, missing = restore_targets(["results/train", "results/evaluate/metrics.json"], lock_outs(new_lock(tmp_path)))
    assert targets == ["results/train", "results/evaluate/metrics.json"] and missing == []


def test_git_returns_none_or_raises_with_gits_message(tmp_path, monkeypatch):
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    assert git(["rev-parse", "HEAD"], tmp_path) is None
    with pytest.raises(GitError, match="not a git repository"):
        git(["rev-parse", "HEAD"], tmp_path, check=True)
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    assert git(["rev-parse", "--is-inside-work-tree"], tmp_path) == "true\n"
