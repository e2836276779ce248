"""The packages of openft import in one direction only (docs/design.md, "Layers"): a module may
import its own package and the layers before its own, never a layer after it or a neighbour in
its own layer. Imports inside functions count: a lazy import is still a dependency."""

import ast
from pathlib import Path

import openft

LAYERS = [
    {"settings", "ids", "errors", "hardware", "processes", "cores", "memory", "protocol"},
    {"data", "graders"},
    {"storage"},
    {"store"},
    {"models"},
    {"trainer", "inference", "eval", "export"},
    {"runner"},
    {"services"},
    {"server"},
    {"cli"},
    {"__main__"},
]
SOURCE = Path(openft.__file__).parent


def layer_of(package: str) -> int:
    return next(n for n, layer in enumerate(LAYERS) if package in layer)


def imported_packages(path: Path) -> set[str]:
    packages = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        packages |= {name.split(".")[1] for name in names if name.startswith("openft.")}
    return packages


def test_every_package_is_in_a_layer():
    packages = {path.relative_to(SOURCE).parts[0].removesuffix(".py") for path in SOURCE.rglob("*.py")}
    assert packages - set().union(*LAYERS) == {"__init__"}


def test_imports_go_one_way():
    wrong = []
    for path in sorted(SOURCE.rglob("*.py")):
        own = path.relative_to(SOURCE).parts[0].removesuffix(".py")
        if own == "__init__":
            continue
        for package in imported_packages(path) - {own}:
            if layer_of(package) >= layer_of(own):
                wrong.append(f"{path.relative_to(SOURCE)} imports openft.{package}")
    assert not wrong, "\n".join(wrong)
