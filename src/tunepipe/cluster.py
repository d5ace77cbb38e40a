"""What a job asks a cluster for, and failing fast on SLURM jobs that no node or partition can ever run.

A job's memory follows the rows it reads (`memory_request`). SLURM accepts a job that asks for more CPUs, memory,
GPUs, nodes or time than its partition can give and keeps it pending for ever (reason `PartitionConfig`,
`Resources`...), while Snakemake waits in silence. The slurm profile's Snakemake checks every job it is about to
submit against what `scontrol show partition/node` report and stops at once with one line naming the rule, the
request, the limit and the setting to change.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

PROFILE = "workflow/profiles/slurm/config.yaml"


def rows_mib(inputs: Mapping[str, str | Sequence[str]]) -> float:
    """The size in MiB of the rows a job reads, from its named inputs (a rule's `input`): its row files (JSONL, between
    stages) and the user's dataset (prepare's `raw`). What else it reads (a checkpoint, summaries, its code) does not
    grow with the data. A file that does not exist yet raises FileNotFoundError (Snakemake then waits for it)."""
    paths = [path for key, value in inputs.items() for path in ([value] if isinstance(value, str) else value)
             if key == "raw" or str(path).endswith(".jsonl")]
    return sum(os.path.getsize(path) for path in paths) / 2**20


def memory_request(base_mb: int, mb_per_row_mib: float) -> Callable[..., int]:
    """A rule's `mem_mb` (sbatch --mem): `base_mb` (the interpreter, its libraries, a model) plus `mb_per_row_mib` for
    each MiB of rows the job reads (`rows_mib`), times the attempt, so that a job retried after running out of memory
    (`snakemake --retries 1`) asks for twice as much. Snakemake calls it with the job's input once the files exist (a
    dry run shows mem_mb=<TBD> for a job whose inputs are still to be made)."""

    def mem_mb(wildcards, input, attempt) -> int:  # Snakemake passes a job's inputs by these names
        return math.ceil((base_mb + mb_per_row_mib * rows_mib(input)) * attempt)

    return mem_mb


class UnrunnableJob(Exception):
    """A job asks for more than any node of its partition has (or than the partition allows)."""


@dataclass(frozen=True)
class Node:
    name: str
    cpus: int
    memory_mb: int
    gpus: int


@dataclass(frozen=True)
class Partition:
    name: str
    nodes: tuple[Node, ...]
    max_nodes: int | None = None  # None: unlimited
    max_minutes: int | None = None
    max_cpus_per_node: int | None = None
    max_mem_per_node_mb: int | None = None
    default: bool = False


@dataclass(frozen=True)
class Request:
    """What one job asks SLURM for, per node (as sbatch gets it from the plugin)."""

    rule: str
    partition: str
    cpus: int
    memory_mb: int | None
    gpus: int
    nodes: int = 1
    minutes: int | None = None
    sources: dict[str, str] = field(default_factory=dict)


def _fields(line: str) -> dict[str, str]:
    return dict(item.split("=", 1) for item in line.split() if "=" in item)


def _limit(value: str | None) -> int | None:
    return None if value in (None, "", "UNLIMITED", "INFINITE", "NONE", "N/A") else int(value)


def _gpus(gres: str) -> int:
    """GPUs in a node's Gres field: `gpu:2`, `gpu:a100:4(S:0-1)`, `gpu:2,shard:8`; `(null)`: none."""
    total = 0
    for item in gres.split(","):
        parts = re.sub(r"\(.*?\)", "", item).split(":")
        if parts[0] == "gpu":
            total += int(parts[-1]) if len(parts) > 1 and parts[-1].isdigit() else 1
    return total


def minutes(value: str | None) -> int | None:
    """A SLURM time limit (`UNLIMITED`, `30`, `1:00:00`, `2-00:00:00`) in minutes."""
    if value in (None, "", "UNLIMITED", "INFINITE", "NONE", "N/A"):
        return None
    days, _, clock = value.rpartition("-")
    parts = [int(p) for p in clock.split(":")]
    hours, mins, secs = ([0] * (3 - len(parts)) + parts) if len(parts) > 1 else (0, parts[0], 0)
    return int(days or 0) * 1440 + hours * 60 + mins + (1 if secs else 0)


def read_partitions(run=subprocess.run) -> dict[str, Partition]:
    """Every partition with its nodes, from `scontrol show partition -o` and `scontrol show node -o`."""
    def scontrol(*args: str) -> list[str]:
        done = run(["scontrol", "show", *args, "-o"], capture_output=True, text=True, timeout=30)
        return [line for line in done.stdout.splitlines() if line.strip()] if done.returncode == 0 else []

    nodes: dict[str, tuple[Node, list[str]]] = {}
    for line in scontrol("node"):
        f = _fields(line)
        node = Node(f["NodeName"], int(f.get("CPUTot", 0)), int(f.get("RealMemory", 0)), _gpus(f.get("Gres", "")))
        nodes[node.name] = (node, f.get("Partitions", "").split(","))
    partitions = {}
    for line in scontrol("partition"):
        f = _fields(line)
        name = f["PartitionName"]
        partitions[name] = Partition(
            name, tuple(node for node, names in nodes.values() if name in names),
            max_nodes=_limit(f.get("MaxNodes")), max_minutes=minutes(f.get("MaxTime")),
            max_cpus_per_node=_limit(f.get("MaxCPUsPerNode")), max_mem_per_node_mb=_limit(f.get("MaxMemPerNode")),
            default=f.get("Default") == "YES",
        )
    return partitions


