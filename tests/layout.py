"""The shape of ``imgproc/`` read from its own ``import`` statements: circles and imports across floors.

Every import counts, a local one inside a function too (a local import that
hides a circle still is one). A module belongs to a room (its first package
under ``imgproc``, or itself at the top) and each room to a floor:

    0  config, errors, jobtypes, optiontypes,      import nothing of imgproc above them (modelfiles:
       presets, identifiers, modelfiles             config and errors only, so processing may ask it)
    1  queueing, processing, adapters, metrics      import floor 0 only, never one another
    2  api, worker, tools, testing (and the         the entry points; api and worker never
       tasks alias)                                 import each other, nor tools or testing (the
                                                    harness); api/web/ is the page: part of the
                                                    API it is served by

``python -m tests.layout`` prints the figures for this checkout; ``python -m
tests.layout OLD/imgproc --flat`` reads a tree of the old flat layout (before
the role packages), each of its modules placed on the floor of its new room.
It also lists every copy of the job-type table outside ``imgproc/jobtypes.py``
(``table_copies``: a job type's name or endpoint written in a string) but the
allowed ones, and every probe of a Protocol-typed field (``protocol_probes``:
``hasattr(storage, ...)`` where the Protocol should name what callers use).
``tests/test_layout.py`` asserts them; ``make lint`` runs this.
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from collections.abc import Iterable
from pathlib import Path

from tests import jobstate_layout

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
    "testing": 2,
    "client": 2,
    "clientgen": 2,
    "tasks": 2,
    "__main__": 2,
}
#: Rooms of the top floor that must not import one another (tools may use both).
APART = {
    ("api", "worker"),
    ("worker", "api"),
    ("api", "tools"),
    ("worker", "tools"),
    ("api", "testing"),
    ("worker", "testing"),
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


#: The one table of job types (``imgproc/jobtypes.py``) and the copies of it allowed, with why: a
#: whole file, or ``(file, literal)``. Anything else of ``imgproc/`` that names a job type or an
#: endpoint in a string (a .py string that is not a docstring, a quoted .js or .html value) is a copy.
TABLE = "jobtypes.py"
COPIES_ALLOWED: dict[str | tuple[str, str], str] = {
    "client/jobtypes.py": "the client's copy, written by python -m imgproc.clientgen; tests/test_client.py "
    "fails when it differs from what the table writes",
}
_QUOTED = [re.compile(q + "([^" + q + "\\n]*)" + q) for q in ('"', "'", "`")]


def _names_a_job_type(text: str, names: set[str], endpoints: set[str]) -> bool:
    """A job type's name (or a comma-separated list of them), or any string with an endpoint in it."""
    if all(part.strip() in names for part in text.split(",")):
        return True
    return any(re.search(rf"(?<![\w-]){re.escape(e)}(?![\w-])", text) for e in endpoints)


def _strings(path: Path) -> Iterable[tuple[int, str]]:
    """``(line, text)`` of the strings of a module (docstrings left out), a script or a template."""
    text = path.read_text()
    if path.suffix != ".py":
        for number, line in enumerate(text.splitlines(), 1):
            for quoted in _QUOTED:
                yield from ((number, m[1]) for m in quoted.finditer(line))
        return
    tree = ast.parse(text, str(path))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            yield node.lineno, node.value


def table_copies(
    root: Path = ROOT, names: Iterable[str] | None = None, endpoints: Iterable[str] | None = None
) -> list[tuple[str, int, str]]:
    """``(file, line, literal)`` of every job-type name or endpoint written outside the table."""
    if names is None or endpoints is None:
        from imgproc.jobtypes import JOB_TYPES

        names = list(JOB_TYPES)
        endpoints = [e for jt in JOB_TYPES.values() for e in (jt.single_endpoint, jt.bulk_endpoint)]
    names, endpoints = set(names), set(endpoints)
    found = []
    for path in sorted(p for ext in ("py", "js", "html") for p in root.rglob(f"*.{ext}")):
        where = path.relative_to(root).as_posix()
        if where == TABLE or where in COPIES_ALLOWED:
            continue
        for line, text in _strings(path):
            if _names_a_job_type(text, names, endpoints) and (where, text) not in COPIES_ALLOWED:
                found.append((where, line, text))
    return found


