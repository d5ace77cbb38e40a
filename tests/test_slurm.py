"""The slurm profile on a real single-node SLURM cluster (scripts/slurm-local.sh): every job goes through sbatch.

Nothing here is mocked: the session fixture installs and starts slurmctld/slurmd/munge, the tests run snakemake
with `--profile workflow/profiles/slurm` in scratch copies of the project, and read SLURM's own records
(squeue, scontrol, the jobcomp file). The node has fake GPUs (character devices): a job that asks for one gets
CUDA_VISIBLE_DEVICES, while torch sees no GPU, so `accelerator: auto` trains on the CPU.
Outside CI the module is skipped when it cannot install SLURM (not root, no apt); with CI=true it fails instead.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
import yaml

from tests.conftest import REPO
from tests.pipeline import default_rules, scratch_project

pytestmark = [pytest.mark.slurm, pytest.mark.e2e]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
SCRIPT = REPO / "scripts" / "slurm-local.sh"
IN_CI = os.environ.get("CI") == "true"
# Targets first: --configfile/--config/--set-resources take lists and would swallow a target placed after them.
PROFILE = ("--profile", "workflow/profiles/slurm", "--cores", "2", "--slurm-keep-successful-logs")
# For the one-job runs below: the first status check after 5 s, not the profile's 10 s (the test pipeline keeps 10).
ONE_JOB = ("--slurm-init-seconds-before-status-checks", "5")
SUBMITTED = re.compile(r"Job (\d+) has been submitted with SLURM jobid (\d+) \(log: (\S+)\)\.")


def run(*args: str, timeout: int = 60) -> subprocess.CompletedProcess:
    return subprocess.run(["timeout", "-k", "10", str(timeout), *args], capture_output=True, text=True)


#: The timeouts below guard against a hang, they time nothing: under `make test` another pytest-xdist worker shares
#: the CPUs (and the cluster's node is this machine), so a run may take twice as long as it would alone.
HANG_FACTOR = 2


def snakemake_command(*args: str, timeout: int) -> list[str]:
    return ["timeout", "-k", "10", str(timeout * HANG_FACTOR), SNAKEMAKE, *args]


def snakemake_env() -> dict[str, str]:
    # Jobs inherit this environment (sbatch --export=ALL) and run this venv's python in the same folder.
    return dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", HF_HUB_OFFLINE="1")


def snakemake(cwd: Path, *args: str, timeout: int) -> subprocess.CompletedProcess:
    return subprocess.run(snakemake_command(*args, timeout=timeout), cwd=cwd, capture_output=True, text=True, env=snakemake_env())


def slurm_config(key: str) -> str:
    output = run("scontrol", "show", "config").stdout
    return re.search(rf"^{key}\s*=\s*(\S+)", output, flags=re.M).group(1)


def jobcomp() -> dict[str, list[dict[str, str]]]:
    """SLURM's job completion records, by job id (a requeued job has one record per run)."""
    records: dict[str, list[dict[str, str]]] = {}
    for line in Path(slurm_config("JobCompLoc")).read_text().splitlines():
        fields = dict(item.split("=", 1) for item in line.split() if "=" in item)
        records.setdefault(fields["JobId"], []).append(fields)
    return records


def job_info(job_id: str) -> str:
    return run("scontrol", "show", "job", "-d", job_id).stdout


def job_state(job_id: str) -> str:
    return run("squeue", "-h", "--states=all", "-j", job_id, "-o", "%T").stdout.strip()