def request_of(rule: str, threads: int, resources: Mapping[str, Any]) -> Request:
    """A Snakemake job's SLURM request, per node, as snakemake-executor-plugin-slurm turns it into sbatch options."""
    tasks_per_node = int(resources.get("tasks_per_node") or 1)
    nodes = int(resources.get("nodes") or 1)
    if not resources.get("tasks_per_node") and resources.get("tasks"):
        tasks_per_node = -(-int(resources["tasks"]) // nodes)
    cpus_per_task = int(resources.get("cpus_per_task") or threads)
    extra = str(resources.get("slurm_extra") or "")
    per_node = re.search(r"--gpus-per-node[=\s](?:\w+:)?(\d+)", extra)
    gres = re.fullmatch(r"gpu(?::\w+)?:(\d+)", str(resources.get("gres") or ""))
    gpus = int(per_node.group(1)) if per_node else int(gres.group(1)) if gres else int(resources.get("gpu") or 0)
    memory = resources.get("mem_mb")
    runtime = resources.get("runtime")
    sources = {"cpus": "--cpus-per-task" + (f" x --ntasks-per-node={tasks_per_node}" if tasks_per_node > 1 else "")}
    return Request(rule, str(resources.get("slurm_partition") or ""), cpus_per_task * tasks_per_node,
                   int(memory) if isinstance(memory, (int, float)) else None, gpus, nodes,
                   int(runtime) if isinstance(runtime, (int, float)) else None, sources)


def check(request: Request, partitions: Mapping[str, Partition]) -> None:
    """Raise UnrunnableJob when no node (or the partition itself) can ever give `request` what it asks for."""
    if not partitions:
        return  # scontrol gave nothing (no permission, a federated setup): nothing to compare with
    name = request.partition or next((p.name for p in partitions.values() if p.default), "")
    where = f"TUNEPIPE_SLURM_PARTITION={name}" if request.partition else "the default partition"
    partition = partitions.get(name)
    if partition is None:
        known = ", ".join(sorted(partitions))
        raise UnrunnableJob(f"rule {request.rule}: partition {name!r} does not exist (partitions: {known}); set TUNEPIPE_SLURM_PARTITION to one of them.")
    label = f"partition {name!r} ({where})"
    if request.minutes is not None and partition.max_minutes is not None and request.minutes > partition.max_minutes:
        raise UnrunnableJob(f"rule {request.rule} asks for {request.minutes} minutes (sbatch -t), but {label} allows at most "
                            f"{partition.max_minutes} (MaxTime): lower set-resources: {request.rule}: runtime in {PROFILE}.")
    usable = len(partition.nodes) if partition.max_nodes is None else min(partition.max_nodes, len(partition.nodes))
    if request.nodes > usable:
        raise UnrunnableJob(f"rule {request.rule} asks for {request.nodes} nodes (--nodes), but {label} has {usable}: "
                            "lower train.num_nodes, or pick a larger partition (TUNEPIPE_SLURM_PARTITION).")

    def cap(value: int, limit: int | None) -> int:
        return value if limit is None else min(value, limit)

    cpus = [cap(node.cpus, partition.max_cpus_per_node) for node in partition.nodes]
    memory = [cap(node.memory_mb, partition.max_mem_per_node_mb) for node in partition.nodes]
    gpus = [node.gpus for node in partition.nodes]
    fits = [c >= request.cpus and (request.memory_mb is None or m >= request.memory_mb) and g >= request.gpus
            for c, m, g in zip(cpus, memory, gpus)]
    if sum(fits) >= request.nodes:
        return
    if request.cpus > max(cpus, default=0):
        raise UnrunnableJob(
            f"rule {request.rule} asks for {request.cpus} CPUs per node ({request.sources['cpus']}), but no node of {label} "
            f"has more than {max(cpus, default=0)}: run with --cores {max(cpus, default=1)}, or lower set-threads: {request.rule} in {PROFILE}.")
    if request.memory_mb is not None and request.memory_mb > max(memory, default=0):
        raise UnrunnableJob(
            f"rule {request.rule} asks for {request.memory_mb} MB of memory (--mem), but no node of {label} has more than "
            f"{max(memory, default=0)} MB: lower set-resources: {request.rule}: mem_mb in {PROFILE}.")
    if request.gpus > max(gpus, default=0):
        fix = ("on a cluster without GPUs set TUNEPIPE_SLURM_GPUS=0 (training then asks for none and runs on the CPU), "
               "or pick a GPU partition (TUNEPIPE_SLURM_PARTITION)") if not max(gpus, default=0) else "lower train.devices"
        raise UnrunnableJob(f"rule {request.rule} asks for {request.gpus} GPU(s) per node, but no node of {label} has more than "
                            f"{max(gpus, default=0)}: {fix}.")
    raise UnrunnableJob(
        f"rule {request.rule} asks for {request.cpus} CPUs, {request.memory_mb} MB and {request.gpus} GPU(s) per node on "
        f"{request.nodes} node(s), but no {request.nodes} node(s) of {label} have all of them: lower the job's set-threads/"
        f"set-resources in {PROFILE}.")


def check_jobs(jobs: Iterable[Any], partitions: Mapping[str, Partition] | None = None) -> None:
    """Check every Snakemake job about to be submitted: UnrunnableJob with one line per rule that can never run."""
    partitions = read_partitions() if partitions is None else partitions
    seen, problems = set(), {}
    for job in jobs:
        resources = {key: job.resources.get(key) for key in job.resources.keys()}
        request = request_of(job.rule.name, job.threads, resources)
        key = (request.rule, request.partition, request.cpus, request.memory_mb, request.gpus, request.nodes, request.minutes)
        if key in seen or request.rule in problems:
            continue
        seen.add(key)
        try:
            check(request, partitions)
        except UnrunnableJob as problem:
            problems[request.rule] = str(problem)
    if problems:
        raise UnrunnableJob("\n".join(problems.values()))
