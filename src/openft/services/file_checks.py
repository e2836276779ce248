"""`GET /v1/openft/files/{id}/check`: the report of `openft data check --json` (`openft.data.check`)
for an uploaded file, so the dashboard shows the same token statistics, hyperparameters and
OpenAI price next to an upload. The file is read as a stream from the storage, wherever that is.

Its `eta` is null: the speed behind an ETA is measured by a training benchmark, which the API
process does not run (`openft data check` does, once per host). The tokenizer is loaded on the
first check of each model, never at import: the server must start without transformers.
"""

from __future__ import annotations

import threading
from pathlib import Path

from openft.data.check import build_report, check_lines, resolve_model
from openft.data.validate import check_example_count
from openft.models.facts import trusts_remote_code
from openft.services.files import FileService
from openft.services.models import ModelService
from openft.settings import Settings
from openft.trainer.spec import MAX_LENGTH


class FileCheckService:
    def __init__(self, settings: Settings, files: FileService, models: ModelService):
        self.settings = settings
        self.files = files
        self.models = models
        self._tokenizers: dict[Path, object] = {}
        self._lock = threading.Lock()

    def check(self, organization_id: str, file_id: str, model: str | None) -> dict:
        row = self.files.get(organization_id, file_id)
        model = model or self.settings.default_base_model
        target = resolve_model(model, self.models.base_for(model))  # 404 model_not_found unless a job could train it
        tokenizer = self._tokenizer(self.settings.models_dir / target.model)
        with self.files.open(row) as lines:
            training = check_lines(tokenizer, lines, row.id, MAX_LENGTH)  # named by its id, never a path
        if problem := check_example_count(training.stats.examples if training.stats else 0):
            training.errors.append(problem)
        # Like the ETA, a memory plan is for the host that would train, which this is not.
        return {**build_report(target, training, None, {}, MAX_LENGTH, speed=None), "plan": None}

    def _tokenizer(self, path: Path):
        with self._lock:
            if path not in self._tokenizers:
                from transformers import AutoTokenizer

                self._tokenizers[path] = AutoTokenizer.from_pretrained(path, trust_remote_code=trusts_remote_code(path))
            return self._tokenizers[path]
