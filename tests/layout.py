"""The shape of ``imgproc/`` read from its own ``import`` statements: circles and imports across floors.

Every import counts, a local one inside a function too (a local import that
hides a circle still is one). A module belongs to a room (its first package
under ``imgproc``, or itself at the top) and each room to a floor:

    0  config, errors, jobtypes, optiontypes,      import nothing of imgproc above them (modelfiles:
       presets, identifiers, modelfiles             config and errors only, so processing may ask it)
    1  queueing, processing, adapters, metrics      import floor 0 only, never one another
    2  api, worker, tools (and the tasks alias)     the entry points; api and worker never
                                                    import each other, nor tools (api/web/ is
                                                    the page: part of the API it is served by)

``python -m tests.layout`` prints the figures for this checkout; ``python -m
tests.layout OLD/imgproc --flat`` reads a tree of the old flat layout (before
the role packages), each of its modules placed on the floor of its new room.
``tests/test_layout.py`` asserts them; ``make lint`` runs this.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "imgproc"

FLOORS = {
    "config": 0,
    "errors": 0,
    "jobtypes": 0,
    "optiontypes": 0,
    "presets": 0,
    "identifiers": 0,
    "modelfiles": 0,
    "queueing": 1,
    "metrics": 1,
    "processing": 1,
    "adapters": 1,
    "api": 2,
    "worker": 2,
    "tools": 2,
    "client": 2,
    "tasks": 2,
    "__main__": 2,
}
#: Rooms of the top floor that must not import one another (tools may use both).
APART = {
    ("api", "worker"),
    ("worker", "api"),
    ("api", "tools"),
    ("worker", "tools"),
}
#: Rooms that import only the rooms named: the Python client nothing of imgproc (it needs none of the
#: worker's libraries); the model files config and errors (``make models`` runs them before the rest).
ALONE = {"client": set(), "modelfiles": {"config", "errors"}}

#: The flat layout before the role packages, each module in the room it moved to.
FLAT_ROOMS = {
    "config": "config",
    "errors": "errors",
    "app": "api",
    "routes": "api",
    "ratelimits": "api",
    "options": "api",
    "queue": "queueing",
    "fairshare": "queueing",
    "tasks": "worker",
    "workers": "worker",
    "operations": "processing",
    "imaging": "processing",
    "crop": "processing",
    "sessions": "processing",
    "fetch": "adapters",
    "storage": "adapters",
    "db": "adapters",
    "records": "adapters",
    "vendors": "adapters",
    "cli": "tools",
    "operator": "tools",
    "provision": "tools",
    "demo": "tools",
    "stack": "tools",
}


def modules(root: Path) -> dict[str, Path]:
    """Dotted name -> file of every module under ``root`` (a package folder)."""
    found = {}
    for path in sorted(root.rglob("*.py")):
        parts = [root.name, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _targets(node: ast.AST, name: str, is_package: bool, known: set[str]) -> Iterable[str]:
    """The modules of ``known`` that one import statement in module ``name`` loads."""
    if isinstance(node, ast.Import):
        for alias in node.names:
            if alias.name in known:
                yield alias.name
        return
    assert isinstance(node, ast.ImportFrom)
    if node.level:
        base = name.split(".") if is_package else name.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        module = ".".join(base + ([node.module] if node.module else []))
    else:
        module = node.module or ""
    submodules = [f"{module}.{alias.name}" for alias in node.names if f"{module}.{alias.name}" in known]
    yield from submodules  # `from pkg import submodule`
    if module in known and len(submodules) < len(node.names):  # a name defined by the module itself
        yield module


def graph(root: Path = ROOT) -> dict[str, set[str]]:
    """Module -> the modules of the same tree it imports (anywhere in its code)."""
    files = modules(root)
    known = set(files)
    edges: dict[str, set[str]] = {}
    for name, path in files.items():
        tree = ast.parse(path.read_text(), str(path))
        is_package = path.name == "__init__.py"
        edges[name] = {
            target
            for node in ast.walk(tree)
            if isinstance(node, (ast.Import, ast.ImportFrom))
            for target in _targets(node, name, is_package, known)
            if target != name
        }
    return edges


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every group of modules that import one another, directly or not (Tarjan's strongly connected sets)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(edges.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def room(module: str, flat: bool = False) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return ""  # the package itself: its docstring only
    return FLAT_ROOMS.get(parts[1], parts[1]) if flat else parts[1]


def crossings(edges: dict[str, set[str]], flat: bool = False) -> dict[str, list[tuple[str, str]]]:
    """Imports that break the floors: ``upward``, ``sideways`` on floor 1, top-floor rooms kept ``apart``."""
    found: dict[str, list[tuple[str, str]]] = {"upward": [], "sideways": [], "apart": [], "unplaced": []}
    for source, targets in sorted(edges.items()):
        a = room(source, flat)
        for target in sorted(targets):
            b = room(target, flat)
            if not a or not b or a == b:
                continue
            if a not in FLOORS or b not in FLOORS:
                found["unplaced"].append((source, target))
            elif FLOORS[b] > FLOORS[a]:
                found["upward"].append((source, target))
            elif FLOORS[a] == FLOORS[b] == 1:
                found["sideways"].append((source, target))
            elif (a, b) in APART or b not in ALONE.get(a, {b}):
                found["apart"].append((source, target))
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.layout", description=__doc__.split("\n")[0])
    parser.add_argument("root", nargs="?", type=Path, default=ROOT, help="the imgproc package folder")
    parser.add_argument(
        "--flat", action="store_true", help="the old flat layout: place modules by FLAT_ROOMS"
    )
    args = parser.parse_args(argv)
    edges = graph(args.root)
    found = circles(edges)
    crossed = crossings(edges, args.flat)
    print(f"{len(edges)} modules, {sum(map(len, edges.values()))} imports inside {args.root.name}/")
    print(f"circles: {len(found)}")
    for group in found:
        print("  " + " <-> ".join(group))
    for kind, pairs in crossed.items():
        print(f"{kind} imports: {len(pairs)}")
        for source, target in pairs:
            print(f"  {source} -> {target}")
    return 1 if found or any(crossed.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
