"""The model registry: the bundle is a DVC artifact, its versions and stages are GTO git tags.

- `dvc.yaml` declares the artifact (`artifacts: tunepipe-model: {path: results/export/bundle, type: model}`),
  so `dvc artifacts get` and DVC Studio know it; its files are versioned by the `pipeline` stage's
  `results/export` out, so a commit's `dvc.lock` pins them and the DVC cache/remote holds them.
- A version is a GTO registration tag on a commit that recorded a run (`tunepipe-model@v0.2.0`); a stage is
  a GTO assignment tag (`tunepipe-model#prod#3`). The version at a stage is GTO's answer (`gto show`: the
  latest assignment wins), so rolling back is assigning an older version again: a new tag, history kept.
- `bundle_for_stage` / `bundle_for_version` resolve the version with GTO and fetch its bundle with DVC
  (the same code path as `dvc artifacts get`): from the local cache, else the remote.

Everything here is a thin layer over `gto` and `dvc`; the raw commands do the same (README, "Deploy").
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tunepipe.errors import TunepipeError
from tunepipe.vcs import LOCK_FILE, git, holding_out, lock_outs, read_lock

ARTIFACT = "tunepipe-model"
DVC_FILE = "dvc.yaml"
MANIFEST = "bundle.json"  # written last by export's bundle (tunepipe.optimize.bundle): a complete bundle has it
FETCHED = Path(".dvc") / "tmp" / "bundles"  # default destination, git-ignored with .dvc/tmp


class RegistryError(TunepipeError):
    """A registry operation cannot be done as asked (the message says why and which command fixes it)."""


class UnknownArtifactError(RegistryError):
    """No artifact of that name is declared in dvc.yaml or registered."""


class NoVersionError(RegistryError):
    """No version of the artifact is at that stage, or no such version is registered."""


class BundleUnavailableError(RegistryError):
    """The version's bundle is neither in the local DVC cache nor on a reachable remote."""


@dataclass(frozen=True)
class RegisteredVersion:
    version: str
    commit: str
    stages: tuple[str, ...] = ()


# ------------------------------------------------------------------------------------------------ reading


def declared_artifacts(repo: Path | str = ".", rev: str | None = None) -> dict[str, dict[str, Any]]:
    """name -> entry of dvc.yaml's `artifacts:` (in the working tree, or at `rev`)."""
    root = Path(repo)
    try:
        text = git(["show", f"{rev}:{DVC_FILE}"], root) if rev else (root / DVC_FILE).read_text(encoding="utf-8")
        content = yaml.safe_load(text or "") or {}
    except (OSError, yaml.YAMLError):
        return {}
    artifacts = content.get("artifacts") if isinstance(content, dict) else None
    return {str(name): entry for name, entry in (artifacts or {}).items() if isinstance(entry, dict)}


def _require_tools() -> None:
    try:
        import dvc.repo  # noqa: F401
        import gto.api  # noqa: F401
    except ImportError:
        raise RegistryError("the registry needs DVC and GTO, which this install lacks: pip install 'tunepipe[registry]' "
                            "(or serve a bundle folder fetched with `dvc artifacts get`)") from None


def _state(repo: Path | str):
    _require_tools()
    from gto.exceptions import GTOException
    from gto.registry import GitRegistry

    from scmrepo.exceptions import SCMError

    try:
        with GitRegistry.from_url(str(repo)) as registry:
            return registry.get_state()
    except SCMError:
        raise RegistryError(f"{Path(repo).resolve()} is not a git repository: run this in the project's git checkout, "
                            "where the registry's tags are") from None
    except GTOException as exc:
        raise RegistryError(f"cannot read the registry of {repo}: {exc}") from None


def _artifact(repo: Path | str, artifact: str):
    """GTO's record of the artifact; clear errors when it is unknown or has no version."""
    from gto.exceptions import ArtifactNotFound

    try:
        found = _state(repo).find_artifact(artifact)
    except ArtifactNotFound:
        found = None
    if found is None or not found.get_versions():
        declared = declared_artifacts(repo)
        if artifact not in declared:
            known = ", ".join(sorted(declared)) or "none"
            raise UnknownArtifactError(f"unknown artifact {artifact!r}: {DVC_FILE} declares {known} (its `artifacts:` section)")
        raise NoVersionError(f"{artifact} has no registered version yet: register one with `tunepipe registry register` "
                             f"(or `gto register {artifact}`)")
    return found


