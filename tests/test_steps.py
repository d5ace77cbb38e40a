"""Optional steps a run leaves out: which and why (tunepipe.steps), the skip stage's marker, and the harness removing it."""

from __future__ import annotations

import json

from tunepipe.stages import skip
from tunepipe.stages.harness import SKIP_MARKER, Stage, main
from tunepipe.steps import OPTIONAL_STEPS, skipped_steps


def test_the_default_text_run_leaves_nothing_out(default_params):
    assert skipped_steps(default_params) == {}


def test_each_switch_and_the_image_modality_name_their_reason(default_params):
    for step in OPTIONAL_STEPS:
        params = {**default_params, step: {**default_params[step], "enabled": False}}
        assert skipped_steps(params) == {step: f"{step}.enabled is false"}
    images = {**default_params, "data": {**default_params["data"], "modality": "image"}}
    assert list(skipped_steps(images)) == ["distill"] and "image models have no student" in skipped_steps(images)["distill"]


def test_skip_writes_the_reason_and_removes_an_earlier_runs_outputs(tmp_path):
    folder = tmp_path / "results" / "distill"
    (folder / "old").mkdir(parents=True)
    (folder / "student.pt").write_bytes(b"an earlier run's student")
    (folder / "old" / "file").write_text("x")
    params = {"step": "distill", "reason": "distill.enabled is false"}
    assert main(skip.STAGE, ["--params", json.dumps(params), "--out", f"marker={folder / SKIP_MARKER}"]) == 0
    assert sorted(path.name for path in folder.iterdir()) == [SKIP_MARKER]
    assert json.loads((folder / SKIP_MARKER).read_text()) == {"step": "distill", "skipped": True, "reason": "distill.enabled is false"}


def test_a_stage_that_runs_removes_its_folders_skip_marker(tmp_path):
    folder = tmp_path / "results" / "distill"
    folder.mkdir(parents=True)
    (folder / SKIP_MARKER).write_text("{}")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / SKIP_MARKER).write_text("{}")  # another step's marker stays

    def run(ctx):
        ctx.outputs["student"].write_text("new")

    stage = Stage(name="toy", summary="", inputs={}, outputs={"student": "a file"}, run=run)
    assert main(stage, ["--params", "{}", "--out", f"student={folder / 'student.pt'}"]) == 0
    assert sorted(path.name for path in folder.iterdir()) == ["student.pt"]
    assert (tmp_path / "elsewhere" / SKIP_MARKER).exists()


def test_a_failed_stage_leaves_the_marker(tmp_path):
    folder = tmp_path / "distill"
    folder.mkdir()
    (folder / SKIP_MARKER).write_text("{}")

    def run(ctx):
        from tunepipe.errors import DataError

        raise DataError("bad data")

    stage = Stage(name="toy", summary="", inputs={}, outputs={"student": "a file"}, run=run)
    assert main(stage, ["--params", "{}", "--out", f"student={folder / 'student.pt'}"]) == 2
    assert (folder / SKIP_MARKER).exists() and not (folder / "student.pt").exists()
