"""The package's shape, read from its source with ``ast`` (nothing is imported).

Checks the rules of ``docs/ARCHITECTURE.md``:

- imports point down the tier list (``TIERS``): a module never imports a package of a higher
  tier, lazy (function-level) imports included;
- no import cycles between modules, nor between the top-level packages;
- no module over ``MAX_MODULE_LINES`` lines and no function over ``MAX_FUNCTION_LINES``;
- no private name (``_x``) of another module reached from outside it.

Run it as a script for the figures (``python tests/test_architecture.py``).
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "src" / "napari_seem"
PACKAGE = "napari_seem"
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 120

# Lower number = lower tier. A module may import its own group or any group of a lower tier.
# Groups with the same number are siblings and must not import each other.
TIERS: dict[str, int] = {
    "core": 0,  # numpy contract
    "datasets": 0,  # generated and registry-shipped images with truth (numpy)
    "model": 1,  # pure torch
    "predict": 2,  # torch over one model
    "batch": 3,  # whole images (a library over predict)
    "train": 3,  # training and fine-tuning (a library over model and predict)
    "evaluation": 4,  # metrics and protocols over train and predict
    "engine": 4,  # in-process sessions and jobs; job kinds wrap batch and train
    "remote": 5,  # HTTP protocol, client (core only) and server (over engine)
    "app": 6,  # Qt-free annotation state shared by napari and Jupyter
    "api": 7,  # the public scripting facade
    "_napari": 8,
    "_jupyter": 8,
    "jupyter": 9,  # public home of SeemApp
    "cli": 9,
    "__init__": 10,
}
ALLOWED_SIBLINGS: set[tuple[str, str]] = {
    ("core", "datasets"),
    ("datasets", "core"),  # datasets draws images with the numpy contract
}
# The client side of remote must stay torch-free: it may import core and itself only.
CLIENT_SIDE = {"remote", "remote.client", "remote.process", "remote.protocol", "remote.transport"}
# Deprecated import paths kept for one release: a module whose docstring starts like this
# re-exports another module and may import anything; no other module may import it.
SHIM_DOCSTRING = "Deprecated import path"
SHIM = "compat"
# Private attributes that are public API in the standard library (namedtuple, enum, ...).
STDLIB_PRIVATE = {"_replace", "_asdict", "_fields", "_value_", "_name_", "_missing_", "_exit"}


@dataclass
class Module:
    name: str  # dotted name without the package prefix, e.g. "engine.core"
    path: Path
    tree: ast.Module
    lines: int
    imports: set[str] = field(default_factory=set)  # runtime imports (lazy included)
    typing_imports: set[str] = field(default_factory=set)  # under ``if TYPE_CHECKING``

    @property
    def group(self) -> str:
        doc = ast.get_docstring(self.tree) or ""
        return "compat" if doc.startswith(SHIM_DOCSTRING) else self.name.split(".")[0]


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1]
    return ".".join(parts)


def load_modules() -> dict[str, Module]:
    modules: dict[str, Module] = {}
    for path in sorted(ROOT.rglob("*.py")):
        text = path.read_text()
        mod = Module(_module_name(path), path, ast.parse(text), text.count("\n") + 1)
        modules[mod.name] = mod
    for mod in modules.values():
        _collect_imports(mod, modules)
    return modules


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk(node: ast.AST, typing: bool = False) -> Iterator[tuple[ast.AST, bool]]:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child):
            for sub in child.body:
                yield sub, True
                yield from _walk(sub, True)
            for sub in child.orelse:
                yield sub, typing
                yield from _walk(sub, typing)
            continue
        yield child, typing
        yield from _walk(child, typing)


def _resolve(mod: Module, node: ast.ImportFrom) -> str | None:
    if node.level:
        base = mod.name.split(".")
        if mod.path.name != "__init__.py":
            base = base[:-1]
        base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
        target = ".".join([*base, node.module] if node.module else base)
        return target
    if node.module and (node.module == PACKAGE or node.module.startswith(PACKAGE + ".")):
        return node.module[len(PACKAGE) + 1 :] if node.module != PACKAGE else "__init__"
    return None


def _collect_imports(mod: Module, modules: dict[str, Module]) -> None:
    for node, typing in _walk(mod.tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == PACKAGE:
                    targets.append("__init__")
                elif alias.name.startswith(PACKAGE + "."):
                    targets.append(alias.name[len(PACKAGE) + 1 :])
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(mod, node)
            if base is None:
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}" if base != "__init__" else alias.name
                targets.append(sub if sub in modules else base)
        for target in targets:
            if target not in modules and target != "__init__":
                # an attribute of a package: import resolves to the package module
                while target and target not in modules:
                    target = target.rpartition(".")[0]
            if target and target != mod.name:
                (mod.typing_imports if typing else mod.imports).add(target)


def group_of(name: str, modules: dict[str, Module]) -> str:
    return modules[name].group if name in modules else name.split(".")[0]


def tier_violations(modules: dict[str, Module]) -> list[str]:
    bad = []
    for mod in modules.values():
        src = mod.group
        if src == SHIM or src not in TIERS:
            if src not in TIERS and src != SHIM:
                bad.append(f"{mod.name}: group {src!r} has no tier")
            continue
        for target in sorted(mod.imports | mod.typing_imports):
            dst = group_of(target, modules)
            if dst == src:
                continue
            if dst == SHIM:
                bad.append(f"{mod.name} -> {target}: code must not import compatibility shims")
                continue
            if dst not in TIERS:
                bad.append(f"{mod.name} -> {target}: group {dst!r} has no tier")
            elif TIERS[dst] > TIERS[src] or (
                TIERS[dst] == TIERS[src] and (src, dst) not in ALLOWED_SIBLINGS
            ):
                bad.append(f"{mod.name} ({src}) -> {target} ({dst})")
        if mod.name in CLIENT_SIDE:
            for target in mod.imports:
                if group_of(target, modules) != "core" and target not in CLIENT_SIDE:
                    bad.append(f"{mod.name} -> {target}: the client side imports core only")
    return bad


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10_000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def module_cycles(modules: dict[str, Module]) -> list[list[str]]:
    graph = {m.name: {t for t in m.imports if t in modules} for m in modules.values()}
    return _cycles(graph)


def package_cycles(modules: dict[str, Module]) -> list[list[str]]:
    graph: dict[str, set[str]] = {}
    for mod in modules.values():
        src = mod.group
        if src == SHIM:
            continue
        for target in mod.imports:
            dst = group_of(target, modules)
            if dst != src and dst != SHIM:
                graph.setdefault(src, set()).add(dst)
    # the package root re-exports the public API lazily; it is the top, not part of a cycle
    graph.pop("__init__", None)
    return _cycles(graph)


def long_modules(modules: dict[str, Module]) -> list[str]:
    return [f"{m.name}: {m.lines}" for m in modules.values() if m.lines > MAX_MODULE_LINES]


def long_functions(modules: dict[str, Module]) -> list[str]:
    out = []
    for mod in modules.values():
        for node in ast.walk(mod.tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                n = (node.end_lineno or node.lineno) - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    out.append(f"{mod.name}.{node.name}: {n}")
    return out


def _own_private_names(tree: ast.Module) -> set[str]:
    """Private names a module defines itself: ``self._x = ...``, ``def _x``, ``_x = ...``."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
    return {n for n in names if n.startswith("_")}