def versions(repo: Path | str = ".", *, artifact: str = ARTIFACT) -> list[RegisteredVersion]:
    """The artifact's registered versions, newest first, with the stages each is at now."""
    from gto.constants import VersionSort

    found = _artifact(repo, artifact)
    at: dict[str, list[str]] = {}
    for stage, vstages in found.get_vstages(sort=VersionSort.Timestamp).items():
        for vstage in vstages:
            at.setdefault(vstage.version, []).append(stage)
    return [RegisteredVersion(v.version, v.commit_hexsha, tuple(sorted(at.get(v.version, ()))))
            for v in found.get_versions(sort=VersionSort.SemVer)]


def version_at_stage(stage: str, *, artifact: str = ARTIFACT, repo: Path | str = ".") -> RegisteredVersion:
    """The version GTO says is at `stage` now (the latest assignment wins, as `gto show` shows it)."""
    from gto.constants import VersionSort

    found = _artifact(repo, artifact)
    vstages = found.get_vstages(sort=VersionSort.Timestamp).get(stage)
    if not vstages:
        raise NoVersionError(f"no version of {artifact} is at stage {stage!r}: assign one with "
                             f"`tunepipe registry assign --stage {stage}` (or `gto assign {artifact} --stage {stage}`)")
    return RegisteredVersion(vstages[0].version, vstages[0].commit_hexsha, (stage,))


def find_version(version: str, *, artifact: str = ARTIFACT, repo: Path | str = ".") -> RegisteredVersion:
    for registered in versions(repo, artifact=artifact):
        if registered.version == version:
            return registered
    known = ", ".join(v.version for v in versions(repo, artifact=artifact))
    raise NoVersionError(f"{artifact} has no version {version!r} (registered: {known}; `tunepipe registry show` lists them)")


def assignment_history(stage: str, *, artifact: str = ARTIFACT, repo: Path | str = ".") -> list[str]:
    """The versions assigned to `stage`, oldest assignment first (a version appears once per assignment)."""
    found = _artifact(repo, artifact)
    events = [(a.created_at, a.tag or "", a.version) for v in found.versions for s in v.stages.values() if s.stage == stage
              for a in s.assignments]
    return [version for _, _, version in sorted(events)]


# ------------------------------------------------------------------------------------------------ fetching


def bundle_for_stage(stage: str, *, artifact: str | None = ARTIFACT, repo: str | Path = ".", dest: Path | None = None) -> tuple[Path, str]:
    """The bundle folder of the version at `stage`, and that version (fetched from the DVC cache or remote)."""
    artifact = artifact or ARTIFACT
    registered = version_at_stage(stage, artifact=artifact, repo=repo)
    return fetch(registered, artifact=artifact, repo=repo, dest=dest), registered.version


def bundle_for_version(version: str, *, artifact: str | None = ARTIFACT, repo: str | Path = ".", dest: Path | None = None) -> tuple[Path, str]:
    """The bundle folder of a registered version (e.g. "v0.1.0"), and the version."""
    artifact = artifact or ARTIFACT
    registered = find_version(version, artifact=artifact, repo=repo)
    return fetch(registered, artifact=artifact, repo=repo, dest=dest), registered.version


