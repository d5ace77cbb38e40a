"""`tunepipe registry ...`: thin wrappers over GTO and DVC (tunepipe.registry) that say what they did."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REGISTRY_HELP = """The model registry: versions and stages of the bundle (results/export/bundle) as GTO git tags.

  tunepipe registry register [REF] [--bump minor]   a new version on REF (default HEAD), which must have
                                                    recorded a run (dvc.lock versions the bundle)
  tunepipe registry assign --stage prod [--version v0.1.0]   (default: the newest version)
  tunepipe registry rollback --stage prod           back to the version prod had before
  tunepipe registry show                            versions, their commits and stages
  tunepipe registry get --stage prod [-o DIR]       fetch that version's bundle (DVC cache, else remote)

The raw tools do the same: `gto register tunepipe-model`, `gto assign tunepipe-model --version v0.1.0
--stage prod`, `gto show tunepipe-model`, `dvc artifacts get . tunepipe-model --stage prod`. Tags are
local until pushed: `git push origin --tags`.
"""


def _run(args: argparse.Namespace) -> int:
    from tunepipe import registry
    from tunepipe.errors import TunepipeError

    try:
        if args.action == "register":
            done = registry.register(artifact=args.artifact, repo=args.repo, ref=args.ref, version=args.version, bump=args.bump,
                                     message=args.message)
            print(f"registered {args.artifact} {done.version} at {done.commit[:12]} ({args.ref}); "
                  f"assign it a stage with `tunepipe registry assign --stage prod --version {done.version}`")
        elif args.action == "assign":
            done = registry.assign(args.stage, artifact=args.artifact, repo=args.repo, version=args.version)
            print(f"{args.artifact} stage {args.stage} -> {done.version} ({done.commit[:12]})")
        elif args.action == "rollback":
            before, done = registry.rollback(args.stage, artifact=args.artifact, repo=args.repo)
            print(f"{args.artifact} stage {args.stage}: rolled back from {before} to {done.version} ({done.commit[:12]}); "
                  f"restart `tunepipe serve --stage {args.stage}` to serve it")
        elif args.action == "get":
            if args.stage:
                path, version = registry.bundle_for_stage(args.stage, artifact=args.artifact, repo=args.repo, dest=args.out)
            else:
                path, version = registry.bundle_for_version(args.version, artifact=args.artifact, repo=args.repo, dest=args.out)
            print(f"{args.artifact} {version}: {path}")
        else:
            _show(registry.versions(args.repo, artifact=args.artifact), args.artifact)
    except TunepipeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def _show(rows, artifact: str) -> None:
    print(f"{artifact}: {len(rows)} version(s), newest first")
    width = max((len(row.version) for row in rows), default=7)
    for row in rows:
        print(f"  {row.version:<{width}}  {row.commit[:12]}  {', '.join(row.stages)}".rstrip())


def add_commands(sub: argparse._SubParsersAction) -> None:
    from tunepipe.registry import ARTIFACT

    reg = sub.add_parser("registry", help="model versions and stages (GTO tags) with rollback; fetch a version's bundle",
                         description=REGISTRY_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = reg.add_subparsers(dest="action", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--artifact", default=ARTIFACT, help=f"the artifact's name in dvc.yaml (default: {ARTIFACT})")
    common.add_argument("--repo", type=Path, default=Path("."), metavar="DIR", help="the project checkout (default: the current folder)")
    register = actions.add_parser("register", parents=[common], help="register a new version on a commit that recorded a run")
    register.add_argument("ref", nargs="?", default="HEAD", metavar="REF", help="a commit, branch or tag (default: HEAD)")
    register.add_argument("--version", metavar="vX.Y.Z", help="the version's name (default: the last one bumped)")
    register.add_argument("--bump", choices=("major", "minor", "patch"), help="which part to bump (default: patch)")
    register.add_argument("-m", "--message", help="the tag's message")
    assign = actions.add_parser("assign", parents=[common], help="put a version at a stage")
    assign.add_argument("--stage", required=True, help="e.g. prod, staging")
    assign.add_argument("--version", metavar="vX.Y.Z", help="default: the newest registered version")
    rollback = actions.add_parser("rollback", parents=[common], help="put back the version the stage had before")
    rollback.add_argument("--stage", required=True)
    actions.add_parser("show", parents=[common], help="versions, their commits and stages")
    get = actions.add_parser("get", parents=[common], help="fetch the bundle of a stage or version; prints its folder")
    which = get.add_mutually_exclusive_group(required=True)
    which.add_argument("--stage")
    which.add_argument("--version", metavar="vX.Y.Z")
    get.add_argument("-o", "--out", type=Path, metavar="DIR", help="a new folder (default: .dvc/tmp/bundles/<artifact>/<version>-<commit>)")
    reg.set_defaults(func=_run)
