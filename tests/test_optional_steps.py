"""Runs that leave out an optional step (distill off, robustness off, the image preset) are recorded, reproduced and served.

Each of the `optional_history` fixture's three runs is the main command alone followed by `git add dvc.lock && git
commit`, in a real git + DVC project with a local remote (tests/conftest.py).
"""

from __future__ import annotations

import json

import pytest
import yaml

from tests.pipeline import sh, tunepipe
from tests.serving.conftest import free_port
from tests.test_registry import served_version
from tunepipe import registry

e2e = pytest.mark.e2e
#: (run, step left out, the reason its skipped.json and the report give)
SKIPS = (("no_distill", "distill", "distill.enabled is false"), ("no_robustness", "robustness", "robustness.enabled is false"),
         ("image", "distill", "image models have no student"))


@e2e
@pytest.mark.parametrize(("name", "step", "reason"), SKIPS)
def test_the_main_command_records_a_run_that_leaves_a_step_out(optional_history, name, step, reason):
    run, project = getattr(optional_history, name), optional_history.project
    assert "tunepipe: recorded the run in dvc.lock" in run.output, run.output[-3000:]
    lock = yaml.safe_load(sh(project, "git", "show", f"{run.rev}:dvc.lock").stdout)
    assert f"results/{step}" in {out["path"] for out in lock["stages"]["pipeline"]["outs"]}
    # the step's folder holds only the reason, never an earlier run's outputs; the steps that ran hold no marker
    assert run.folders[step] == ["skipped.json"]
    assert all("skipped.json" not in files and files for other, files in run.folders.items() if other != step)
    assert list(run.skipped) == [step] and reason in run.skipped[step]


def test_the_report_says_which_steps_were_left_out_and_why(optional_history):
    html = (optional_history.project / "results" / "report.html").read_text()  # the last run: the image preset
    assert 'id="skipped-steps">Steps left out of this run: <code>distill</code> (image models have no student' in html
    marker = json.loads((optional_history.project / "results" / "distill" / "skipped.json").read_text())
    assert marker["skipped"] is True and marker["step"] == "distill" and "image models have no student" in marker["reason"]


@e2e
def test_dvc_sees_the_recorded_runs_as_up_to_date(optional_history):
    project = optional_history.project
    assert "Data and pipelines are up to date" in sh(project, "dvc", "status").stdout
    assert "didn't change, skipping" in sh(project, "dvc", "repro", "pipeline").stdout


@e2e
def test_reproduce_a_run_without_distillation_gets_equal_metrics(optional_history, tmp_path):
    done = tunepipe(optional_history.project, "reproduce", optional_history.no_distill.rev[:8], "--workdir", str(tmp_path / "wt"))
    output = done.stdout + done.stderr
    assert done.returncode == 0 and "REPRODUCED: the metrics are equal" in output, output[-4000:]
    assert "distill" not in output.split("running the pipeline:")[1].split("(log")[0]  # the step stays left out


@e2e
def test_the_registry_registers_and_serves_the_image_run(optional_history, tmp_path):
    clone = tmp_path / "clone"
    sh(optional_history.project, "git", "clone", "-q", str(optional_history.project), str(clone))
    sh(clone, "git", "config", "user.name", "tunepipe test")
    sh(clone, "git", "config", "user.email", "test@tunepipe.invalid")
    sh(clone, "dvc", "remote", "modify", "--local", "storage", "url", str(optional_history.remote))
    done = tunepipe(clone, "registry", "register", optional_history.image.rev)
    assert done.returncode == 0 and "registered tunepipe-model v0.0.1" in done.stdout, done.stdout + done.stderr
    done = tunepipe(clone, "registry", "assign", "--stage", "prod", "--version", "v0.0.1")
    assert done.returncode == 0, done.stdout + done.stderr
    bundle, version = registry.bundle_for_stage("prod", repo=clone, dest=tmp_path / "bundle")
    assert version == "v0.0.1" and json.loads((bundle / "labels.json").read_text())  # the image model's classes
    assert served_version(clone, free_port()) == "v0.0.1"
