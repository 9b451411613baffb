"""The project's import graph, read from the source (every `import` statement, including those
inside functions and under TYPE_CHECKING), and the rules the house keeps: no import circle
anywhere, and each room importing only through its doors.

`python -m tests.import_graph` prints the rooms and their imports, any circle and any broken
rule, and exits 1 if there is one.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("bot", "training", "export", "benchmarks", "tests")
TENSORFLOW = ("tensorflow", "tf2onnx", "keras", "tf_keras")


@dataclass(frozen=True)
class Import:
    source: str  # the importing module
    target: str  # the imported module: a project module where it resolves to one
    line: int


def modules(root: Path = ROOT) -> dict[str, Path]:
    """Every Python module of the project's packages, by dotted name."""
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def _imports(name: str, path: Path, known: dict[str, Path]) -> Iterator[Import]:
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(name, alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the module's package, one level up per extra dot
                here = name.split(".") if is_package else name.split(".")[:-1]
                here = here[: len(here) - (node.level - 1)]
                base = ".".join([*here, base] if base else here)
            for alias in node.names:
                full = f"{base}.{alias.name}"
                yield Import(name, full if full in known else base, node.lineno)


def imports(root: Path = ROOT) -> list[Import]:
    known = modules(root)
    return [i for name, path in known.items() for i in _imports(name, path, known)]


def _top(module: str) -> str:
    return module.split(".")[0]


def _within(module: str, room: str) -> bool:
    return module == room or module.startswith(room + ".")


def cycles(edges: list[Import]) -> list[list[str]]:
    """The import circles among project modules: each strongly connected component of more
    than one module (or a module importing itself), by Tarjan's algorithm."""
    graph: dict[str, set[str]] = {}
    for e in edges:
        graph.setdefault(e.source, set())
        if _top(e.target) in PACKAGES:
            graph[e.source].add(e.target)
            graph.setdefault(e.target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1 or node in graph[node]:
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


# (room, what it must not import, why): a room is a module or a package and all inside it.
RULES: list[tuple[str, tuple[str, ...], str]] = [
    ("bot", ("training", "export", "benchmarks", "tests", *TENSORFLOW), "the bot is the service"),
    (
        "bot.engine",
        (
            "discord",
            "aiohttp",
            "bot.discord_app",
            "bot.stores",
            "bot.jobs",
            "bot.composition",
            "bot.forms",
            "bot.config",
        ),
        "inference knows no Discord",
    ),
    (
        "bot.forms",
        (
            "discord",
            "aiohttp",
            "onnxruntime",
            "bot.engine",
            "bot.discord_app",
            "bot.stores",
            "bot.jobs",
            "bot.composition",
            "bot.config",
        ),
        "forms are plain functions of text",
    ),
    ("bot.stores", ("discord", "bot.discord_app", "bot.composition"), "stores know no Discord"),
    ("bot.jobs", ("discord", "bot.discord_app", "bot.composition"), "jobs know no Discord"),
    ("bot.corpus", ("discord", "onnxruntime", "bot."), "corpus reading stands alone"),
    ("bot.config", ("discord", "bot.discord_app", "bot.composition"), "settings know no Discord"),
    ("bot.__main__", ("discord", "bot.discord_app"), "the shell reaches Discord via the root"),
    ("bot.web", ("discord", "bot.discord_app", "bot.composition"), "the page knows no Discord"),
    ("bot.throttle", ("discord", "bot."), "the throttle stands alone"),
    (
        "bot.poems",
        ("discord", "aiohttp", "bot.discord_app", "bot.web"),
        "both rooms ask through it",
    ),
]
# Only these may import discord.py (within the bot); nothing but `python -m bot` imports the root.
DISCORD_ROOM = "bot.discord_app"
ROOT_MODULE = "bot.composition"
ROOT_IMPORTERS = ("bot.__main__", "tests", "benchmarks")


def _matches(target: str, banned: str) -> bool:
    if banned.endswith("."):  # a package's insides but not the package itself
        return target.startswith(banned)
    return _within(target, banned)


def violations(edges: list[Import]) -> list[str]:
    """Every import that breaks a rule of the house, as `module:line imports target (why)`."""
    broken = []
    for e in edges:
        where = f"{e.source}:{e.line} imports {e.target}"
        for room, banned, why in RULES:
            if _within(e.source, room) and any(_matches(e.target, b) for b in banned):
                broken.append(f"{where} ({why})")
        if (
            _within(e.source, "bot")
            and _top(e.target) == "discord"
            and not _within(e.source, DISCORD_ROOM)
        ):
            broken.append(f"{where} (only {DISCORD_ROOM} imports discord.py)")
        if e.target == ROOT_MODULE and not any(_within(e.source, r) for r in ROOT_IMPORTERS):
            broken.append(f"{where} (nothing imports the composition root back)")
    return sorted(set(broken))


def rooms(edges: list[Import]) -> dict[str, set[str]]:
    """Which rooms each room imports: bot's sub-packages and top modules and the other
    top-level packages, with the third-party packages each uses (the standard library left
    out)."""

    def room(module: str) -> str:
        parts = module.split(".")
        return ".".join(parts[:2]) if parts[0] == "bot" else parts[0]

    seen: dict[str, set[str]] = {}
    for e in edges:
        top = _top(e.target)
        if top in sys.stdlib_module_names or top == "__future__":
            continue
        target = room(e.target) if top in PACKAGES else top
        if target != room(e.source):
            seen.setdefault(room(e.source), set()).add(target)
    return seen


def main() -> int:
    edges = imports()
    print(f"{len(modules())} modules, {len(edges)} import statements")
    for source, targets in sorted(rooms(edges).items()):
        print(f"  {source} -> {', '.join(sorted(targets))}")
    circles = cycles(edges)
    broken = violations(edges)
    print("import circles:", "none" if not circles else "")
    for circle in circles:
        print("  " + " <-> ".join(circle))
    print("broken rules:", "none" if not broken else "")
    for line in broken:
        print("  " + line)
    return 1 if circles or broken else 0


if __name__ == "__main__":
    sys.exit(main())