def private_access(modules: dict[str, Module]) -> list[str]:
    """``from x import _name`` and ``obj._attr`` where the module does not define ``_attr``.

    ``self._x`` / ``cls._x`` / ``super()._x`` are always fine, and so is ``other._x`` when the
    module defines ``_x`` itself (``__eq__`` of a class on another instance, a constructor).
    """
    out = []
    for mod in modules.values():
        own = _own_private_names(mod.tree)
        for node in ast.walk(mod.tree):
            if isinstance(node, ast.ImportFrom):
                base = _resolve(mod, node)
                if base is None:
                    continue
                for a in node.names:
                    private = a.name.startswith("_") and not a.name.startswith("__")
                    if private and f"{base}.{a.name}" not in modules:
                        out.append(f"{mod.name}: from {base} import {a.name}")
                continue
            if not isinstance(node, ast.Attribute):
                continue
            attr = node.attr
            if not attr.startswith("_") or attr.startswith("__") or attr in STDLIB_PRIVATE:
                continue
            value = node.value
            if isinstance(value, ast.Name) and value.id in {"self", "cls"}:
                continue
            if isinstance(value, ast.Call) and getattr(value.func, "id", None) == "super":
                continue
            if attr in own:
                continue
            out.append(f"{mod.name}:{node.lineno}: {ast.unparse(node)}")
    return out


def report() -> dict[str, list[str]]:
    modules = load_modules()
    return {
        "modules over 600 lines": long_modules(modules),
        "functions over 120 lines": long_functions(modules),
        "module import cycles": [" <-> ".join(c) for c in module_cycles(modules)],
        "package import cycles": [" <-> ".join(c) for c in package_cycles(modules)],
        "tier violations": tier_violations(modules),
        "private names reached across modules": private_access(modules),
    }


def test_no_module_or_function_too_long() -> None:
    modules = load_modules()
    assert long_modules(modules) == []
    assert long_functions(modules) == []


def test_no_import_cycles() -> None:
    modules = load_modules()
    assert module_cycles(modules) == []
    assert package_cycles(modules) == []


def test_imports_point_down_the_tiers() -> None:
    assert tier_violations(load_modules()) == []


def test_no_private_names_across_modules() -> None:
    assert private_access(load_modules()) == []


def test_the_checker_sees_a_cycle_and_an_upward_import() -> None:
    """The checks themselves can fail: a made-up graph with a cycle and an upward edge."""
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    mod = Module("core.x", ROOT / "core" / "x.py", ast.parse(""), 1, imports={"engine.y"})
    fake = {
        "core.x": mod,
        "engine.y": Module("engine.y", ROOT / "engine" / "y.py", ast.parse(""), 1),
    }
    assert tier_violations(fake) == ["core.x (core) -> engine.y (engine)"]


DOC = ROOT.parents[1] / "docs" / "ARCHITECTURE.md"


def test_the_map_names_real_files_and_every_folder() -> None:
    """docs/ARCHITECTURE.md stays true: every file it names exists, every folder is on it."""
    import re

    text = DOC.read_text()
    named = set(re.findall(r"`([\w/]+(?:/[\w*]+)*\.py)`", text))
    repo = ROOT.parents[1]
    missing = [n for n in sorted(named) if not (list(ROOT.glob(n)) or list(repo.glob(n)))]
    assert missing == []
    folders = {p.parent.relative_to(ROOT).parts[0] for p in ROOT.glob("*/__init__.py")}
    unnamed = [f for f in sorted(folders) if f"`{f}/`" not in text]
    assert unnamed == []


if __name__ == "__main__":
    for title, items in report().items():
        print(f"{title}: {len(items)}")
        for item in items:
            print(f"    {item}")
