"""Which installed packages a Python grader may import: those of OpenAI's grader image
(GRADERS-GUIDE, image `2025-05-08`) that this environment has, with what they need to import.

They reach the sandbox as its only package folder (`/packages`), bound read-only: the server's
own packages (openft, torch, its database driver) are not in the sandbox at all."""

from __future__ import annotations

import functools
import re
from importlib import metadata
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement

GRADER_IMAGE = (
    "numpy",
    "scipy",
    "sympy",
    "pandas",
    "rapidfuzz",
    "scikit-learn",
    "rouge-score",
    "deepdiff",
    "jsonschema",
    "pydantic",
    "pyyaml",
    "nltk",
    "sqlparse",
    "rdkit",
    "scikit-bio",
    "ast-grep-py",
)


@functools.cache
def grader_packages() -> dict[str, Path]:
    """Top-level name (a package folder, a module file, a `.libs` or `.dist-info` folder) → its
    path, for each distribution of the image that is installed and each one they require."""
    found: dict[str, Path] = {}
    for distribution in _closure(GRADER_IMAGE):
        for file in distribution.files or ():
            top = file.parts[0]
            if top in ("..", "__pycache__") or top.endswith(".data"):
                continue
            found.setdefault(top, Path(distribution.locate_file(top)))
    return {name: path for name, path in found.items() if path.exists()}


def _closure(names: tuple[str, ...]) -> list[metadata.Distribution]:
    seen: dict[str, metadata.Distribution] = {}
    waiting = list(names)
    while waiting:
        key = _canonical(waiting.pop())
        if key in seen:
            continue
        try:
            distribution = metadata.distribution(key)
        except metadata.PackageNotFoundError:
            continue
        seen[key] = distribution
        for line in distribution.requires or ():
            try:
                requirement = Requirement(line)
            except InvalidRequirement:
                continue
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                waiting.append(requirement.name)
    return list(seen.values())


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()
