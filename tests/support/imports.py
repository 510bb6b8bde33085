"""Reading the imports of the product package from its source (the layer tests)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import giaoban

PACKAGE = Path(giaoban.__file__).parent
ROOT = PACKAGE.parent


def module_name(path: Path) -> str:
    """``giaoban/live/hub.py`` → ``giaoban.live.hub`` (a package's ``__init__`` is the package)."""
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


def sources(under: Path = PACKAGE) -> list[Path]:
    return sorted(p for p in under.rglob("*.py") if "__pycache__" not in p.parts)


def imports(path: Path) -> Iterator[tuple[int, str, list[str]]]:
    """(line, imported module, imported names) for every import in ``path`` — at the top, inside
    functions, classes and ``if TYPE_CHECKING:`` alike — relative ones resolved. ``from a import b``
    also yields ``a.b`` (it may be a module)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    here = module_name(path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, []
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package[: len(package) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            names = [a.name for a in node.names]
            yield node.lineno, base, names
            for name in names:  # "from giaoban.web import pages" imports the module giaoban.web.pages
                yield node.lineno, f"{base}.{name}", []
