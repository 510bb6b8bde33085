"""The web layer parses, authorizes, calls a domain function and renders: read from the imports.

- the JSON API (``giaoban/web/api``) never imports a pages module, and no pages module (nor the
  page machinery) imports the JSON API: both call the domain packages, never each other;
- the domain packages (everything outside ``giaoban/web``, but the CLI and the lab on top) never
  import ``giaoban.web``;
- no module anywhere in ``giaoban/`` imports another module's ``_private`` name.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import giaoban

PACKAGE = Path(giaoban.__file__).parent
ROOT = PACKAGE.parent


def _module(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


def _imports(path: Path) -> Iterator[tuple[int, str, list[str]]]:
    """(line, imported module, imported names) for every import in ``path``, relative ones resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    here = _module(path).split(".")
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


def _sources(under: Path) -> list[Path]:
    return sorted(p for p in under.rglob("*.py") if "__pycache__" not in p.parts)


def _is_page_module(module: str) -> bool:
    last = module.split(".")[-1]
    return module.startswith("giaoban.web.") and (last.startswith("pages") or last == "pagekit")


def test_api_and_pages_never_import_each_other() -> None:
    problems = []
    for path in _sources(PACKAGE / "web"):
        module = _module(path)
        for line, target, _names in _imports(path):
            if module.startswith("giaoban.web.api") and _is_page_module(target):
                problems.append(f"{path.relative_to(ROOT)}:{line} (API) imports {target}")
            if _is_page_module(module) and (
                target == "giaoban.web.api" or target.startswith("giaoban.web.api.")
            ):
                problems.append(f"{path.relative_to(ROOT)}:{line} (pages) imports {target}")
    assert not problems, "the API and the pages share domain functions, never each other:\n" + "\n".join(
        problems
    )


def test_domain_packages_never_import_the_web_layer() -> None:
    problems = []
    for path in _sources(PACKAGE):
        module = _module(path)
        # The CLI and the lab (which serves the app under load) sit on top of the web layer.
        if module.startswith(("giaoban.web", "giaoban.lab")) or module == "giaoban.cli":
            continue
        for line, target, _names in _imports(path):
            if target == "giaoban.web" or target.startswith("giaoban.web."):
                problems.append(f"{path.relative_to(ROOT)}:{line} imports {target}")
    assert not problems, "rules live below the web layer:\n" + "\n".join(problems)


def test_no_module_imports_another_modules_private_names() -> None:
    problems = []
    for path in _sources(PACKAGE):
        for line, target, names in _imports(path):
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            if private:
                problems.append(f"{path.relative_to(ROOT)}:{line} from {target} import {', '.join(private)}")
    assert not problems, (
        "make them public (and say what they are for) or keep them where they are used:\n"
        + ("\n".join(problems))
    )


def test_the_checks_see_what_they_check() -> None:
    """The walk finds the modules and imports it is meant to judge (a guard against a silent pass)."""
    web = {_module(p) for p in _sources(PACKAGE / "web")}
    assert {"giaoban.web.pagekit", "giaoban.web.pages", "giaoban.web.api.units"} <= web
    found = {t for _l, t, _n in _imports(PACKAGE / "web" / "pages_org.py")}
    assert "giaoban.org.scope" in found and "giaoban.web.pagekit" in found
