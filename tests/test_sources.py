"""A rule's code inputs are computed from the imports of its stage (tunepipe.sources), not typed by hand."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import REPO
from tunepipe.sources import code_files, module_closure, stage_code


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


@pytest.fixture
def toy(tmp_path) -> Path:
    root = tmp_path / "src" / "tunepipe"
    write(root, {
        "__init__.py": "",
        "errors.py": "",
        "stages/__init__.py": "",
        "stages/one.py": "from tunepipe.errors import TunepipeError\n\ndef run():\n    from tunepipe.lib import deep\n",
        "stages/two.py": "import tunepipe.errors\n",
        "lib/__init__.py": "",
        "lib/deep.py": "from . import helper\nfrom ..errors import TunepipeError\n",
        "lib/helper.py": "import json\n",
        "lib/unused.py": "",
        "lib/templates/page.j2": "<p></p>",
        "other/__init__.py": "",
        "other/data.yaml": "a: 1",
        "plugins/__init__.py": "import importlib, pkgutil\nNAMES = [m.name for m in pkgutil.iter_modules(__path__)]\n",
        "plugins/alpha.py": "from tunepipe.lib import helper\n",
        "plugins/beta.py": "",
        "stages/three.py": "from tunepipe.plugins import NAMES\n",
    })
    return root


def test_the_closure_follows_imports_inside_functions_and_relative_ones(toy):
    assert module_closure("tunepipe.stages.one", toy) == (
        "tunepipe", "tunepipe.errors", "tunepipe.lib", "tunepipe.lib.deep", "tunepipe.lib.helper", "tunepipe.stages", "tunepipe.stages.one",
    )
    assert module_closure("tunepipe.stages.two", toy) == ("tunepipe", "tunepipe.errors", "tunepipe.stages", "tunepipe.stages.two")


def test_a_package_brings_its_data_files_and_only_imported_modules(toy):
    files = {Path(path).relative_to(toy).as_posix() for path in code_files("tunepipe.stages.one", toy)}
    assert "lib/templates/page.j2" in files and "lib/deep.py" in files and "lib/__init__.py" in files
    assert "lib/unused.py" not in files and "other/data.yaml" not in files and "stages/two.py" not in files


def test_a_package_that_loads_its_modules_by_name_imports_all_of_them(toy):
    assert {"tunepipe.plugins.alpha", "tunepipe.plugins.beta", "tunepipe.lib.helper"} <= set(module_closure("tunepipe.stages.three", toy))


def test_an_unknown_module_is_an_error(toy):
    with pytest.raises(ValueError, match="no such module"):
        module_closure("tunepipe.stages.missing", toy)


def test_the_real_stages_import_what_their_old_hand_lists_missed():
    """The modules the issue found missing from the typed lists are now found (paths relative to the repo)."""
    root = REPO / "src" / "tunepipe"

    def code(stage: str) -> set[str]:
        return {Path(path).relative_to(root).as_posix() for path in stage_code(stage, root)}

    assert "data/splitting.py" in code("prepare")
    assert "data/labels.py" in code("prune")
    assert {"sweep.py", "config/__init__.py", "config/params.schema.yaml"} <= code("train")
    assert any(path.startswith("report/templates/") for path in code("report"))
    assert "stages/train.py" not in code("trial")  # no stage imports another
    assert {"modalities/text.py", "modalities/image.py"} <= code("report")  # loaded by name, still found
    for stage in ("prepare", "clean", "split", "augment", "train", "trial", "baseline", "evaluate", "prune", "export", "select", "report"):
        files = code(stage)
        assert f"stages/{stage}.py" in files and "stages/harness.py" in files and "__init__.py" in files
        assert not {p for p in files if p.startswith("stages/")} - {f"stages/{stage}.py", "stages/harness.py", "stages/__init__.py"}


def test_a_plugin_method_counts_only_when_something_calls_it_and_type_hints_never_count(tmp_path):
    root = tmp_path / "src" / "tunepipe"
    write(root, {
        "__init__.py": "",
        "stages/__init__.py": "",
        "lib/__init__.py": "",
        "lib/reading.py": "",
        "lib/attacks.py": "",
        "lib/hints.py": "",
        "kinds/__init__.py": "import pkgutil\nfrom typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from tunepipe.lib import hints\n"
                             "NAMES = [m.name for m in pkgutil.iter_modules(__path__)]\n",
        "kinds/text.py": "class Text:\n    def read(self):\n        from tunepipe.lib import reading\n\n"
                         "    def attack(self):\n        from tunepipe.lib import attacks\n",
        "stages/reader.py": "from tunepipe import kinds\n\ndef run(kind):\n    return kind.read()\n",
        "stages/attacker.py": "from tunepipe import kinds\n\ndef run(kind):\n    return kind.attack()\n",
    })
    reader, attacker = set(module_closure("tunepipe.stages.reader", root)), set(module_closure("tunepipe.stages.attacker", root))
    assert "tunepipe.kinds.text" in reader and "tunepipe.lib.reading" in reader
    assert "tunepipe.lib.attacks" not in reader and "tunepipe.lib.hints" not in reader
    assert "tunepipe.lib.attacks" in attacker and "tunepipe.lib.reading" not in attacker


def test_the_data_stages_do_not_rerun_for_an_edit_of_the_trust_code():
    """Modalities import robustness and trust code inside the methods only those rules call."""
    root = REPO / "src" / "tunepipe"

    def code(stage: str) -> set[str]:
        return {Path(path).relative_to(root).as_posix() for path in stage_code(stage, root)}

    for stage in ("prepare", "clean", "split", "augment", "baseline"):
        assert not {p for p in code(stage) if p.startswith(("robustness/", "trust/", "models/lightning_module"))}, stage
    assert {"robustness/text_perturbations.py", "robustness/image_perturbations.py", "robustness/attacks.py"} <= code("robustness")
    assert "robustness/adversarial.py" in code("train")  # adversarial training
    assert "trust/slices.py" in code("evaluate") and "trust/explain.py" in code("explain") and "trust/explain.py" in code("report")
