"""The main command records its run (tunepipe.record, called from the Snakefile's `onsuccess:`).

Decisions are unit-tested on a fake project; the Snakemake side on a two-rule toy workflow with the same
`onsuccess:` in a real git + DVC repo (seconds); the real Snakefile in the `history` fixture, whose run 1 is
`snakemake --cores 2 results/report.html` followed by `git add dvc.lock && git commit` alone.
"""

from __future__ import annotations

import os
import shutil

import pytest
import yaml

from tests.conftest import REPO
from tests.pipeline import sh
from tunepipe.record import OFF_SWITCH, record_run, why_not

OUTS = ["results/a", "results/b", "results/logs", "results/benchmarks", ".snakemake/metadata"]
BUILT = ["results/a/out.txt", "results/b/out.txt", "results/logs/a.log", "results/logs/b.log", "results/benchmarks/b.tsv"]


@pytest.fixture
def project(tmp_path):
    (tmp_path / ".dvc").mkdir()
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    stage = {"cmd": "snakemake --cores 1 --forcerun b", "deps": ["Snakefile"], "params": ["seed"],
             "outs": [{out: {"persist": True}} for out in OUTS]}
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"pipeline": stage}}))
    return tmp_path


def params(project):
    return yaml.safe_load((project / "params.yaml").read_text())


def test_a_whole_run_of_the_stage_is_recorded(project):
    assert why_not(project, config=params(project), built=BUILT, environ={}) is None


@pytest.mark.parametrize("environ, dryrun, loud, text", [
    ({"DVC_STAGE": "pipeline"}, False, False, "run by DVC"),  # dvc repro / dvc exp run record it themselves
    ({OFF_SWITCH: "0"}, False, True, f"{OFF_SWITCH}=0"),
    ({OFF_SWITCH: "false"}, False, True, "dvc commit pipeline"),
    ({}, True, False, "dry run"),
])
def test_dvc_the_off_switch_and_a_dry_run_skip_it(project, environ, dryrun, loud, text):
    reason, said = why_not(project, config=params(project), built=BUILT, dryrun=dryrun, environ=environ)
    assert said is loud and text in reason


def test_a_partial_run_or_other_params_are_not_recorded_and_say_why(project):
    reason, loud = why_not(project, config=params(project), built=BUILT[:1] + BUILT[2:3], environ={})
    assert loud and "partial run" in reason and "results/b, results/benchmarks" in reason and "snakemake --cores 1 --forcerun b" in reason
    overridden = params(project)
    overridden["train"]["encoder_lr"] = 1e-3  # as `--config train={encoder_lr: 1e-3}` gives it
    reason, loud = why_not(project, config=overridden, built=BUILT, environ={})
    assert loud and "differ from params.yaml in train" in reason


def test_outside_a_dvc_project_it_says_nothing(tmp_path):
    said = []
    assert not record_run(tmp_path, config={}, built=BUILT, environ={}, say=said.append)
    assert said == []


def test_a_failure_to_record_is_one_line_and_not_an_exception(project):
    said = []  # the outs do not exist, so `dvc commit` fails
    environ = {key: value for key, value in os.environ.items() if key not in ("DVC_STAGE", OFF_SWITCH)}
    assert not record_run(project, config=params(project), built=BUILT, environ=environ, say=said.append)
    assert len(said) == 1 and "could not record the run" in said[0] and "`dvc commit pipeline`" in said[0]


TOY = """configfile: "params.yaml"

rule all:
    default_target: True
    input: "results/b/out.txt"

rule a:
    output: "results/a/out.txt"
    log: "results/logs/a.log"
    shell: "echo a > {output} && echo ok > {log}"

rule b:
    input: rules.a.output
    output: "results/b/out.txt"
    log: "results/logs/b.log"
    benchmark: "results/benchmarks/b.tsv"
    shell: "cat {input} > {output} && echo ok > {log}"

onsuccess:
    from tunepipe.record import record_run

    record_run(config=config, jobs=workflow.dag.jobs, dryrun=workflow.dryrun or workflow.touch)
"""


def test_snakemake_records_a_whole_run_and_only_that(project):
    """Snakemake's side: the DAG's jobs, a dry run, a partial target, a run by `dvc repro`."""
    shutil.rmtree(project / ".dvc")
    (project / "Snakefile").write_text(TOY)
    (project / ".gitignore").write_text("results/\n.snakemake/\n")
    sh(project, "git", "init", "-q")
    sh(project, "dvc", "init", "-q")
    lock = project / "dvc.lock"

    partial = sh(project, "snakemake", "--cores", "1", "results/a/out.txt")
    assert "not recorded in dvc.lock: a partial run (no job of it wrote to results/b, results/benchmarks)" in partial.stderr
    assert not lock.exists()
    dry = sh(project, "snakemake", "--cores", "1", "-n")
    assert "tunepipe:" not in dry.stdout + dry.stderr and not lock.exists()

    whole = sh(project, "snakemake", "--cores", "1", "--forcerun", "b")
    assert "tunepipe: recorded the run in dvc.lock" in whole.stdout + whole.stderr
    assert "Data and pipelines are up to date" in sh(project, "dvc", "status").stdout
    recorded = lock.read_text()

    # `dvc repro` runs Snakemake as its stage command (which reruns b) and records the run itself; Snakemake
    # stays quiet, and no second `dvc commit` races DVC's lock
    by_dvc = sh(project, "dvc", "repro", "--force")
    assert "steps (100%) done" in by_dvc.stdout + by_dvc.stderr and "tunepipe:" not in by_dvc.stdout + by_dvc.stderr
    assert lock.read_text() != recorded  # b's new benchmark file, recorded by DVC
    assert "Data and pipelines are up to date" in sh(project, "dvc", "status").stdout


@pytest.mark.e2e
def test_the_main_command_then_git_commit_alone_records_the_run(history):
    """The history fixture's run 1: `snakemake --cores 2 results/report.html`, then `git add dvc.lock && git commit`."""
    assert "tunepipe: recorded the run in dvc.lock" in history.first_run.stdout + history.first_run.stderr
    changed = sh(history.project, "git", "show", "--name-only", "--format=", history.rev1).stdout.split()
    assert changed == ["dvc.lock"]
    lock = yaml.safe_load(sh(history.project, "git", "show", f"{history.rev1}:dvc.lock").stdout)
    assert lock["stages"]["pipeline"]["params"]["params.yaml"]["train"]["encoder_lr"] in (5e-05, "5e-05")  # as DVC reads params.yaml
    # run 2 is `dvc exp run`: DVC ran Snakemake and recorded the run itself
    assert "tunepipe:" not in history.second_run.stdout + history.second_run.stderr
