"""Training on two nodes for real: a two-node SLURM cluster on this machine (`scripts/slurm-local.sh start --nodes 2`).

slurmctld and the two slurmd run in network + UTS namespaces of their own (hosts tpctl, tpnode1, tpnode2 on a private
bridge); the nodes share this machine's filesystem as cluster nodes share a disk. `train: {accelerator: cpu, devices: 1,
num_nodes: 2}` through the slurm profile is one job of one task per node, the two ranks talking gloo across the
namespaces. Checked: it ends bit for bit as the two-process training on one node (same sharding, same threads per
process), every rank's log names its host, only rank 0 writes; and a rank SIGKILLed mid-epoch on tpnode2 fails the job
with a message naming that node and rank, leaves last.ckpt intact, and a re-run resumes to the uninterrupted result.
The model is the tiny random-weight BERT of `tiny_model_dir`; the data phase is `tiny_run`'s.
Outside CI the module is skipped where the cluster cannot start (not root, no namespaces); with CI=true it fails.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml

from tests.conftest import REPO
from tests.test_slurm import SUBMITTED, run, snakemake_command, snakemake_env, wait_for

SCRIPT = REPO / "scripts" / "slurm-local.sh"
IN_CI = os.environ.get("CI") == "true"
SLURM_CONF = "/etc/slurm-two-nodes/slurm.conf"
JOBCOMP = "/var/log/slurm-local/two-nodes/jobcomp.log"
# --cores 2: each job gets 2 CPUs per node, so each rank trains with 2 threads, as each of the reference's 2 processes
# does with --cores 4 (threads are shared among a node's processes): the same sums in the same order.
PROFILE = ("--profile", "workflow/profiles/slurm", "--cores", "2", "--slurm-keep-successful-logs",
           "--slurm-init-seconds-before-status-checks", "5")
TRAIN = {"accelerator": "cpu", "max_epochs": 3, "early_stopping_patience": 3, "head_init": "random", "log_every_n_steps": 1}
TWO_NODES = {**TRAIN, "devices": 1, "num_nodes": 2}
ONE_NODE = {**TRAIN, "devices": 2, "num_nodes": 1}


def two_node_env() -> dict[str, str]:
    return {**snakemake_env(), "SLURM_CONF": SLURM_CONF}


@pytest.fixture(scope="module")
def two_nodes():
    """The running two-node cluster; stopped again unless it ran before."""
    reason = "the two-node SLURM cluster needs root (namespaces, daemons, packages)" if os.geteuid() != 0 else None
    if reason is None and not shutil.which("sbatch") and not shutil.which("apt-get"):
        reason = "the two-node SLURM cluster needs apt-get (Debian/Ubuntu) to install SLURM"
    was_running = reason is None and run("bash", str(SCRIPT), "status", "--nodes", "2").returncode == 0
    if reason is None:
        started = run("bash", str(SCRIPT), "start", "--nodes", "2", timeout=600)
        if started.returncode != 0:
            said = started.stderr.strip().splitlines()[-1] if started.stderr.strip() else f"exit {started.returncode}"
            if "do not allow" not in said:  # anything but a kernel/permission limit is a failure, CI or not
                pytest.fail(f"scripts/slurm-local.sh start --nodes 2 failed:\n{started.stdout}{started.stderr}")
            reason = said
    if reason:
        if IN_CI:
            pytest.fail(f"CI=true but {reason}")
        pytest.skip(reason)
    yield
    if not was_running:  # stopped, it leaves no namespace, interface, per-host file or process of its hosts behind
        stopped = run("bash", str(SCRIPT), "stop", "--nodes", "2")
        assert stopped.returncode == 0, stopped.stderr
        assert not set(run("ip", "netns", "list").stdout.split()) & {"tpctl", "tpnode1", "tpnode2"}
        assert not re.search(r"tpslurm0|v-tp", run("ip", "-o", "link", "show").stdout)
        assert not any(Path("/etc/netns", host).exists() for host in ("tpctl", "tpnode1", "tpnode2"))


def project_from(tiny_run: Path, project: Path, model_dir: Path, train: dict) -> Path:
    """A copy of the tiny run's project with only its data phase, set up to train the tiny model with `train`."""
    keep = {"prepare", "clean", "split", "augment", "benchmarks", "logs"}
    shutil.copytree(tiny_run, project, symlinks=True, ignore=lambda folder, names: [
        name for name in names if (Path(folder) == tiny_run / "results" and name not in keep) or name == "slurm_logs"])
    (project / "results" / "logs" / "train.log").unlink(missing_ok=True)
    overrides = {"model": {"pretrained": str(model_dir), "max_length": 24}, "train": train}
    (project / "train.yaml").write_text(yaml.safe_dump(overrides))
    return project


