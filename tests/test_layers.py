"""No import runs up the layers of the product package (docs/architecture.md, "Layers").

From low to high::

    base     text, types, errors, tabular, thresholds, settings, db, context, audit/
    org      org/                      media    media/  (beside org: neither imports the other)
    meetings meetings/
    schema   models (every table), migrations/, migrate, textcheck
    live     live/
    web      web/
    lab      lab/                      (only the CLI imports it: tests/test_without_lab.py)
    cli      cli

A module may import its own layer or a lower one, never a higher one, nor its sibling. Every
import counts — at the top, inside a function, and under ``if TYPE_CHECKING:`` too: a type-only
arrow up is still an arrow up. Every module of ``giaoban/`` must have a layer, so a new domain
folder (members/, cadres/, exams/ …) is placed here on purpose.
"""

from __future__ import annotations

import pytest

from tests.support.imports import PACKAGE, ROOT, imports, module_name, sources

# (layer, its rank, the modules or packages in it); a higher rank sits above.
LAYERS: tuple[tuple[str, int, tuple[str, ...]], ...] = (
    (
        "base",
        0,
        (
            "giaoban",
            "giaoban.text",
            "giaoban.types",
            "giaoban.errors",
            "giaoban.tabular",
            "giaoban.thresholds",
            "giaoban.settings",
            "giaoban.db",
            "giaoban.context",
            "giaoban.audit",
        ),
    ),
    ("org", 1, ("giaoban.org", "giaoban.demo")),
    ("media", 1, ("giaoban.media",)),
    ("meetings", 2, ("giaoban.meetings",)),
    ("schema", 3, ("giaoban.models", "giaoban.migrations", "giaoban.migrate", "giaoban.textcheck")),
    ("live", 4, ("giaoban.live",)),
    ("web", 5, ("giaoban.web",)),
    ("lab", 6, ("giaoban.lab",)),
    ("cli", 7, ("giaoban.cli",)),
)


def layer_of(module: str) -> tuple[str, int] | None:
    """The layer of a ``giaoban`` module (the longest prefix listed), None if it is not placed."""
    best: tuple[str, int, str] | None = None
    for name, rank, members in LAYERS:
        for member in members:
            inside = module == member or (member != "giaoban" and module.startswith(member + "."))
            if inside and (best is None or len(member) > len(best[2])):
                best = (name, rank, member)
    return (best[0], best[1]) if best else None


def violations() -> list[str]:
    found = []
    for path in sources(PACKAGE):
        module = module_name(path)
        here = layer_of(module)
        if here is None:
            found.append(f"{path.relative_to(ROOT)}: {module} has no layer (add it to LAYERS)")
            continue
        for line, target, _names in imports(path):
            if target != "giaoban" and not target.startswith("giaoban."):
                continue
            there = layer_of(target)
            if there is None or there == here:
                continue
            if there[1] > here[1] or (there[1] == here[1] and there[0] != here[0]):
                found.append(f"{path.relative_to(ROOT)}:{line} ({here[0]}) imports {target} ({there[0]})")
    return sorted(set(found))


def test_no_import_runs_up_the_layers() -> None:
    problems = violations()
    assert not problems, "a lower layer imports a higher one (or its sibling):\n" + "\n".join(problems)


@pytest.mark.parametrize(
    ("module", "layer"),
    [
        ("giaoban", "base"),
        ("giaoban.settings", "base"),
        ("giaoban.audit.log", "base"),
        ("giaoban.org.roster", "org"),
        ("giaoban.media.videoroom", "media"),
        ("giaoban.meetings.access", "meetings"),
        ("giaoban.migrations.env", "schema"),
        ("giaoban.live.stage", "live"),
        ("giaoban.web.api.meetings", "web"),
        ("giaoban.lab.loadrun", "lab"),
        ("giaoban.cli", "cli"),
        ("giaoban.meetingsx", None),
    ],
)
def test_every_module_has_its_layer(module: str, layer: str | None) -> None:
    placed = layer_of(module)
    assert (placed[0] if placed else None) == layer


def test_the_check_sees_what_it_checks() -> None:
    """The walk finds the modules and imports it judges, those inside functions and under
    ``TYPE_CHECKING`` included (a guard against a silent pass)."""
    modules = {module_name(p) for p in sources(PACKAGE)}
    assert {"giaoban.meetings.scheduling", "giaoban.live.hub", "giaoban.org.roster"} <= modules
    hub = {t for _l, t, _n in imports(PACKAGE / "live" / "hub.py")}
    assert "giaoban.meetings.access" in hub
    quality = {t for _l, t, _n in imports(PACKAGE / "live" / "quality.py")}
    assert "giaoban.live.hub" in quality  # under TYPE_CHECKING
    cli = {t for _l, t, _n in imports(PACKAGE / "cli.py")}
    assert "giaoban.migrate" in cli  # inside a function
