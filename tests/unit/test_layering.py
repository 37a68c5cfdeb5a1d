"""Package layering: shardproxy imports neither embed (image search plugs in through the
``shardproxy.services`` entry point) nor devkit (``dev`` plugs in through ``shardproxy.commands``);
embed does not import devkit."""

from __future__ import annotations

import ast
from importlib.metadata import entry_points
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def imported(package: str) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for path in (ROOT / package).rglob("*.py"):
        names = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
        out[str(path.relative_to(ROOT))] = names
    return out


@pytest.mark.parametrize(("package", "forbidden"), [("shardproxy", {"embed", "devkit"}), ("embed", {"devkit"})])
def test_no_upward_imports(package: str, forbidden: set[str]) -> None:
    bad = {f: sorted(n & forbidden) for f, n in imported(package).items() if n & forbidden}
    assert bad == {}


def test_plugins_are_declared() -> None:
    assert {ep.value for ep in entry_points(group="shardproxy.services")} == {"embed.service:register"}
    assert {ep.name: ep.value for ep in entry_points(group="shardproxy.commands")} == {"dev": "devkit.cli:dev_app"}