def fetch(registered: RegisteredVersion, *, artifact: str = ARTIFACT, repo: str | Path = ".", dest: Path | None = None) -> Path:
    """Download the version's bundle (`dvc artifacts get` through the repo's own cache and remote) into `dest`.

    Without `dest`: `.dvc/tmp/bundles/<artifact>/<version>-<commit>/`, reused when already complete (a commit's
    bundle never changes). With `dest`: that folder, which must not exist yet or be empty.
    """
    _require_tools()
    from dvc.exceptions import ArtifactNotFoundError
    from dvc.repo import Repo

    root = Path(repo).resolve()
    short = registered.commit[:12]
    entry = declared_artifacts(root, registered.commit).get(artifact)
    if entry is None:
        raise UnknownArtifactError(f"{DVC_FILE} at {artifact} {registered.version} ({short}) declares no artifact {artifact!r}, "
                                   "so DVC cannot say where its files are")
    final = Path(dest) if dest is not None else root / FETCHED / artifact / f"{registered.version}-{short}"
    if dest is None and (final / MANIFEST).is_file():
        verify(final, f"remove {final} to fetch it again")
        return final
    if final.exists() and (not final.is_dir() or any(final.iterdir())):
        raise RegistryError(f"{final} exists and is not empty: fetch the bundle into a new folder")
    partial = final.with_name(final.name + ".partial")
    if partial.exists():  # not ours to delete: another fetch may be writing it
        raise RegistryError(f"{partial} exists: left by an interrupted fetch, or one still running; if none is, remove it "
                            f"(rm -r '{partial}') and run this again")
    partial.parent.mkdir(parents=True, exist_ok=True)
    path = str(entry.get("path", ""))
    try:
        with Repo(str(root)) as dvc_repo:
            dvc_repo.artifacts.download(artifact, version=registered.version, out=str(partial), force=True)
    except ArtifactNotFoundError as exc:
        shutil.rmtree(partial, ignore_errors=True)
        raise UnknownArtifactError(f"DVC cannot find {artifact} {registered.version} ({short}): {exc}") from None
    except Exception as exc:  # noqa: BLE001 - DvcException, dvc_data's index errors, OSError: the data is not reachable
        shutil.rmtree(partial, ignore_errors=True)
        lock = read_lock(git(["show", f"{registered.commit}:{LOCK_FILE}"], root))
        if holding_out(lock_outs(lock), path) is None:
            raise BundleUnavailableError(f"{artifact} {registered.version} ({short}) has no recorded {path}: its {LOCK_FILE} "
                                         "does not version it (register a commit whose run wrote the bundle)") from None
        raise BundleUnavailableError(
            f"the bundle of {artifact} {registered.version} ({path} at {short}) is neither in the local DVC cache nor on "
            f"the remote ({type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else 'not found'}): "
            "run `dvc push` where that run was made, or point DVC at a remote that has it "
            "(`dvc remote modify --local storage url URL`)") from None
    if not (partial / MANIFEST).is_file():
        shutil.rmtree(partial, ignore_errors=True)
        raise BundleUnavailableError(f"{path} of {artifact} {registered.version} ({short}) has no {MANIFEST}: not a bundle "
                                     "(was it made by an older export?)")
    try:
        verify(partial, "the DVC cache or remote holds a damaged copy: push it again from where the run was made")
    except RegistryError:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    if final.exists():
        final.rmdir()  # empty, checked above
    partial.rename(final)
    return final


def verify(folder: Path, fix: str) -> None:
    """RegistryError unless every file of the bundle in `folder` matches bundle.json's sha256 (and its labels, labels.json)."""
    from tunepipe.serving.runtime import BundleError, load_bundle

    try:
        load_bundle(folder, verify=True)
    except BundleError as exc:
        raise RegistryError(f"{str(exc).split('; copy the bundle again')[0]}; {fix}") from None


# ------------------------------------------------------------------------------------------------ changing


def _gto(call, *args: Any, **kwargs: Any):
    from gto.exceptions import GTOException
    from scmrepo.exceptions import SCMError

    try:
        return call(*args, **kwargs)
    except SCMError as exc:
        raise RegistryError(f"not a git repository ({exc}): run this in the project's git checkout") from None
    except GTOException as exc:
        raise RegistryError(f"gto: {exc}") from None


def _after_last_tag(repo: Path | str) -> None:
    """Wait until the clock is past the newest tag's second: GTO orders tags by their (1 s) time."""
    newest = git(["for-each-ref", "--sort=-taggerdate", "--count=1", "--format=%(taggerdate:unix)", "refs/tags"], Path(repo))
    if newest and newest.strip().isdigit():
        wait = int(newest.strip()) + 1 - time.time()
        if 0 < wait <= 2:
            time.sleep(wait)


