"""A hub id (`org/name`) → a folder of its files in the local Hugging Face cache.

`huggingface_hub.snapshot_download` does the work, so everything it does holds: the cache is the
one other tools share (`HF_HOME`, `HF_HUB_CACHE`), an interrupted download resumes, `HF_TOKEN`
(or `hf auth login`) opens gated models, and with `HF_HUB_OFFLINE=1` or without a network it
answers from the cache. Only the files that loading needs are fetched: safetensors weights,
configs, tokenizer files and chat templates; Python files only for `--trust-remote-code`, and
never `original/` or `consolidated.*` (second copies of the weights some repositories carry).

The download's progress shows as rich bars: huggingface_hub takes any tqdm-like class, and
`_RichBar` is one, drawing on a rich `Progress` (one live display, whatever the number of bars).
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

from openft.models.errors import ModelStoreError

FILES = ["*.json", "*.safetensors", "*.jinja", "*.model", "*.txt", "*.tiktoken"]
NOT_FILES = ["original/*", "consolidated.*"]


def download(repo_id: str, trust_remote_code: bool) -> Path:
    """The hub model's files, downloaded into (or found in) the local cache; one-line errors."""
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        IncompleteSnapshotError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
    )

    patterns = FILES + (["*.py"] if trust_remote_code else [])
    console = Console(stderr=True)
    try:
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=True,
            disable=not console.is_terminal,  # a log file gets the outcome, not the bars
        ) as progress:
            _RichBar.progress = progress
            folder = snapshot_download(repo_id, allow_patterns=patterns, ignore_patterns=NOT_FILES, tqdm_class=_RichBar)
    except GatedRepoError as e:
        raise ModelStoreError(
            f"{repo_id} is gated: accept its terms on huggingface.co, then set HF_TOKEN to a token of that account."
        ) from e
    except RepositoryNotFoundError as e:
        raise ModelStoreError(f"{repo_id} is not a model on the Hugging Face hub (private? set HF_TOKEN).") from e
    except (LocalEntryNotFoundError, IncompleteSnapshotError) as e:
        why = "HF_HUB_OFFLINE is set" if constants.HF_HUB_OFFLINE else "the hub cannot be reached"
        raise ModelStoreError(
            f"{repo_id} is not in the local Hugging Face cache ({constants.HF_HUB_CACHE}) and {why}: "
            "download it on a machine with network access, or add it from a folder or a .gguf file."
        ) from e
    except HfHubHTTPError as e:
        raise ModelStoreError(f"Downloading {repo_id} failed: {str(e).splitlines()[0]}") from e
    finally:
        _RichBar.progress = None
    return Path(folder)


class _RichBar:
    """The part of tqdm's interface that huggingface_hub's bars use, as a task of a rich
    `Progress`: counts, totals that grow while files are discovered, descriptions."""

    progress: Progress | None = None

    def __init__(self, iterable=None, desc=None, total=None, initial=0, unit: str = "it", **_):
        self.iterable = iterable
        self.n = initial
        self._total = total
        self.desc = desc or ""
        self.format_dict = {"rate": None}
        # Bytes are shown; the count of files fetched is not (the bytes say more).
        shown = self.progress is not None and unit == "B"
        self._task = self.progress.add_task(self.desc, total=total or None, completed=initial) if shown else None

    @property
    def total(self):
        return self._total

    @total.setter
    def total(self, value) -> None:
        self._total = value
        self._update(total=value or None)

    def __iter__(self):
        for item in self.iterable or ():
            yield item
            self.update(1)

    def __enter__(self):
        return self

    def __exit__(self, *_) -> None:
        self.close()

    def update(self, n: float | None = 1) -> None:
        self.n += n or 0
        self._update(completed=self.n)

    def set_description(self, desc: str | None = None, refresh: bool = True) -> None:
        self.desc = desc or ""
        self._update(description=self.desc)

    set_description_str = set_description

    def set_postfix_str(self, *_, **__) -> None:
        pass  # rich computes the speed itself

    def refresh(self) -> None:
        pass

    def close(self) -> None:
        pass  # the Progress ends with the download (transient: the bars leave the screen)

    def _update(self, **fields) -> None:
        if self.progress is not None and self._task is not None:
            self.progress.update(self._task, **fields)
