"""The dependency direction of docs/architecture.md, beyond what .importlinter states: no import
cycle crosses an app boundary (a module of one app that imports another app's module which,
directly or through others, imports it back). Function-level imports count like top-level ones,
so a lazy import cannot hide a back-edge."""
from __future__ import annotations

import configparser

import grimp

from tests.conftest import REPO_ROOT


def _packages() -> list[str]:
    config = configparser.ConfigParser()
    config.read(REPO_ROOT / ".importlinter")
    return config["importlinter"]["root_packages"].split()


def test_every_project_package_is_under_the_contracts():
    # A new app left out of root_packages would escape every contract without a word.
    on_disk = {p.parent.name for p in REPO_ROOT.glob("*/__init__.py")} - {"tests", "benchmarks"}
    assert on_disk == set(_packages())


def test_no_import_cycle_crosses_an_app_boundary():
    graph = grimp.build_graph(*_packages())
    app = lambda module: module.split(".")[0]  # noqa: E731
    cycles = []
    for module in sorted(graph.modules):
        for imported in graph.find_modules_directly_imported_by(module):
            if app(imported) != app(module):
                back = graph.find_shortest_chain(importer=imported, imported=module)
                if back:
                    cycles.append(f"{module} -> {' -> '.join(back)}")
    assert cycles == []
