"""Dependencies point one way, couponsite <- pools <- coupons <- imports / api (the API's bulk
add runs through the import service, so api may use imports, never the reverse), and no
import inside a function hides a cycle (README: "One home for each rule")."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = {"couponsite": 0, "pools": 1, "coupons": 2, "imports": 3, "api": 4}  # api: bulk adds run as imports
COMPOSITION_ROOT = {Path("couponsite/urls.py")}  # names every app's pages, on purpose


def app_modules():
    for app in LAYERS:
        for path in sorted((ROOT / app).rglob("*.py")):
            if "migrations" not in path.parts:
                yield path.relative_to(ROOT)


def imported_apps(path: Path, tree: ast.AST):
    """(app imported, line, inside a function) for every import of a project app."""
    package = ".".join(path.with_suffix("").parts[:-1] if path.name != "__init__.py" else path.parent.parts)
    functions = {id(node) for fn in ast.walk(tree) if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef)
                 for node in ast.walk(fn) if node is not fn}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                names = [".".join([*base, node.module] if node.module else base)]
            else:
                names = [node.module]
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            if top in LAYERS:
                yield top, node.lineno, id(node) in functions


@pytest.mark.parametrize("path", list(app_modules()), ids=str)
def test_dependencies_point_one_way_and_no_local_import_hides_a_cycle(path):
    tree = ast.parse((ROOT / path).read_text())
    app = path.parts[0]
    for imported, line, local in imported_apps(path, tree):
        if path not in COMPOSITION_ROOT:
            assert imported == app or LAYERS[imported] < LAYERS[app], f"{path}:{line} imports {imported}"
        if local:
            # Django's AppConfig.ready() importing the app's own modules registers them.
            assert path.name == "apps.py" and imported == app, f"{path}:{line}: an import inside a function"


def test_the_check_sees_a_wrong_way_import(tmp_path):
    tree = ast.parse("from coupons.models import Coupon\n\ndef f():\n    from . import selectors\n")
    found = list(imported_apps(Path("pools/views.py"), tree))
    assert [(app, local) for app, _, local in found] == [("coupons", False), ("pools", True)]