def wait_for(condition, timeout: float, what: str, process: subprocess.Popen | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if process is not None and process.poll() is not None:
            out, err = process.communicate()
            pytest.fail(f"snakemake exited ({process.returncode}) while waiting for {what}:\n{out[-3000:]}{err[-3000:]}")
        time.sleep(0.2)
    pytest.fail(f"timed out after {timeout}s waiting for {what}")


def running_train_job(project: Path) -> str | None:
    """The SLURM job id of the running train job of this project, once its training process has started."""
    for line in run("squeue", "-h", "-t", "RUNNING", "-o", "%i|%k|%Z").stdout.splitlines():
        job_id, comment, workdir = line.split("|")
        if comment == "rule_train" and Path(workdir) == project and training_process(job_id):
            return job_id
    return None


def training_process(job_id: str) -> int | None:
    """The pid of `python -m tunepipe.stages.train` among the job's processes (`scontrol listpids`)."""
    for line in run("scontrol", "listpids", job_id).stdout.splitlines()[1:]:
        pid = line.split()[0]
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv[0].endswith(b"python") and b"tunepipe.stages.train" in argv:
            return int(pid)
    return None


def process_env(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


@pytest.fixture(scope="session")
def slurm_cluster():
    """A running single-node cluster: started (and installed if needed) by scripts/slurm-local.sh."""
    reason = None
    if os.geteuid() != 0:
        reason = "the local SLURM cluster needs root (it installs Debian packages and starts daemons)"
    elif not shutil.which("sbatch") and not shutil.which("apt-get"):
        reason = "the local SLURM cluster needs apt-get (Debian/Ubuntu) to install SLURM"
    if reason:
        if IN_CI:
            pytest.fail(f"CI=true but {reason}: the SLURM tests must run in CI")
        pytest.skip(reason)
    was_running = run("bash", str(SCRIPT), "status").returncode == 0
    started = run("bash", str(SCRIPT), "start", timeout=600)
    if started.returncode != 0:
        pytest.fail(f"could not start the local SLURM cluster (scripts/slurm-local.sh start):\n{started.stdout}{started.stderr}")
    yield
    if not was_running:
        run("bash", str(SCRIPT), "stop")


@pytest.fixture(scope="module")
def slurm_run(slurm_cluster, tmp_path_factory):
    """The tiny pipeline, end to end, through the slurm profile."""
    project = scratch_project(tmp_path_factory.mktemp("slurm") / "project")
    shutil.copy(REPO / "tests" / "fixtures" / "tiny.yaml", project / "tiny.yaml")
    started = time.monotonic()
    result = snakemake(project, "results/report.html", *PROFILE, "--configfile", "tiny.yaml", timeout=540)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    print(f"tiny pipeline through SLURM: {time.monotonic() - started:.0f} s")
    return project, output


def training_project(slurm_run, root: Path, model_dir: Path, **train: object) -> Path:
    """A copy of the SLURM run's project with the data phase done, set up to train the tiny local model."""
    source, _ = slurm_run
    skip = {"train", "evaluate", "distill", "prune", "export", "report.html", "slurm_logs"}
    project = root / "project"
    shutil.copytree(source, project, symlinks=True, ignore=lambda _, names: [n for n in names if n in skip])
    overrides = {"model": {"pretrained": str(model_dir), "max_length": 24},
                 "train": {"head_init": "random", "log_every_n_steps": 50, **train}}
    (project / "train.yaml").write_text(yaml.safe_dump(overrides))
    return project


def test_every_job_of_the_tiny_pipeline_ran_through_sbatch(slurm_run):
    project, output = slurm_run
    run_id = re.search(r"SLURM run ID: (\S+)", output).group(1)
    submitted = SUBMITTED.findall(output)
    assert len(submitted) == len(default_rules()), output[-4000:]
    assert not re.search(r"^localrule ", output, flags=re.M)  # nothing ran on the submit host
    records = jobcomp()
    for rule in sorted(default_rules()):
        logs = list((project / ".snakemake" / "slurm_logs" / f"rule_{rule}").glob("*.log"))
        assert len(logs) == 1, f"{rule}: {logs}"
        job_id = logs[0].stem
        assert job_id in {slurm_id for _, slurm_id, _ in submitted}
        assert [record["JobState"] for record in records[job_id]] == ["COMPLETED"], rule
        assert records[job_id][0]["Name"] == run_id and records[job_id][0]["WorkDir"] == str(project)
        assert f"rule {rule}:" in logs[0].read_text()  # the job's own snakemake ran the rule on the node
    metrics = json.loads((project / "results" / "evaluate" / "metrics.json").read_text())
    assert metrics["test_rows"] == 60 and metrics["accuracy"] > 0.55
    assert (project / "results" / "report.html").stat().st_size > 0
    resolved = yaml.safe_load((project / "results" / "train" / "config.yaml").read_text())["resolved"]
    assert resolved["accelerator"] == "cpu" and resolved["threads"] == 2  # --cores 2 caps the profile's 8 CPUs


def test_training_jobs_ask_for_a_gpu_per_process_unless_cpu_or_switched_off(slurm_run):
    project, _ = slurm_run
    cases = (
        ("{accelerator: auto}", {}, ["gpu=1"]),  # the default: a GPU (auto trains on the CPU where CUDA sees none)
        ("{accelerator: auto}", {"TUNEPIPE_SLURM_GPUS": "0"}, ["gpu=0"]),  # the documented switch for a CPU-only cluster
        ("{accelerator: cpu}", {}, ["gpu=0"]),
        ("{accelerator: gpu, devices: 2}", {}, ["mpi=srun", "nodes=1", "tasks_per_node=2", "cpus_per_task=1", "slurm_extra=--gpus-per-node=2"]),
        ("{accelerator: auto, devices: 4, num_nodes: 2}", {}, ["nodes=2", "tasks_per_node=4", "slurm_extra=--gpus-per-node=4"]),
    )
    for train, env, expected in cases:
        result = subprocess.run(snakemake_command("results/train/summary.json", "-n", "--forcerun", "train", *PROFILE,
                                                  "--configfile", "tiny.yaml", "--config", f"train={train}", timeout=120),
                                cwd=project, capture_output=True, text=True, env={**snakemake_env(), **env})
        assert result.returncode == 0, result.stderr[-3000:]
        resources = re.search(r"rule train:.*?resources: ([^\n]*)", result.stdout + result.stderr, flags=re.S).group(1).split(", ")
        assert set(expected) <= set(resources), (train, env, resources)
        assert ("slurm_extra=--gpus-per-node" in " ".join(resources)) == ("--gpus-per-node" in " ".join(expected)), resources


def test_a_failing_job_names_its_log_and_gpu_params_reach_sbatch(slurm_run, tmp_path, tiny_model_dir):
    # accelerator: gpu -> the job is submitted with a GPU (the node has fake ones), and fails because torch sees none.
    project = training_project(slurm_run, tmp_path, tiny_model_dir, accelerator="gpu")
    result = snakemake(project, "results/train/summary.json", *PROFILE, *ONE_JOB, "--configfile", "tiny.yaml", "train.yaml", timeout=240)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    (_, job_id, log), = SUBMITTED.findall(output)
    assert "TresPerJob=gres:gpu:1" in job_info(job_id)  # sbatch --gpus=1
    error = output[output.index("Error in rule train:"):]
    assert f"SLURM-job '{job_id}' failed, SLURM status is: 'FAILED'" in error
    assert f"log: results/logs/train.log, {log} (check log file(s) for error details)" in error
    assert "asks for a GPU but none is visible" in Path(log).read_text()
    assert "asks for a GPU but none is visible" in error  # show-failed-logs prints the rule's log
    assert not (project / "results" / "train" / "summary.json").exists()


def test_a_requeued_training_resumes_from_its_last_epoch_with_a_gpu_and_falls_back_to_cpu(slurm_run, tmp_path, tiny_model_dir):
    train = {"max_epochs": 4, "early_stopping_patience": 4}
    project = training_project(slurm_run, tmp_path / "slurm", tiny_model_dir, **train)
    reference = training_project(slurm_run, tmp_path / "local", tiny_model_dir, **train)
    process = subprocess.Popen(
        snakemake_command("results/train/summary.json", *PROFILE, *ONE_JOB, "--set-resources", "train:gpu=1",
                          "--configfile", "tiny.yaml", "train.yaml", timeout=300),
        cwd=project, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=snakemake_env(),
    )
    # The same training without SLURM (local, same threads), meanwhile: it must end bit for bit the same.
    local_log = tmp_path / "local.log"
    with open(local_log, "w") as handle:
        local = subprocess.Popen(
            snakemake_command("results/train/summary.json", "--cores", "2", "--configfile", "tiny.yaml", "train.yaml", timeout=300),
            cwd=reference, stdout=handle, stderr=subprocess.STDOUT, env=snakemake_env(),
        )
    try:
        job_id = wait_for(lambda: running_train_job(project), 120, "the train job to run", process)
        details = job_info(job_id)
        assert "TresPerJob=gres:gpu:1" in details and re.search(r"GRES=gpu:1\(IDX:\d\)", details)
        pid = training_process(job_id)
        assert process_env(pid)["CUDA_VISIBLE_DEVICES"] == "0"  # SLURM handed the training process its GPU
        last = project / "results" / "train" / "checkpoints" / "last.ckpt"
        wait_for(last.exists, 120, "the first epoch's last.ckpt", process)
        requeue = run("scontrol", "requeue", job_id)
        assert requeue.returncode == 0, requeue.stderr
        # SLURM holds a requeued job back for a while (BeginTime); start it now rather than wait.
        wait_for(lambda: job_state(job_id) == "PENDING", 60, "the requeued job to be pending", process)
        run("scontrol", "update", f"JobId={job_id}", "StartTime=now")
        out, err = process.communicate(timeout=300)
        local.wait(timeout=300)
    finally:
        for proc in (process, local):
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                proc.communicate(timeout=60)
    assert local.returncode == 0, local_log.read_text()[-3000:]
    output = out + err
    assert process.returncode == 0, output[-5000:]
    assert [record["JobState"] for record in jobcomp()[job_id]] == ["PENDING", "COMPLETED"]  # requeued once, one job
    assert len(SUBMITTED.findall(output)) == 1
    train_log = (project / "results" / "logs" / "train.log").read_text()
    assert f"resuming from {last}" in train_log
    summary = json.loads((project / "results" / "train" / "summary.json").read_text())
    assert summary["resumed"] is True and summary["accelerator"] == "cpu"

    def history(root: Path) -> list[dict]:
        with open(root / "results" / "train" / "history.csv") as handle:
            return [dict(row, seconds="") for row in csv.DictReader(handle)]

    assert len(history(project)) == train["max_epochs"] and history(project) == history(reference)
    ours = torch.load(project / "results" / "train" / "best.ckpt", weights_only=True)["state_dict"]
    theirs = torch.load(reference / "results" / "train" / "best.ckpt", weights_only=True)["state_dict"]
    assert all(torch.equal(ours[key], theirs[key]) for key in theirs)


def test_ctrl_c_cancels_the_submitted_jobs(slurm_run, tmp_path, tiny_model_dir):
    # Snakemake's remote executor takes its jobs off the active list while a status query runs (squeue), so a
    # Ctrl-C that lands inside that query cancels nothing (snakemake-interface-executor-plugins, RemoteExecutor
    # ._wait_for_jobs; README "SLURM"). The test presses Ctrl-C between two queries, where a user almost always
    # lands: --verbose logs each query's timing, and the next query is at least 5 s away.
    project = training_project(slurm_run, tmp_path, tiny_model_dir, max_epochs=500, early_stopping_patience=500)
    # Snakemake itself, not under `timeout`: GNU timeout passes a signal on to its child AND to its whole process
    # group, so Snakemake would get the Ctrl-C twice, the second one interrupting its own `scancel` (seen in CI).
    # A terminal's Ctrl-C reaches it once. SIGINT is reset to its default in the child: a test run started in the
    # background (`make test &`, some CI runners) inherits SIGINT ignored, and Snakemake would never see it.
    # The waits below bound the run, and `finally` kills it.
    process = subprocess.Popen(
        [SNAKEMAKE, "results/train/summary.json", *PROFILE, *ONE_JOB, "--verbose", "--configfile", "tiny.yaml", "train.yaml"],
        cwd=project, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=snakemake_env(),
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    lines: list[str] = []
    queried = threading.Event()

    def read_output():
        for line in process.stdout:
            lines.append(line)
            if "Status query timing (cycle)" in line:
                queried.set()

    reader = threading.Thread(target=read_output, daemon=True)
    reader.start()

    def unless_snakemake_ended(condition):
        def check():
            if process.poll() is not None:
                reader.join(timeout=10)
                pytest.fail(f"snakemake exited ({process.returncode}) early:\n{''.join(lines)[-4000:]}")
            return condition()
        return check

    try:
        job_id = wait_for(unless_snakemake_ended(lambda: running_train_job(project)), 120, "the train job to run")
        pid = training_process(job_id)
        queried.clear()
        wait_for(unless_snakemake_ended(queried.is_set), 90, "snakemake's next status query")
        time.sleep(1)
        process.send_signal(signal.SIGINT)
        try:
            wait_for(lambda: job_state(job_id) == "CANCELLED", 90, f"job {job_id} to be cancelled")
        except pytest.fail.Exception:
            pytest.fail(f"job {job_id} is {job_state(job_id)!r} after Ctrl-C; snakemake said:\n{''.join(lines)[-4000:]}")
        # Then Snakemake waits for the cancelled job's status and prints its log: about 45 s here, more under load.
        process.wait(timeout=300)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        reader.join(timeout=10)
    output = "".join(lines)
    assert process.returncode != 0, output[-3000:]
    assert "Terminating processes on user request" in output, output[-3000:]
    wait_for(lambda: not Path(f"/proc/{pid}").exists(), 60, "the training process to end")
    assert not (project / "results" / "train" / "summary.json").exists()


def test_a_two_process_training_is_one_job_of_two_tasks_ranked_by_slurm(slurm_run, tmp_path, tiny_model_dir):
    # train.devices: 2 -> sbatch --ntasks-per-node=2 --gpus-per-node=2 (accelerator auto asks for GPUs; the node's are
    # fake, so CUDA sees none and both ranks train on the CPU), and srun starts the two processes in one step.
    project = training_project(slurm_run, tmp_path, tiny_model_dir, devices=2)
    result = snakemake(project, "results/train/summary.json", *PROFILE, *ONE_JOB, "--configfile", "tiny.yaml", "train.yaml", timeout=400)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-5000:]
    (_, job_id, _), = SUBMITTED.findall(output)
    details = job_info(job_id)
    assert "NumTasks=2 CPUs/Task=1" in details and "NtasksPerN:B:S:C=2:" in details, details
    assert "TresPerNode=gres:gpu:2" in details, details  # --gpus-per-node=2
    assert [record["JobState"] for record in jobcomp()[job_id]] == ["COMPLETED"]
    train_log = (project / "results" / "logs" / "train.log").read_text()
    for rank in range(2):  # both processes trained, each a task of the job's step 0, ranked by SLURM, on this host
        assert f"rank {rank} of 2 (SLURMEnvironment, SLURM job {job_id} step 0 task {rank} on {socket.gethostname()}): " in train_log, train_log[-3000:]
    assert train_log.count("epoch 1 done") == 2
    summary = json.loads((project / "results" / "train" / "summary.json").read_text())
    assert summary["strategy"] == "ddp" and summary["accelerator"] == "cpu" and summary["threads"] == 1
    assert not list((project / "results" / "train").rglob("*.rank1")) and not list((project / "results").rglob("*.partial"))


def test_a_job_no_node_can_run_stops_the_run_at_once_naming_the_limit(slurm_cluster, tmp_path):
    # As a new user on a 2-CPU cluster: no --cores, so train asks for the profile's 8 CPUs; then too much memory.
    project = scratch_project(tmp_path / "project")
    shutil.copy(REPO / "tests" / "fixtures" / "tiny.yaml", project / "tiny.yaml")
    node_cpus = run("sinfo", "-h", "-o", "%c").stdout.split()[0]
    for args, message in (
        ((), f"SLURM could never run this job: rule train asks for 8 CPUs per node (--cpus-per-task), but no node of partition "
             f"'local' (the default partition) has more than {node_cpus}: run with --cores {node_cpus}, or lower set-threads: train "
             "in workflow/profiles/slurm/config.yaml."),
        (("--cores", "2", "--set-resources", "train:mem_mb=9000000"),
         "SLURM could never run this job: rule train asks for 9000000 MB of memory (--mem), but no node of partition 'local' "
         "(the default partition) has more than"),
    ):
        result = snakemake(project, "results/train/summary.json", "--profile", "workflow/profiles/slurm", *args,
                           "--configfile", "tiny.yaml", timeout=120)
        output = result.stdout + result.stderr
        assert result.returncode == 1, output[-3000:]
        assert message in output, output[-3000:]
        assert "Traceback" not in output and not SUBMITTED.findall(output)  # nothing was submitted
