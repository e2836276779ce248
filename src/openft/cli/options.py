"""Typer options that several `openft` commands share, declared once."""

from pathlib import Path
from typing import Annotated

import typer

DEFAULT_DATA_DIR = Path(".openft")

DataDir = Annotated[
    Path,
    typer.Option("--data-dir", envvar="OPENFT_DATA_DIR", help="Where openft keeps its database, files and models."),
]