#: Calls that ask whether an object has what its type already promises.
PROBES = {"hasattr", "getattr", "isinstance"}


def _mentions(annotation: ast.AST | None, names: set[str]) -> bool:
    """Whether a type annotation names one of ``names`` (``Storage``, ``Remover | None``, ``"Storage"``)."""
    for node in ast.walk(annotation) if annotation is not None else ():
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            try:
                if _mentions(ast.parse(node.value, mode="eval"), names):
                    return True
            except SyntaxError:
                continue
        elif (isinstance(node, ast.Name) and node.id in names) or (
            isinstance(node, ast.Attribute) and node.attr in names
        ):
            return True
    return False


def _probe(node: ast.Call, fields: set[str]) -> bool:
    """``hasattr(x, ...)``, ``getattr(x, name, default)``, ``isinstance(x.field, ...)``; x Protocol-typed."""
    if not (isinstance(node.func, ast.Name) and node.func.id in PROBES and node.args):
        return False
    if node.func.id == "getattr" and len(node.args) < 3:
        return False  # no default: a dynamic attribute that must exist (a delegating __getattr__)
    target = node.args[0]
    if node.func.id == "isinstance":  # on fields only (x.storage): a local of that name may be plain data
        return isinstance(target, ast.Attribute) and target.attr in fields
    name = target.id if isinstance(target, ast.Name) else getattr(target, "attr", None)
    return name in fields


def protocol_probes(root: Path = ROOT) -> list[tuple[str, int, str]]:
    """``(file, line, call)`` of every probe of a Protocol-typed field: a Protocol names what callers use.

    A field is Protocol-typed where any annotation under ``root`` gives its name a Protocol (a class
    with ``Protocol`` among its bases): ``storage: Storage`` makes every ``storage`` and ``x.storage``.
    """
    trees = {path: ast.parse(path.read_text(), str(path)) for path in sorted(root.rglob("*.py"))}
    protocols = {
        node.name
        for tree in trees.values()
        for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef) and any(_mentions(base, {"Protocol"}) for base in node.bases)
    }
    fields = set()
    for tree in trees.values():
        for node in ast.walk(tree):
            if isinstance(node, ast.AnnAssign) and _mentions(node.annotation, protocols):
                fields.add(getattr(node.target, "id", None) or getattr(node.target, "attr", None))
            elif isinstance(node, ast.arg) and _mentions(node.annotation, protocols):
                fields.add(node.arg)
    return sorted(
        (path.relative_to(root).as_posix(), node.lineno, ast.unparse(node))
        for path, tree in trees.items()
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and _probe(node, fields)
    )


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
    copies = [] if args.flat else table_copies(args.root)
    print(f"copies of the job-type table outside {TABLE}: {len(copies)}")
    for where, line, text in copies:
        print(f"  {where}:{line}: {text!r}")
    probes = [] if args.flat else protocol_probes(args.root)
    print(f"probes of Protocol-typed fields (hasattr, getattr with a default, isinstance): {len(probes)}")
    for where, line, call in probes:
        print(f"  {where}:{line}: {call}")
    keys = [] if args.flat else jobstate_layout.meta_keys(args.root)
    print(f"modules naming a meta key outside {jobstate_layout.STATE}: {len(keys)}")
    readers = [] if args.flat else jobstate_layout.payload_readers(args.root)
    print(f"readers of a stored payload outside Payload.of ({jobstate_layout.PAYLOAD}): {len(readers)}")
    for where, line in keys + readers:
        print(f"  {where}:{line}")
    return 1 if found or any(crossed.values()) or copies or probes or keys or readers else 0


if __name__ == "__main__":
    sys.exit(main())
