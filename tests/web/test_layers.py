"""The web layer parses, authorizes, calls a domain function and renders: read from the imports.

- the JSON API (``giaoban/web/api``) never imports a pages module, and no pages module (nor the
  page machinery) imports the JSON API: both call the domain packages, never each other;
- (that no domain package imports ``giaoban.web`` is one of the layers of tests/test_layers.py);
- no module anywhere in ``giaoban/`` imports another module's ``_private`` name.
"""

from __future__ import annotations

from tests.support.imports import PACKAGE, ROOT, imports, module_name, sources


def _is_page_module(module: str) -> bool:
    last = module.split(".")[-1]
    return module.startswith("giaoban.web.") and (last.startswith("pages") or last == "pagekit")


def test_api_and_pages_never_import_each_other() -> None:
    problems = []
    for path in sources(PACKAGE / "web"):
        module = module_name(path)
        for line, target, _names in imports(path):
            if module.startswith("giaoban.web.api") and _is_page_module(target):
                problems.append(f"{path.relative_to(ROOT)}:{line} (API) imports {target}")
            if _is_page_module(module) and (
                target == "giaoban.web.api" or target.startswith("giaoban.web.api.")
            ):
                problems.append(f"{path.relative_to(ROOT)}:{line} (pages) imports {target}")
    assert not problems, "the API and the pages share domain functions, never each other:\n" + "\n".join(
        problems
    )


def test_no_module_imports_another_modules_private_names() -> None:
    problems = []
    for path in sources(PACKAGE):
        for line, target, names in imports(path):
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            if private:
                problems.append(f"{path.relative_to(ROOT)}:{line} from {target} import {', '.join(private)}")
    assert not problems, (
        "make them public (and say what they are for) or keep them where they are used:\n"
        + ("\n".join(problems))
    )


def test_the_checks_see_what_they_check() -> None:
    """The walk finds the modules and imports it is meant to judge (a guard against a silent pass)."""
    web = {module_name(p) for p in sources(PACKAGE / "web")}
    assert {"giaoban.web.pagekit", "giaoban.web.pages", "giaoban.web.api.units"} <= web
    found = {t for _l, t, _n in imports(PACKAGE / "web" / "pages_org.py")}
    assert "giaoban.org.scope" in found and "giaoban.web.pagekit" in found
