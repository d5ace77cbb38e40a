"""The source files a stage runs, found from its imports, so that editing any of them reruns its rule.

Snakemake judges a rule's `input:` files by content; the workflow gives each rule the files listed here
(`code=stage_code("train")` in workflow/rules/common.smk). The list is the stage module, every `tunepipe`
module it imports (statically, at any depth, including imports inside functions, since stages import
heavy libraries lazily), the `__init__.py` of every package on the way (importing a module runs them),
and each of those packages' data files: the non-Python files in the package folder and in its sub-folders
that are not packages themselves (the report's templates, the params schema).

A package that discovers its own modules (`pkgutil.iter_modules(__path__)` in its `__init__.py`, as
tunepipe.modalities does to load a modality by name) counts as importing all of them. Those plug-ins are
called only through their protocol, so an import inside one of their classes' methods counts only when
something else in the closure uses an attribute of that name (`kind.perturbations(...)`): `prepare`, which
reads rows through its modality, does not depend on the robustness code the same modality imports in
`perturbations`. Imports at module level or in plain functions of a plug-in always count.

It over-approximates on purpose: an import inside a function that a run never calls still counts, so a
rule can rerun for an edit that could not have changed its outputs, never the other way round. Any other
import built at run time (`importlib.import_module(name)` with a computed name) is not seen.
Importing this module is cheap (standard library only): the Snakefile calls it to build the DAG.
"""

from __future__ import annotations

import ast
import copy
from functools import cache
from pathlib import Path

PACKAGE = "tunepipe"
#: Where the package's source lives, relative to the project root (the Snakefile's folder).
SOURCE_ROOT = Path("src") / PACKAGE


def _module_file(module: str, root: Path) -> Path | None:
    """The file of a `tunepipe...` module (or package `__init__.py`), or None when it is not one of ours."""
    parts = module.split(".")
    if parts[0] != PACKAGE:
        return None
    base = root.joinpath(*parts[1:])
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    return None


@cache
def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _imported_names(path: Path, module: str, nodes: list[ast.AST] | None = None) -> set[str]:
    """Every module name an import statement in `path` (or in `nodes` of it) may load (absolute, `from x import y` gives x and x.y)."""
    is_package = path.name == "__init__.py"
    package = module if is_package else module.rpartition(".")[0]
    names: set[str] = set()
    for node in (node for root in (nodes if nodes is not None else [_tree(path)]) for node in _walk_runtime(root)):
        if is_package and _discovers_own_modules(node):
            names.update(f"{module}.{child.stem}" for child in path.parent.glob("*.py") if child.name != "__init__.py")
            names.update(f"{module}.{child.parent.name}" for child in path.parent.glob("*/__init__.py"))
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return {name for name in names if name == PACKAGE or name.startswith(PACKAGE + ".")}


def _walk_runtime(root: ast.AST):
    """`ast.walk` without the bodies of `if TYPE_CHECKING:` blocks (imports for type checkers only, never run)."""
    pending = [root]
    while pending:
        node = pending.pop()
        yield node
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            pending.extend(node.orelse)
            continue
        pending.extend(ast.iter_child_nodes(node))


def _is_type_checking(test: ast.AST) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _methods(path: Path) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    """The methods of the module's top-level classes."""
    return [item for node in _tree(path).body if isinstance(node, ast.ClassDef)
            for item in node.body if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef))]


def _attributes(nodes: list[ast.AST]) -> set[str]:
    """Every attribute name read in `nodes` (`x.name`)."""
    return {node.attr for root in nodes for node in ast.walk(root) if isinstance(node, ast.Attribute)}


def _discovers_own_modules(node: ast.AST) -> bool:
    """`pkgutil.iter_modules(__path__)` (or `iter_modules(__path__)`): the package loads its modules by name."""
    if not isinstance(node, ast.Call) or not node.args:
        return False
    func = node.func
    called = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
    first = node.args[0]
    return called == "iter_modules" and isinstance(first, ast.Name) and first.id == "__path__"


def _parents(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _data_files(package_dir: Path) -> list[Path]:
    """Non-Python files of a package: in its folder and in sub-folders that are not packages."""
    found = []
    for entry in sorted(package_dir.iterdir()):
        if entry.name == "__pycache__" or entry.name.startswith("."):
            continue
        if entry.is_dir():
            if not (entry / "__init__.py").exists():
                found.extend(path for path in sorted(entry.rglob("*")) if path.is_file() and "__pycache__" not in path.parts)
        elif entry.suffix not in (".py", ".pyc"):
            found.append(entry)
    return found


def _plugin_packages(root: Path) -> set[str]:
    """The packages that load their modules by name (their modules are plug-ins)."""
    packages = set()
    for init in root.rglob("__init__.py"):
        if any(_discovers_own_modules(node) for node in ast.walk(_tree(init))):
            parts = init.parent.relative_to(root).parts
            packages.add(".".join((PACKAGE, *parts)))
    return packages


@cache
def module_closure(module: str, root: Path = SOURCE_ROOT) -> tuple[str, ...]:
    """Every `tunepipe` module that importing `module` may import, itself and its packages included, sorted."""
    plugin_packages = _plugin_packages(root)
    seen: set[str] = set()
    used: set[str] = set()  # attribute names read anywhere counted so far
    methods: dict[str, list[tuple[str, Path, ast.AST]]] = {}  # plug-in method name -> (module, file, method) not yet counted
    pending = [module]
    while True:
        while pending:
            name = pending.pop()
            if name in seen:
                continue
            path = _module_file(name, root)
            if path is None:
                continue
            seen.add(name)
            pending.extend(_parents(name))
            if name.rpartition(".")[0] in plugin_packages and path.name != "__init__.py":
                deferred = _methods(path)
                for method in deferred:
                    methods.setdefault(method.name, []).append((name, path, method))
                body = _without(_tree(path), deferred)
                pending.extend(_imported_names(path, name, [body]))
                used |= _attributes([body])
            else:
                pending.extend(_imported_names(path, name))
                used |= _attributes([_tree(path)])
        called = [entry for method_name in used & methods.keys() for entry in methods.pop(method_name)]
        if not called:
            break
        for name, path, method in called:
            pending.extend(_imported_names(path, name, [method]))
            used |= _attributes([method])
    if module not in seen:
        raise ValueError(f"{module}: no such module under {root}")
    return tuple(sorted(seen))


def _without(tree: ast.Module, methods: list[ast.AST]) -> ast.Module:
    """A copy of `tree` whose classes lack the given methods (their bodies are judged one by one)."""
    skip = {id(method) for method in methods}
    trimmed = copy.copy(tree)
    trimmed.body = []
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            node = copy.copy(node)
            node.body = [item for item in node.body if id(item) not in skip]
        trimmed.body.append(node)
    return trimmed


def code_files(module: str, root: Path = SOURCE_ROOT) -> list[str]:
    """The files behind `module_closure(module)`: module files plus their packages' data files, as paths under `root`."""
    files: list[Path] = []
    for name in module_closure(module, root):
        path = _module_file(name, root)
        files.append(path)
        if path.name == "__init__.py":
            files.extend(_data_files(path.parent))
    return sorted({str(path) for path in files})


def stage_code(stage: str, root: Path = SOURCE_ROOT) -> list[str]:
    """The code a rule runs: `python -m tunepipe.stages.<stage>` and everything it imports."""
    return code_files(f"{PACKAGE}.stages.{stage}", root)
