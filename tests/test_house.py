"""The house's doors: no import circle anywhere in the project, the bot importing nothing of
training, export or TensorFlow, inference and forms nothing of Discord (read from the source
by tests/import_graph.py, and checked on a real interpreter's modules)."""

from __future__ import annotations

import subprocess
import sys

from .import_graph import ROOT, cycles, imports, violations


def test_no_import_circle_anywhere_in_the_project():
    assert cycles(imports()) == []


def test_every_room_imports_only_through_its_doors():
    assert violations(imports()) == []


def test_the_checker_sees_a_circle_and_each_kind_of_broken_door(tmp_path):
    def write(path: str, text: str) -> None:
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text)

    for package in ("bot", "bot/engine", "bot/forms", "bot/discord_app", "training"):
        write(f"{package}/__init__.py", "")
    write("bot/engine/a.py", "from bot.engine import b\n")
    write("bot/engine/b.py", "def f():\n    from . import a\n")  # a circle, even inside a function
    write("bot/engine/c.py", "import discord\n")
    write("bot/forms/tang.py", "from bot.engine.a import x\nimport onnxruntime\n")
    write("bot/corpus.py", "from training.model import build\n")
    write("bot/discord_app/poem.py", "import discord\nfrom bot.composition import run\n")
    write("bot/composition.py", "from bot.discord_app import poem\n")
    edges = imports(tmp_path)
    assert cycles(edges) == [
        ["bot.composition", "bot.discord_app.poem"],
        ["bot.engine.a", "bot.engine.b"],
    ]
    broken = "\n".join(violations(edges))
    assert "bot.engine.c:1 imports discord" in broken
    assert "bot.forms.tang:1 imports bot.engine.a" in broken
    assert "bot.forms.tang:2 imports onnxruntime" in broken
    assert "bot.corpus:1 imports training.model" in broken
    assert "bot.discord_app.poem:2 imports bot.composition" in broken
    assert "bot.discord_app.poem:1 imports discord" not in broken  # its own room may


def test_inference_and_forms_load_without_discord():
    code = (
        "import sys, pkgutil, importlib, bot.engine, bot.forms, bot.stores\n"
        "for package in (bot.engine, bot.forms, bot.stores):\n"
        "    for m in pkgutil.iter_modules(package.__path__, package.__name__ + '.'):\n"
        "        importlib.import_module(m.name)\n"
        "import bot.jobs, bot.corpus, bot.config\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('discord', 'aiohttp')]\n"
        "print(bad); sys.exit(1 if bad else 0)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
