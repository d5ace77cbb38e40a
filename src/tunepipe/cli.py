"""The `tunepipe` command: helpers around the Snakemake workflow (the pipeline itself runs with `snakemake`)."""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

STAGES = ("prepare", "clean", "split", "augment", "train", "baseline", "evaluate", "prune", "export", "report")


def _params(args: argparse.Namespace) -> int:
    from tunepipe.config import reference_markdown

    sys.stdout.write(reference_markdown())
    return 0


def _validate(args: argparse.Namespace) -> int:
    import yaml

    from tunepipe.config import validate_params
    from tunepipe.errors import ParamsError

    merged: dict = {}
    for path in args.files:
        with open(path, encoding="utf-8") as handle:
            _merge(merged, yaml.safe_load(handle) or {})
    try:
        validate_params(merged, source=" + ".join(map(str, args.files)))
    except ParamsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"ok: {' + '.join(map(str, args.files))} is valid")
    return 0


def _merge(base: dict, update: dict) -> None:
    """Like Snakemake's --configfile: nested sections are merged key by key."""
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value


def _stages(args: argparse.Namespace) -> int:
    for name in STAGES:
        stage = importlib.import_module(f"tunepipe.stages.{name}").STAGE
        print(f"{name:<9} {stage.summary}")
    print("\nEach runs alone as `python -m tunepipe.stages.<name> --help`.")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tunepipe",
        description="Helpers for the tunepipe workflow. Run the pipeline itself with: snakemake --cores all results/report.html",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("params", help="print the parameter reference (Markdown), generated from the schema").set_defaults(func=_params)
    validate = sub.add_parser("validate", help="check params files (later files override earlier ones, like --configfile)")
    validate.add_argument("files", nargs="*", type=Path, default=[Path("params.yaml")], help="default: params.yaml")
    validate.set_defaults(func=_validate)
    sub.add_parser("stages", help="list the pipeline's stages").set_defaults(func=_stages)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
