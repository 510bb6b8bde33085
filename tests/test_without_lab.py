"""`pip install .` without the `lab` extra: the product imports and serves, the load tests say what to
install (exit 2, no traceback).

Each check runs in a fresh interpreter whose imports of aiortc (and its aioice, av) — and, in the
strictest case, of giaoban.lab itself — fail as they do when the extra is not installed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAB_DEPS = ("aiortc", "aioice", "av")
HINT = 'pip install "giaoban[lab]"'

BLOCK = """
import sys
from importlib.abc import MetaPathFinder

BLOCKED = {blocked!r}


class Missing(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if any(name == b or name.startswith(b + ".") for b in BLOCKED):
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None


sys.meta_path.insert(0, Missing())
"""


def _run(code: str, blocked: tuple[str, ...], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIAOBAN_")}
    (tmp_path / "var").mkdir(exist_ok=True)
    env["GIAOBAN_DATA_DIR"] = str(tmp_path / "var")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return subprocess.run(
        [sys.executable, "-c", BLOCK.format(blocked=sorted(blocked)) + code],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
        check=False,
    )


SERVE = """
import importlib, pkgutil
import giaoban
from giaoban.migrate import upgrade
from giaoban.settings import get_settings

# Every product module imports (the lab is the only package allowed to need aiortc).
for mod in pkgutil.walk_packages(giaoban.__path__, "giaoban."):
    if mod.name != "giaoban.lab" and not mod.name.startswith(("giaoban.lab.", "giaoban.migrations")):
        importlib.import_module(mod.name)

upgrade(get_settings().resolved_database_url)
from fastapi.testclient import TestClient
from giaoban.web.app import create_app

with TestClient(create_app()) as client:
    health = client.get("/healthz").json()
    assert health["status"] == "ok", health
    assert client.get("/api/v1/meetings").status_code == 401
assert not any(m.split(".")[0] in ("aiortc", "aioice", "av") for m in sys.modules), "lab dependency imported"
print("served")
"""


def test_the_app_imports_and_serves_without_the_lab(tmp_path: Path) -> None:
    out = _run(SERVE, (*LAB_DEPS, "giaoban.lab"), tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[-1] == "served"


@pytest.mark.parametrize("blocked", [LAB_DEPS, (*LAB_DEPS, "giaoban.lab")], ids=["no-aiortc", "no-lab"])
@pytest.mark.parametrize(
    "argv", [["loadtest", "media", "--sites", "3"], ["loadtest", "briefing", "--sites", "3", "--json"]]
)
def test_a_load_test_says_what_to_install(blocked: tuple[str, ...], argv: list[str], tmp_path: Path) -> None:
    out = _run(f"from giaoban.cli import main\nsys.exit(main({argv!r}))\n", blocked, tmp_path)
    assert out.returncode == 2, out.stderr
    assert HINT in out.stderr and "cần bộ công cụ thử tải" in out.stderr
    assert "Traceback" not in out.stderr and out.stdout == ""


def test_load_test_options_are_listed_without_aiortc(tmp_path: Path) -> None:
    out = _run(
        "from giaoban.cli import main\nsys.exit(main(['loadtest', 'media', '--help']))\n", LAB_DEPS, tmp_path
    )
    assert out.returncode == 0, out.stderr
    assert "usage: giaoban loadtest media" in out.stdout and "--sites" in out.stdout


def test_nothing_in_the_product_imports_the_lab() -> None:
    """Not even lazily inside a function: only cli.py reaches it (by name, in its load-test command)."""
    import ast

    package = ROOT / "giaoban"
    offenders = []
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(package).as_posix()
        if rel.startswith("lab/"):
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            if any(n == "giaoban.lab" or n.startswith("giaoban.lab.") for n in names):
                offenders.append(f"{rel}:{node.lineno}")
    assert offenders == []
