"""The shape of the code: no import circles, and arrows that point down (docs/architecture.md).

Every module of the project is read (not imported) and every import in it is collected, the ones
inside functions too: an import deferred into a function is still a dependency, and hiding a
circle that way is the usual way circles grow. A failure names the modules.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: folder -> import name (pyproject's package-dir)
PACKAGES = {"hub": "lienthong.hub", "connectors": "lienthong.connectors", "signing": "lienthong.signing",
            "mappings": "lienthong.mappings", "sandbox": "lienthong.sandbox", "schemas": "lienthong.schemas",
            "lienthong": "lienthong"}


def _modules() -> dict[str, Path]:
    found = {}
    for folder, name in PACKAGES.items():
        for path in sorted((REPO / folder).rglob("*.py")):
            if "migrations" in path.parts:
                continue  # Alembic scripts: loaded by Alembic, not imported by the hub
            rel = path.relative_to(REPO / folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            found[".".join([name, *parts])] = path
    return found


MODULES = _modules()


def _resolve(module: str, path: Path, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for _ in range(node.level - 1):
        package = package.rpartition(".")[0]
    return f"{package}.{node.module}" if node.module else package


def _target(name: str) -> str | None:
    """The project module ``name`` refers to (a module, or the package holding the imported name)."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def imports() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(module, path, node)
                names = [f"{base}.{a.name}" for a in node.names] or [base]
            for name in names:
                target = _target(name)
                if target is not None and target != module:
                    graph[module].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_circles():
    circles = cycles(imports())
    assert not circles, "import circles:\n" + "\n".join(" <-> ".join(c) for c in circles)


def test_the_circle_finder_finds_circles():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


#: layer -> what it must never import (docs/architecture.md, "The arrows point down")
HUB = "lienthong.hub"
FORBIDDEN = {
    f"{HUB}.store": (f"{HUB}.audit", f"{HUB}.delivery", f"{HUB}.dossiers", f"{HUB}.reporting", f"{HUB}.flows",
                     f"{HUB}.cli", "lienthong.connectors"),
    # the record of dossiers: kept by the intake, read by reports; below the flows, above the store
    f"{HUB}.dossiers": (f"{HUB}.audit", f"{HUB}.delivery", f"{HUB}.flows", f"{HUB}.cli", "lienthong.connectors",
                        f"{HUB}.reporting"),
    # report figures and the scorecard: computed from the record; sending them is a flow's job
    f"{HUB}.reporting": (f"{HUB}.delivery", f"{HUB}.flows", f"{HUB}.cli", "lienthong.connectors"),
    f"{HUB}.audit": (f"{HUB}.delivery", f"{HUB}.flows", f"{HUB}.cli"),
    f"{HUB}.delivery": (f"{HUB}.flows", f"{HUB}.cli"),
    f"{HUB}.flows": (f"{HUB}.cli",),
    "lienthong.connectors": (f"{HUB}.delivery", f"{HUB}.flows", f"{HUB}.cli"),
    "lienthong.signing": (f"{HUB}.delivery", f"{HUB}.flows", f"{HUB}.cli", "lienthong.connectors"),
    "lienthong.mappings": (f"{HUB}.delivery", f"{HUB}.flows", f"{HUB}.cli", "lienthong.connectors"),
    "lienthong.sandbox": (f"{HUB}.delivery", f"{HUB}.flows", f"{HUB}.cli"),
}
#: the modules at hub/'s top level: shared by several packages, so they may use none of them
SHARED = ("airflow_conn", "envelope", "errors", "files", "inbound", "settings", "validation", "xmlsafe")
#: the registry of national services (names, namespaces, WSDLs, limits): a leaf every layer may read
LEAVES = ("lienthong.connectors.services",)


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_arrows_point_down():
    wrong = []
    for module, targets in imports().items():
        rules = [forbidden for layer, forbidden in FORBIDDEN.items() if _within(module, layer)]
        if module in {f"{HUB}.{name}" for name in SHARED}:
            rules.append((f"{HUB}.store", f"{HUB}.audit", f"{HUB}.delivery", f"{HUB}.flows", f"{HUB}.cli",
                          "lienthong.connectors"))
        for target in sorted(targets):
            if target in LEAVES:
                continue
            if any(_within(target, bad) for forbidden in rules for bad in forbidden):
                wrong.append(f"{module} imports {target}")
    assert not wrong, "imports against the layers:\n" + "\n".join(wrong)


def test_leaves_import_nothing_of_the_project():
    graph = imports()
    assert {leaf: sorted(graph[leaf]) for leaf in LEAVES} == {leaf: [] for leaf in LEAVES}


def test_hub_top_level_holds_only_shared_modules():
    top = sorted(p.stem for p in (REPO / "hub").glob("*.py") if p.stem != "__init__")
    assert top == sorted(SHARED), f"hub/ top level: {top}; a concept's modules go in its package"
    packages = sorted(p.name for p in (REPO / "hub").iterdir() if (p / "__init__.py").exists())
    assert packages == ["audit", "cli", "delivery", "dossiers", "flows", "reporting", "store"]


#: the wire: what only transports (and the sandbox, the other end of it) work with
WIRE = ("lienthong.connectors.soap", "lienthong.connectors.soapframe", "lienthong.connectors.http",
        "lienthong.connectors.payload")
#: the partner modules: one national service each, speaking fields through the partner port
PARTNERS = ("lienthong.connectors.csdl_tthc", "lienthong.connectors.dvc_portal", "lienthong.connectors.reporting")


def test_partners_flows_and_commands_speak_through_the_port():
    graph = imports()
    speakers = sorted(m for m in MODULES if m in PARTNERS or any(
        _within(m, f"{HUB}.{layer}") for layer in ("flows", "cli", "delivery")))
    wrong = [f"{m} imports {t}" for m in speakers for t in sorted(graph[m]) if t in WIRE]
    assert not wrong, "only a transport works with the wire (connectors/port.py):\n" + "\n".join(wrong)
    for module in PARTNERS:
        tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
        names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert not {n for n in names if n.split(".")[0] in ("lxml", "zeep", "requests")}, module
