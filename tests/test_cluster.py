"""What a job asks a cluster for: memory that follows the rows it reads (tunepipe.cluster.memory_request)."""

from __future__ import annotations

import pytest

from tunepipe.cluster import memory_request, rows_mib


def test_only_the_rows_a_job_reads_count(tmp_path):
    (tmp_path / "train.jsonl").write_bytes(b"x" * 2**20)
    (tmp_path / "test.jsonl").write_bytes(b"x" * 2**19)
    (tmp_path / "data.csv").write_bytes(b"x" * 2**20)
    (tmp_path / "best.ckpt").write_bytes(b"x" * 2**21)
    (tmp_path / "stage.py").write_bytes(b"x" * 2**20)
    inputs = {"train": str(tmp_path / "train.jsonl"), "test": str(tmp_path / "test.jsonl"), "best": str(tmp_path / "best.ckpt"),
              "code": [str(tmp_path / "stage.py")]}
    assert rows_mib(inputs) == 1.5  # the checkpoint and the code do not grow with the data
    assert rows_mib({"raw": [str(tmp_path / "data.csv")], "code": [str(tmp_path / "stage.py")]}) == 1.0  # the user's dataset
    assert rows_mib({"raw": []}) == 0.0  # a bundled dataset


def test_memory_grows_with_the_rows_and_with_each_attempt(tmp_path):
    mem_mb = memory_request(500, 10)
    (tmp_path / "rows.jsonl").write_bytes(b"x" * (3 * 2**20))
    inputs = {"rows": str(tmp_path / "rows.jsonl")}
    assert mem_mb(None, inputs, 1) == 530
    assert mem_mb(None, inputs, 2) == 1060  # retried after running out of memory: twice as much
    (tmp_path / "rows.jsonl").write_bytes(b"x" * (30 * 2**20))
    assert mem_mb(None, inputs, 1) == 800
    assert mem_mb(None, {}, 1) == 500


def test_rows_not_made_yet_raise_what_snakemake_waits_on(tmp_path):
    with pytest.raises(FileNotFoundError) as error:
        rows_mib({"rows": str(tmp_path / "rows.jsonl")})
    assert error.value.filename == str(tmp_path / "rows.jsonl")