def register(*, artifact: str = ARTIFACT, repo: Path | str = ".", ref: str = "HEAD", version: str | None = None,
             bump: str | None = None, message: str | None = None) -> RegisteredVersion:
    """`gto register`: a new version on `ref`, which must have recorded a run that wrote the bundle."""
    _require_tools()
    from gto import api

    root = Path(repo)
    commit = (git(["rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"], root) or "").strip()
    if not commit:
        raise RegistryError(f"{ref!r} is not a commit of {root.resolve()}")
    declared = declared_artifacts(root, commit)
    if artifact not in declared:
        raise UnknownArtifactError(f"{DVC_FILE} at {ref} ({commit[:12]}) declares no artifact {artifact!r} "
                                   f"(declared: {', '.join(sorted(declared)) or 'none'})")
    path = str(declared[artifact].get("path", ""))
    lock = read_lock(git(["show", f"{commit}:{LOCK_FILE}"], root))
    if holding_out(lock_outs(lock), path) is None:
        raise RegistryError(f"{ref} ({commit[:12]}) recorded no run that wrote {path} ({LOCK_FILE} does not version it): "
                            "run `snakemake --cores all results/report.html`, then `git add dvc.lock && git commit`")
    bumps = {"major": "bump_major", "minor": "bump_minor", "patch": "bump_patch"}
    if bump is not None and bump not in bumps:
        raise RegistryError(f"--bump must be one of {', '.join(bumps)}, not {bump!r}")
    flags = {bumps[bump]: True} if bump else {}
    _after_last_tag(root)
    event = _gto(api.register, str(root), artifact, commit, version=version, message=message, **flags)
    return RegisteredVersion(event.version, commit)


def assign(stage: str, *, artifact: str = ARTIFACT, repo: Path | str = ".", version: str | None = None,
           message: str | None = None) -> RegisteredVersion:
    """`gto assign`: put `version` (default: the newest registered one) at `stage`; no new tag when it is there already.

    A version that was at the stage before keeps its (superseded) assignment in GTO's eyes, so assigning it
    again needs `gto assign --force`, which this passes: that is how a rollback (or a roll forward) is made.
    """
    from gto import api

    registered = find_version(version, artifact=artifact, repo=repo) if version else versions(repo, artifact=artifact)[0]
    try:
        current = version_at_stage(stage, artifact=artifact, repo=repo).version
    except NoVersionError:
        current = None
    if current == registered.version:
        return RegisteredVersion(registered.version, registered.commit, (stage,))
    _after_last_tag(repo)
    _gto(api.assign, str(repo), artifact, stage, version=registered.version, message=message, force=True)
    return RegisteredVersion(registered.version, registered.commit, (stage,))


def rollback(stage: str, *, artifact: str = ARTIFACT, repo: Path | str = ".") -> tuple[str, RegisteredVersion]:
    """Put back at `stage` the version it had before the current one; if it never had another, the registered
    version just below the current one. A new assignment tag (history is kept); returns (from, to)."""
    current = version_at_stage(stage, artifact=artifact, repo=repo).version
    earlier = [v for v in assignment_history(stage, artifact=artifact, repo=repo) if v != current]
    if not earlier:
        names = [v.version for v in versions(repo, artifact=artifact)]  # newest first
        earlier = names[names.index(current) + 1:][:1] if current in names else []
    if not earlier:
        raise NoVersionError(f"nothing to roll back to: {current} is the oldest version of {artifact} and stage {stage!r} "
                             f"has had no other (assign one with `tunepipe registry assign --stage {stage} --version VERSION`)")
    return current, assign(stage, artifact=artifact, repo=repo, version=earlier[-1],
                           message=f"Rolling back stage {stage} of {artifact} from {current} to {earlier[-1]}")


__all__ = ["ARTIFACT", "BundleUnavailableError", "NoVersionError", "RegisteredVersion", "RegistryError", "UnknownArtifactError",
           "assign", "assignment_history", "bundle_for_stage", "bundle_for_version", "declared_artifacts", "fetch", "find_version",
           "register", "rollback", "verify", "version_at_stage", "versions"]
