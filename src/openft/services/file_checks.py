"""`GET /v1/openft/files/{id}/check`: `openft data check --json` for an uploaded file, so the
dashboard shows the same report (token statistics, hyperparameters, OpenAI's price, the ETA
here) next to an upload. The checking code is the CLI's own (`openft.cli.data`), imported when a
check runs: it loads a tokenizer, which the server must not do at import time."""

from __future__ import annotations

import threading
from pathlib import Path

from openft.data.validate import check_example_count
from openft.services.files import FileService
from openft.services.models import ModelService
from openft.settings import Settings


class FileCheckService:
    def __init__(self, settings: Settings, files: FileService, models: ModelService):
        self.settings = settings
        self.files = files
        self.models = models
        self._tokenizers: dict[Path, object] = {}
        self._lock = threading.Lock()

    def check(self, organization_id: str, file_id: str, model: str | None) -> dict:
        from openft.cli import data as data_check

        row = self.files.get(organization_id, file_id)
        model = model or self.settings.default_base_model
        self.models.base_for(model)  # 404 model_not_found unless a job could train it
        target = data_check.resolve_model(self.settings, model)
        training = data_check.check_file(self._tokenizer(target.path), Path(row.path))
        if problem := check_example_count(training.stats.examples if training.stats else 0):
            training.errors.append(problem)
        report = data_check.build_report(self.settings, target, training, None, {})
        report["training"]["file"] = row.id  # not the path on the server's disk
        return report

    def _tokenizer(self, path: Path):
        with self._lock:
            if path not in self._tokenizers:
                from transformers import AutoTokenizer

                self._tokenizers[path] = AutoTokenizer.from_pretrained(path)
            return self._tokenizers[path]