def start(project: Path, *args: str, env: dict[str, str], timeout: int = 400) -> subprocess.Popen:
    command = snakemake_command("results/train/summary.json", *args, "--configfile", "tiny.yaml", "train.yaml", timeout=timeout)
    return subprocess.Popen(command, cwd=project, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


def history(project: Path) -> list[dict[str, str]]:  # every column but the wall time
    header, *rows = (project / "results" / "train" / "history.csv").read_text().splitlines()
    return [dict(zip(header.split(","), row.split(",")), seconds="") for row in rows]


def weights(project: Path) -> dict[str, torch.Tensor]:
    return torch.load(project / "results" / "train" / "best.ckpt", weights_only=True)["state_dict"]


def assert_same_training(ours: Path, theirs: Path) -> None:
    assert history(ours) == history(theirs) and len(history(ours)) == TRAIN["max_epochs"]
    mine, reference = weights(ours), weights(theirs)
    assert mine.keys() == reference.keys() and all(torch.equal(mine[key], reference[key]) for key in reference)


def training_pid(host: str, project: Path) -> int | None:
    """The training process of `project` that runs as `host` (in that host's network namespace)."""
    for pid in run("ip", "netns", "pids", host).stdout.split():
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            cwd = Path(os.readlink(f"/proc/{pid}/cwd"))
        except OSError:
            continue
        if argv[0].endswith(b"python") and b"tunepipe.stages.train" in argv and cwd == project:
            return int(pid)
    return None


@pytest.fixture(scope="module")
def runs(two_nodes, tiny_run, tiny_model_dir, tmp_path_factory):
    """Three trainings of the same params at once: on two nodes through the slurm profile; the same, with rank 1's
    process SIGKILLed on tpnode2 in the middle of the second epoch; and as 2 processes on one node, without SLURM."""
    root = tmp_path_factory.mktemp("multinode")
    projects = {name: project_from(tiny_run, root / name, tiny_model_dir, train)
                for name, train in (("two_nodes", TWO_NODES), ("killed", TWO_NODES), ("one_node", ONE_NODE))}
    started = time.monotonic()
    processes = {name: start(projects[name], *PROFILE, env=two_node_env()) for name in ("two_nodes", "killed")}
    processes["one_node"] = start(projects["one_node"], "--cores", "4", env=snakemake_env())
    try:
        log = projects["killed"] / "results" / "logs" / "train.log"
        # Mid-epoch: both ranks logged the second epoch's first step; six of its seven steps are still to come.
        wait_for(lambda: log.exists() and log.read_text().count("epoch 2/3  step 1/7 ") == 2, 400, "the second epoch", processes["killed"])
        os.kill(wait_for(lambda: training_pid("tpnode2", projects["killed"]), 10, "rank 1 on tpnode2"), signal.SIGKILL)
        outputs = {name: process.communicate(timeout=800)[0] for name, process in processes.items()}
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
                process.communicate(timeout=60)
    print(f"two-node, killed two-node and one-node trainings side by side: {time.monotonic() - started:.0f} s")
    return SimpleNamespace(**projects, outputs=outputs, returncodes={name: p.returncode for name, p in processes.items()})


@pytest.mark.slurm
@pytest.mark.e2e
def test_two_nodes_train_as_two_processes_on_one_node_do(runs):
    assert runs.returncodes["one_node"] == 0, runs.outputs["one_node"][-4000:]
    output = runs.outputs["two_nodes"]
    assert runs.returncodes["two_nodes"] == 0, output[-6000:]
    (_, job_id, _), = SUBMITTED.findall(output)
    record = next(line for line in Path(JOBCOMP).read_text().splitlines() if f"JobId={job_id} " in line)
    assert "JobState=COMPLETED" in record and "NodeList=tpnode[1-2]" in record and "NodeCnt=2" in record, record
    log = (runs.two_nodes / "results" / "logs" / "train.log").read_text()
    for rank, host in enumerate(("tpnode1", "tpnode2")):  # one task per node, each ranked by SLURM and naming its host
        assert f"rank {rank} of 2 (SLURMEnvironment, SLURM job {job_id} step 0 task {rank} on {host}): " in log, log[-3000:]
    assert log.count(f"epoch {TRAIN['max_epochs']} done") == 2  # both ranks trained every epoch
    assert "rank 1 of 2 (LightningEnvironment)" in (runs.one_node / "results" / "logs" / "train.log").read_text()
    assert_same_training(runs.two_nodes, runs.one_node)  # the same sharding; gradients and validation reduced over both
    summary = json.loads((runs.two_nodes / "results" / "train" / "summary.json").read_text())
    assert summary["strategy"] == "ddp" and summary["threads"] == 2 and summary["val_rows"] == 48
    # Only rank 0 wrote: no temporary output of rank 1 (which ran on tpnode2) and nothing half-written.
    results = runs.two_nodes / "results"
    assert not list(results.rglob("*.rank1")) and not list(results.rglob("*.partial"))
    assert {path.name for path in (results / "train" / "checkpoints").iterdir()} == {"best.ckpt", "last.ckpt", "run.json"}


@pytest.mark.slurm
@pytest.mark.e2e
def test_a_rank_killed_mid_epoch_fails_the_job_naming_its_node_and_a_rerun_resumes(runs):
    project, output = runs.killed, runs.outputs["killed"]
    assert runs.returncodes["killed"] != 0
    assert "srun: error: tpnode2: task 1: Killed" in output, output[-5000:]  # SLURM names the node and the task (= rank)
    # ... and rank 0, which lost it, says which rank on which node is gone, and what to do: one line, no traceback.
    assert re.search(r"tunepipe train: error: rank 0 on tpnode1 lost rank 1 on tpnode2 \(10\.\S+\) in epoch 2: that process or its "
                     r"node is gone \(gloo: .*by peer.*\)\. Training stops; re-run to resume from its last checkpoint, \S+/last\.ckpt\.$", output, flags=re.M), output[-5000:]
    log = project / "results" / "logs" / "train.log"
    assert "Traceback" not in log.read_text()
    last = torch.load(project / "results" / "train" / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == 7 and last["epoch"] == 0  # intact: the end of the first epoch (7 steps), all of it
    assert not (project / "results" / "train" / "summary.json").exists()

    started = time.monotonic()
    process = start(project, *PROFILE, env=two_node_env())
    output = process.communicate(timeout=800)[0]
    assert process.returncode == 0, output[-5000:]
    print(f"the resumed two-node training: {time.monotonic() - started:.0f} s")
    assert f"resuming from {project / 'results' / 'train' / 'checkpoints' / 'last.ckpt'}" in log.read_text()
    assert json.loads((project / "results" / "train" / "summary.json").read_text())["resumed"] is True
    assert_same_training(project, runs.two_nodes)


def test_a_lost_peer_is_named_by_its_rank_and_host():
    from tunepipe.training import lost_rank

    ranks = [("tpnode1", "10.226.26.11"), ("tpnode2", "10.226.26.12")]
    read = RuntimeError("[../gloo/transport/tcp/pair.cc:537] Read error [10.226.26.12]:36562: Connection reset by peer. This is ...")
    assert lost_rank(read, ranks, rank=0) == "rank 1 on tpnode2 (10.226.26.12)"
    closed = RuntimeError("[../gloo/transport/tcp/pair.cc:598] Connection closed by peer [10.226.26.11]:19275")
    assert lost_rank(closed, ranks, rank=1) == "rank 0 on tpnode1 (10.226.26.11)"
    assert lost_rank(closed, [("a", ""), ("b", "")], rank=1) == "the rank at 10.226.26.11"  # hosts whose names did not resolve
    assert lost_rank(RuntimeError("Connection reset by peer"), ranks, rank=0) == "another rank"
    assert lost_rank(RuntimeError("CUDA out of memory"), ranks, rank=0) is None  # not a lost peer: raised as it is
