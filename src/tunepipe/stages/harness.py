"""The thin CLI every stage shares: parse arguments, set threads and logging, write outputs atomically.

Outputs are written under temporary names beside their final paths and renamed into place only when
the stage succeeds, so a failed or killed job never leaves a file that looks complete.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
import textwrap
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunepipe import runtime
from tunepipe.errors import TunepipeError
from tunepipe.io import commit_partial, partial_path, remove_path

#: What an optional step's results folder holds when the step does not run (the skip stage writes it, with the
#: reason); a stage that runs removes the one in each of its outputs' folders, so no folder claims both.
SKIP_MARKER = "skipped.json"


def counts_line(counts: Mapping[str, Any], shown: int = 12) -> str:
    """Rows per label for a log line: every label when there are few, else how many and the largest and smallest
    (a 632-label dataset's full dict made a 12 KB line)."""
    if len(counts) <= shown:
        return str(dict(counts))
    ordered = sorted(counts.items(), key=lambda item: -item[1] if isinstance(item[1], (int, float)) else 0)
    half = shown // 2
    listed = lambda items: ", ".join(f"{key!r}: {value}" for key, value in items)
    return f"{len(counts)} labels; largest {{{listed(ordered[:half])}}}; smallest {{{listed(ordered[-half:])}}}"


@dataclass(frozen=True)
class StageContext:
    params: dict[str, Any]
    inputs: dict[str, Path]
    #: Where to write each output: a temporary path beside the final one, renamed into place on success.
    outputs: dict[str, Path]
    threads: int
    log: logging.Logger
    #: Every path of a repeatable input (`--in KEY=A --in KEY=B`), in the order given.
    many: dict[str, list[Path]] = field(default_factory=dict)
    #: The final path of each output, for anything that must name an output file (a model card naming its model).
    final: dict[str, Path] = field(default_factory=dict)


@dataclass(frozen=True)
class Stage:
    name: str
    summary: str
    inputs: Mapping[str, str]
    outputs: Mapping[str, str]
    run: Callable[[StageContext], None]
    params_help: str = ""
    #: Inputs/outputs that may be left out (a rule passes them only in some configurations).
    optional: frozenset[str] = frozenset()
    #: Inputs that may be given several times; all their paths are in `StageContext.many`.
    repeatable: frozenset[str] = frozenset()


def _pairs(values: list[str], allowed: Mapping[str, str], kind: str, parser: argparse.ArgumentParser,
           optional: frozenset[str] = frozenset(), repeatable: frozenset[str] = frozenset()) -> tuple[dict[str, Path], dict[str, list[Path]]]:
    result: dict[str, Path] = {}
    many: dict[str, list[Path]] = {}
    for item in values:
        key, sep, path = item.partition("=")
        if not sep or not path:
            parser.error(f"--{kind} expects KEY=PATH, got {item!r}")
        if key not in allowed:
            parser.error(f"unknown {kind} {key!r}; this stage takes: {', '.join(allowed)}")
        if key in result and key not in repeatable:
            parser.error(f"--{kind} {key} given twice")
        result.setdefault(key, Path(path))
        many.setdefault(key, []).append(Path(path))
    missing = [key for key in allowed if key not in result and key not in optional]
    if missing:
        parser.error(f"missing --{kind} for: {', '.join(missing)}")
    return result, {key: paths for key, paths in many.items() if key in repeatable}


def _describe_os_error(exc: OSError, partials: Mapping[str, Path], outputs: Mapping[str, Path]) -> str:
    """One line naming the path an OSError is about: an output by its final name (not the temporary one)."""
    where = Path(exc.filename) if exc.filename is not None else None
    reason = exc.strerror or str(exc)
    for key, partial in partials.items():
        if where in (partial, outputs[key]):
            return f"cannot write {outputs[key]}: {reason}"
        if where == partial.parent:
            return f"cannot write into {partial.parent}: {reason}"
    return f"{where}: {reason}" if where is not None else reason


def build_parser(stage: Stage) -> argparse.ArgumentParser:
    def describe(items: Mapping[str, str]) -> str:
        return "\n".join(f"  {key:<12} {text}" for key, text in items.items())

    epilog = f"inputs (--in KEY=PATH):\n{describe(stage.inputs)}\n\noutputs (--out KEY=PATH):\n{describe(stage.outputs)}"
    if stage.params_help:
        epilog += "\n\nparams:\n" + textwrap.indent(stage.params_help.strip(), "  ")
    parser = argparse.ArgumentParser(
        prog=f"python -m tunepipe.stages.{stage.name}",
        description=stage.summary,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--params", required=True, help="JSON object with this stage's sections of params.yaml")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads this job may use (default: 1)")
    parser.add_argument("--in", dest="inputs", action="append", default=[], metavar="KEY=PATH")
    parser.add_argument("--out", dest="outputs", action="append", default=[], metavar="KEY=PATH")
    return parser


def main(stage: Stage, argv: list[str] | None = None) -> int:
    parser = build_parser(stage)
    args = parser.parse_args(argv)
    inputs, many = _pairs(args.inputs, stage.inputs, "in", parser, stage.optional, stage.repeatable)
    outputs, _ = _pairs(args.outputs, stage.outputs, "out", parser, stage.optional)
    try:
        params = json.loads(args.params)
    except json.JSONDecodeError as exc:
        parser.error(f"--params is not valid JSON: {exc}")

    absent = [f"{key}={path}" for key, paths in {**{k: [p] for k, p in inputs.items()}, **many}.items() for path in paths if not path.exists()]
    if absent:
        print(f"tunepipe {stage.name}: error: input file(s) not found: {', '.join(absent)}", file=sys.stderr)
        return 2
    runtime.offline_defaults()
    runtime.limit_threads(args.threads)
    log = runtime.setup_logging(stage.name)
    # A training stage under DDP runs once per process (Lightning re-runs this command, or srun starts it per task):
    # rank 0 alone writes the outputs; another rank gets temporary names of its own (never written, as training
    # ends such a process when it is done), so it can never remove or replace rank 0's.
    rank = runtime.launch_rank()
    partials = {key: partial_path(path) if rank == 0 else Path(f"{partial_path(path)}.rank{rank}") for key, path in outputs.items()}
    started = time.perf_counter()
    try:
        for path in partials.values():
            path.parent.mkdir(parents=True, exist_ok=True)
            remove_path(path)  # a file, or a folder output's leftover from a killed run
        stage.run(StageContext(params=params, inputs=inputs, outputs=partials, threads=args.threads, log=log, many=many, final=outputs))
        not_written = [key for key, path in partials.items() if not path.exists()]
        if not_written:
            raise RuntimeError(f"stage {stage.name} did not write outputs: {', '.join(not_written)}")
        for key, path in partials.items():
            commit_partial(path, outputs[key])
        for marker in {path.parent / SKIP_MARKER for path in outputs.values()} - set(outputs.values()):
            marker.unlink(missing_ok=True)
    except TunepipeError as exc:
        log.error("error: %s", exc)
        print(f"\ntunepipe {stage.name}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        # A read-only, full or missing results/ folder is the machine's state, not a bug: say which path and why.
        message = _describe_os_error(exc, partials, outputs)
        log.error("error: %s", message)
        print(f"\ntunepipe {stage.name}: error: {message}. Check free space and the folder's permissions, then re-run.", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        log.error("interrupted; no output was written")
        return 130
    except SystemExit as exc:
        # A library ending the process mid-stage is never a success, whatever code it chose.
        log.error("stopped before finishing (exit %s); no output was written", exc.code)
        return exc.code if isinstance(exc.code, int) and exc.code != 0 else 1
    finally:
        for path in partials.values():
            with contextlib.suppress(OSError):  # its folder may be the very thing that is unwritable
                remove_path(path)
    log.info("done in %.1f s", time.perf_counter() - started)
    return 0
