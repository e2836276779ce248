"""Where a model comes from: a SOURCE of `openft models add` → its files in a staging folder.

A SOURCE is a local Hugging Face folder (config, safetensors, tokenizer), a single `.gguf` file
(converted: models/gguf.py), or a hub id `org/name` (downloaded into the Hugging Face cache:
models/hub.py). A folder's files are copied (its owner may change or delete them later); the
hub cache's are hard-linked where the cache is on the same filesystem (its files never change
once written), so a model downloaded once is not stored twice. Only what loading needs is
taken: the configs, the tokenizer files, chat templates, the weights transformers loads, and
Python files when the model's own code is trusted.

`--chat-template FILE` replaces the template the tokenizer came with: it is written as the
folder's `chat_template.jinja` and the tokenizer's other copies are dropped, so training, the
data check and every engine read the same one.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from openft.models import hub
from openft.models.checks import weight_files
from openft.models.errors import ModelStoreError
from openft.models.gguf import convert_gguf

HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class Source:
    kind: Literal["folder", "gguf", "hub"]
    location: str  # an absolute path, or the hub id

    @property
    def default_name(self) -> str:
        """The model's name unless --name says otherwise: the folder's, the file's or the repository's."""
        path = Path(self.location)
        return path.stem if self.kind == "gguf" else path.name


def parse_source(text: str) -> Source:
    path = Path(text).expanduser()
    if path.is_dir():
        return Source("folder", str(path.resolve()))
    if path.is_file() and path.suffix == ".gguf":
        return Source("gguf", str(path.resolve()))
    if path.exists():
        raise ModelStoreError(f"{text} is neither a model folder nor a .gguf file.")
    if HUB_ID.match(text):
        return Source("hub", text)
    raise ModelStoreError(f"{text} is not a folder, a .gguf file or a Hugging Face hub id (org/name).")


def stage(source: Source, staging: Path, name: str, trust_remote_code: bool, chat_template: str | None) -> None:
    """Write the model's files into `staging`, a folder that does not exist yet."""
    if source.kind == "gguf":
        try:
            convert_gguf(Path(source.location), staging)
        except Exception as e:  # transformers' GGUF reader: an architecture it lacks, a damaged file
            first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ModelStoreError(f"{source.location} does not convert from GGUF: {first_line}") from e
    else:
        hub_files = source.kind == "hub"
        folder = hub.download(source.location, trust_remote_code) if hub_files else Path(source.location)
        weights = {path.name for path in weight_files(folder, name)}
        patterns = hub.FILES + (["*.py"] if trust_remote_code else [])
        staging.mkdir(parents=True)
        for path in sorted(folder.iterdir()):
            wanted = path.name in weights if path.suffix == ".safetensors" else _matches(path.name, patterns)
            if wanted and path.is_file():
                _place(path, staging / path.name, link=hub_files)
    if chat_template is not None:
        _replace_chat_template(staging, chat_template)


def _matches(name: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatch(name, pattern) for pattern in patterns)


def _place(source: Path, target: Path, link: bool) -> None:
    if link:
        try:
            os.link(source.resolve(), target)
            return
        except OSError:
            pass  # another filesystem, or one without hard links: copy
    shutil.copyfile(source, target)


def _replace_chat_template(folder: Path, template: str) -> None:
    (folder / "chat_template.json").unlink(missing_ok=True)
    config_path = folder / "tokenizer_config.json"
    if config_path.is_file():
        config = json.loads(config_path.read_text())
        if config.pop("chat_template", None) is not None:
            config_path.write_text(json.dumps(config, indent=2, ensure_ascii=False))
    (folder / "chat_template.jinja").write_text(template)
