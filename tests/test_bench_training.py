"""benchmarks/bench_training.py: the interleaved comparison gives both sides the same timed steps and rows.

The benchmark's own tiny model (a random 2-layer BERT with MiniLM's tokenizer: no small pretrained BERT ships in a
package) on the bundled texts, a few steps: the accounting is tested, not the speed.
"""

from __future__ import annotations

import pytest

from benchmarks import bench_training


def test_interleaved_sides_time_the_same_steps_and_rows(monkeypatch, capsys) -> None:
    """The timed turns of the two sides cover the same optimizer steps: 4 timed steps in turns of 3 are a turn of 3 and
    a turn of 1 on each side, 8 rows a step."""
    captured = {}
    real = bench_training.run_interleaved

    def spy(setup, turn):
        captured["runs"] = real(setup, turn)
        return captured["runs"]

    monkeypatch.setattr(bench_training, "run_interleaved", spy)
    assert bench_training.main(["--model", "tiny", "--threads", "1", "--steps", "4", "--warmup", "2", "--batch-size", "8",
                                "--loader-batches", "2", "--turn", "3"]) == 0
    out = capsys.readouterr().out
    assert "turns of 3 steps each" in out and "Lightning / plain:" in out and "per-turn median:" in out
    lightning, plain = captured["runs"]
    assert len(lightning.steps) == len(plain.steps) == 2
    assert lightning.rate > 0 and plain.rate > 0
    assert lightning.rate * sum(lightning.steps) == pytest.approx(4 * 8)
    assert plain.rate * sum(plain.steps) == pytest.approx(4 * 8)
