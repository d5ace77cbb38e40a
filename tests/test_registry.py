"""The registry end to end: GTO tags in a git clone of the `history` project, bundles fetched from its DVC remote.

The clone starts with no DVC cache, so every bundle comes from the remote (as on a serving machine); its tags
stay in the clone, so the shared `history` project is left as it was.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO
from tests.pipeline import BIN, sh, tunepipe
from tests.serving.conftest import free_port
from tunepipe import registry
from tunepipe.vcs import dir_entries

e2e = pytest.mark.e2e


@pytest.fixture(scope="module")
def clone(history, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("registry") / "clone"
    sh(history.project, "git", "clone", "-q", str(history.project), str(path))
    sh(path, "git", "config", "user.name", "tunepipe test")  # GTO tags are annotated: they need an identity
    sh(path, "git", "config", "user.email", "test@tunepipe.invalid")
    sh(path, "dvc", "remote", "modify", "--local", "storage", "url", str(history.remote))
    assert not (path / ".dvc" / "cache").exists()
    return path


def recorded_bundle(history, rev: str) -> dict[str, str]:
    """relpath -> md5 of the bundle's files as `rev`'s dvc.lock records them (the manifest read from the remote)."""
    lock = yaml.safe_load(sh(history.project, "git", "show", f"{rev}:dvc.lock").stdout)
    export = next(out["md5"] for out in lock["stages"]["pipeline"]["outs"] if out["path"] == "results/export")
    entries = dir_entries(history.remote, export)
    return {path.removeprefix("bundle/"): md5 for path, md5 in entries.items() if path.startswith("bundle/")}


def files(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.md5(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


@e2e
def test_register_assign_roll_back_and_fetch_each_bundle_from_the_remote(history, clone, tmp_path):
    run1, run2 = recorded_bundle(history, history.rev1), recorded_bundle(history, history.rev2)
    assert "bundle.json" in run1 and run1 != run2  # two runs, two models

    # nothing registered yet, and a commit that never ran cannot be registered
    with pytest.raises(registry.NoVersionError, match="no registered version yet: register one"):
        registry.bundle_for_stage("prod", repo=clone)
    done = tunepipe(clone, "registry", "register", history.never_ran)
    assert done.returncode == 2 and "recorded no run that wrote results/export/bundle" in done.stderr, done.stderr

    # the wrapper for run 1, raw gto for run 2 (both make the same tags)
    done = tunepipe(clone, "registry", "register", history.rev1)
    assert done.returncode == 0 and f"registered tunepipe-model v0.0.1 at {history.rev1[:12]}" in done.stdout, done.stdout + done.stderr
    sh(clone, "gto", "register", "tunepipe-model", history.rev2, "--bump-minor")
    sh(clone, "gto", "assign", "tunepipe-model", "--version", "v0.1.0", "--stage", "prod")
    assert [(v.version, v.stages) for v in registry.versions(clone)] == [("v0.1.0", ("prod",)), ("v0.0.1", ())]
    with pytest.raises(registry.NoVersionError, match="no version of tunepipe-model is at stage 'staging'"):
        registry.bundle_for_stage("staging", repo=clone)
    with pytest.raises(registry.UnknownArtifactError, match="declares tunepipe-model"):
        registry.bundle_for_stage("prod", artifact="no-such-model", repo=clone)

    # the remote unreachable: one clear error, nothing left half-fetched
    sh(clone, "dvc", "remote", "modify", "--local", "storage", "url", str(tmp_path / "empty-remote"))
    try:
        with pytest.raises(registry.BundleUnavailableError, match="neither in the local DVC cache nor on the remote.*dvc push"):
            registry.bundle_for_stage("prod", repo=clone, dest=tmp_path / "none")
        assert not (tmp_path / "none").exists() and not (tmp_path / "none.partial").exists()
    finally:
        sh(clone, "dvc", "remote", "modify", "--local", "storage", "url", str(history.remote))

    bundle, version = registry.bundle_for_stage("prod", repo=clone, dest=tmp_path / "prod-before")
    assert version == "v0.1.0" and files(bundle) == run2

    done = tunepipe(clone, "registry", "rollback", "--stage", "prod")
    assert done.returncode == 0 and "rolled back from v0.1.0 to v0.0.1" in done.stdout, done.stdout + done.stderr
    assert "tunepipe-model#prod#2" in sh(clone, "git", "tag", "--list").stdout  # a new assignment, history kept
    bundle, version = registry.bundle_for_stage("prod", repo=clone)  # the default folder, under .dvc/tmp
    assert version == "v0.0.1" and files(bundle) == run1
    assert bundle.parent == clone / ".dvc" / "tmp" / "bundles" / "tunepipe-model"
    # raw GTO agrees: the latest assignment wins
    shown = json.loads(sh(clone, "gto", "show", "tunepipe-model", "--json").stdout)
    assert {row["version"]: row["stages"] for row in shown}["v0.0.1"]

    # the history project itself got no tags
    assert not sh(history.project, "git", "tag", "--list").stdout.strip()


def served_version(project: Path, port: int, timeout: float = 120) -> str:
    """Starts `tunepipe serve --stage prod`, waits until it is ready, returns the version it serves, stops it."""
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}", PYTHONPATH=f"{project / 'src'}{os.pathsep}{REPO / 'src'}",
               DVC_NO_ANALYTICS="1")
    server = subprocess.Popen([sys.executable, "-m", "tunepipe.cli", "serve", "--stage", "prod", "--port", str(port)], cwd=project,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=5) as answer:
                    return json.loads(answer.read())["models"][0]["version"]
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"the server did not get ready:\n{server.communicate()[0][-3000:]}") from None
                time.sleep(0.5)
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()


@e2e
def test_serve_stage_prod_serves_the_older_version_after_a_rollback_and_restart(history, clone):
    try:  # registered by the test above, unless this one runs alone
        registry.versions(clone)
    except registry.NoVersionError:
        registry.register(repo=clone, ref=history.rev1)
        registry.register(repo=clone, ref=history.rev2, bump="minor")
    # v0.1.0 at prod (again, after the test above: raw gto would need --force there, since v0.1.0's earlier
    # assignment to prod is superseded, not undone)
    done = tunepipe(clone, "registry", "assign", "--stage", "prod", "--version", "v0.1.0")
    assert done.returncode == 0 and "stage prod -> v0.1.0" in done.stdout, done.stdout + done.stderr
    assert served_version(clone, free_port()) == "v0.1.0"
    done = tunepipe(clone, "registry", "rollback", "--stage", "prod")
    assert done.returncode == 0, done.stdout + done.stderr
    assert served_version(clone, free_port()) == "v0.0.1"


def test_outside_a_git_repo_the_registry_commands_say_so_in_one_line(tmp_path):
    for args in (("registry", "show"), ("serve", "--stage", "prod")):
        done = subprocess.run([str(BIN / "tunepipe"), *args], cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert done.returncode == 2, done.stderr
        assert "is not a git repository" in done.stderr and "Traceback" not in done.stderr
    with pytest.raises(registry.RegistryError, match="not a git repository"):
        registry.bundle_for_stage("prod", repo=tmp_path)


def test_a_fetched_bundle_is_verified_and_a_partial_folder_is_never_deleted(tmp_path):
    """No DVC data needed: the registry's cached copy of a version is checked, and `-o DIR` leaves someone's DIR.partial alone.
    The bundle is the tiny hand-built image bundle of tests/serving/conftest.py (random weights)."""
    import shutil

    from tests.serving.conftest import build_image_bundle

    project = tmp_path / "project"
    project.mkdir()
    (project / "dvc.yaml").write_text("artifacts:\n  tunepipe-model:\n    path: results/export/bundle\n    type: model\n")
    sh(project, "git", "init", "-q")
    sh(project, "git", "add", "dvc.yaml")
    sh(project, "git", "-c", "user.name=t", "-c", "user.email=t@tunepipe.invalid", "commit", "-qm", "declare the artifact")
    commit = sh(project, "git", "rev-parse", "HEAD").stdout.strip()
    registered = registry.RegisteredVersion("v0.0.1", commit)

    cached = project / ".dvc" / "tmp" / "bundles" / "tunepipe-model" / f"v0.0.1-{commit[:12]}"
    shutil.copytree(build_image_bundle(tmp_path / "built"), cached)
    assert registry.fetch(registered, repo=project) == cached  # intact: reused
    labels = json.loads((cached / "labels.json").read_text())
    (cached / "labels.json").write_text(json.dumps(labels[::-1], indent=2) + "\n")  # same size, labels swapped
    with pytest.raises(registry.RegistryError, match=r"labels.json: sha256 differs from bundle.json.*remove .* to fetch it again"):
        registry.fetch(registered, repo=project)

    partial = tmp_path / "out.partial"
    partial.mkdir()
    (partial / "being-written").write_text("by another fetch")
    with pytest.raises(registry.RegistryError, match=r"out.partial exists: left by an interrupted fetch, or one still running"):
        registry.fetch(registered, repo=project, dest=tmp_path / "out")
    assert (partial / "being-written").read_text() == "by another fetch" and not (tmp_path / "out").exists()
