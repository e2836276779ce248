"""The worker: claims a job, runs the trainer subprocess, and turns its stdout events into job
events, checkpoints and, at the end, a servable fine-tuned model.

The trainer writes one JSON object per line (see trainer/sft.py). Everything the worker learns
is written to the store at once, and every checkpoint and adapter goes to the artifact storage
(runner/artifacts.py), so a restarted worker, or one on another host, needs only the store and
the storage.
"""

import base64
import csv
import io
import json
import logging
import queue
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

from sqlalchemy import func, select

from openft import ids
from openft.data.throughput import record_job_throughput
from openft.runner import queue as job_queue
from openft.runner.artifacts import push_adapter, push_checkpoint, restore_checkpoint
from openft.runner.launch import start_trainer, stop_trainer
from openft.runner.spec import job_dir, resolve, write_spec
from openft.services.files import FileService
from openft.settings import Settings
from openft.store.db import Database
from openft.store.events import add_event
from openft.store.organizations import organization_name
from openft.store.tables import CheckpointRow, EventRow, JobRow, ModelRow

log = logging.getLogger("openft.worker")

HEARTBEAT_SECONDS = 2.0
METRIC_COLUMNS = ("step", "train_loss", "train_accuracy", "valid_loss", "valid_mean_token_accuracy")


class Worker:
    def __init__(self, settings: Settings, db: Database):
        self.settings = settings
        self.db = db
        self.files = FileService(settings, db)
        self.storage = self.files.storage
        self.worker_id = "worker-" + ids.random_token(12)

    def run_forever(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                if not self.run_once(stop):
                    stop.wait(self.settings.worker_poll_seconds)
            except Exception:
                log.exception("worker loop error")
                stop.wait(self.settings.worker_poll_seconds)

    def run_once(self, stop: threading.Event | None = None) -> bool:
        """Claim and run one job; False when the queue was empty."""
        job_queue.promote_validated(self.db)
        job = job_queue.claim(self.db, self.worker_id, self.settings.lease_seconds)
        if job is None:
            return False
        JobRun(self, job).run(stop or threading.Event())
        return True


class JobRun:
    def __init__(self, worker: Worker, job: JobRow):
        self.worker = worker
        self.settings = worker.settings
        self.db = worker.db
        self.job = job
        self.started = time.time()
        self.first_step: int | None = None
        self.total_steps: int | None = None
        self.recorded_steps = self._recorded_metric_steps()

    def run(self, stop: threading.Event) -> None:
        try:
            self._train(stop)
        except Exception as error:
            log.exception("job %s failed", self.job.id)
            self._fail(f"{type(error).__name__}: {error}")

    def _train(self, stop: threading.Event) -> None:
        job = self.job
        directory = job_dir(self.settings, job.id)
        files = self.worker.files
        with self._renewing():  # downloads from a remote storage may outlast the lease
            training_path = files.fetch(files.get(job.organization_id, job.training_file), directory)
            validation_path = (
                files.fetch(files.get(job.organization_id, job.validation_file), directory)
                if job.validation_file
                else None
            )
            self._restore_last_checkpoint(directory)
        hyperparameters = resolve(job, training_path)
        with self.db.session() as session:
            session.get(JobRow, job.seq).hyperparameters = asdict(hyperparameters)
        spec_path = write_spec(self.settings, job, hyperparameters, training_path, validation_path)
        process = start_trainer(self.settings, spec_path, directory / "trainer.log", job.attempts)
        lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=_pump, args=(process.stdout, lines), daemon=True).start()

        finished = False
        reported_error = None
        next_heartbeat = 0.0
        while True:
            try:
                line = lines.get(timeout=0.2)
            except queue.Empty:
                line = ""
            if line is None:
                break
            if line.startswith("{"):
                event = json.loads(line)
                if event["type"] == "error":
                    reported_error = event["message"]
                finished |= self._record(event)
            if time.time() >= next_heartbeat:
                next_heartbeat = time.time() + HEARTBEAT_SECONDS
                job_queue.promote_validated(self.db)
                status = job_queue.renew(self.db, job.id, self.worker.worker_id, self.settings.lease_seconds)
                if status != "running" or stop.is_set():
                    # Cancelled, taken over, or this worker is shutting down; in the last case
                    # the job goes back to the queue and resumes from its last checkpoint.
                    stop_trainer(self.settings, process, spec_path, job.attempts)
                    if stop.is_set():
                        job_queue.release(self.db, job.id, self.worker.worker_id)
                    return
        process.wait()
        if finished:
            return
        if reported_error is None and process.returncode < 0 and job.attempts < self.settings.max_attempts:
            # Killed by a signal, not failed on its own: start again from the last checkpoint.
            log.warning("trainer of %s killed (signal %d); requeueing", job.id, -process.returncode)
            job_queue.release(self.db, job.id, self.worker.worker_id)
            return
        self._fail(reported_error or f"The trainer stopped without a result (exit code {process.returncode}).")

    @contextmanager
    def _renewing(self) -> Iterator[None]:
        """Keep renewing the lease while a slow call (an upload, a download) holds up the loop
        that renews it, so that no other worker takes the job meanwhile."""
        done = threading.Event()

        def renew() -> None:
            while not done.wait(HEARTBEAT_SECONDS):
                job_queue.renew(self.db, self.job.id, self.worker.worker_id, self.settings.lease_seconds)

        thread = threading.Thread(target=renew, name=f"lease-{self.job.id}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join()

    def _restore_last_checkpoint(self, directory: Path) -> None:
        """A job resumed on a host that has not run it before starts from its last checkpoint."""
        last = select(func.max(CheckpointRow.step_number)).where(CheckpointRow.job_id == self.job.id)
        with self.db.session() as session:
            step = session.scalar(last)
        if step is not None:
            checkpoints = directory / "out" / "checkpoints"
            restore_checkpoint(self.worker.storage, self.job.id, step, checkpoints, directory / "fetched")

    def _record(self, event: dict) -> bool:
        kind = event["type"]
        if kind == "started":
            self.total_steps = event["total_steps"]
            if event.get("start_step"):
                with self.db.session() as session:
                    add_event(session, self.job.id, f"Resumed from the checkpoint at step {event['start_step']}")
        elif kind == "metrics":
            self._record_metrics(event)
        elif kind == "checkpoint":
            self._record_checkpoint(event)
        elif kind == "done":
            self._succeed(event)
            return True
        return False

    def _record_metrics(self, event: dict) -> None:
        step, total = event["step"], event["total_steps"]
        if step in self.recorded_steps:
            return  # replayed after a resume: the first attempt already recorded it
        self.recorded_steps.add(step)
        if self.first_step is None:
            self.first_step = step
            self.started = time.time()
        message = f"Step {step}/{total}: training loss={event['train_loss']:.2f}"
        if event.get("valid_loss") is not None:
            message += f", validation loss={event['valid_loss']:.2f}"
        if event.get("full_valid_loss") is not None:
            message += f", full validation loss={event['full_valid_loss']:.2f}"
        data = {key: value for key, value in event.items() if key not in ("type", "epoch", "tokens")}
        steps_done = step - self.first_step + 1
        seconds_per_step = (time.time() - self.started) / steps_done
        with self.db.session() as session:
            row = session.get(JobRow, self.job.seq, with_for_update=True)
            if row.status != "running":
                return  # cancelled while this line was in flight: the job's story has ended
            add_event(session, self.job.id, message, type="metrics", data=data)
            row.estimated_finish = int(time.time() + seconds_per_step * (total - step))

    def _record_checkpoint(self, event: dict) -> None:
        job = self.job
        step = event["step"]
        with self._renewing():
            adapter = push_checkpoint(self.worker.storage, job.id, step, Path(event["path"]).parent)
        with self.db.session() as session:
            if session.get(JobRow, job.seq, with_for_update=True).status != "running":
                return
            exists = session.scalar(
                select(CheckpointRow).where(CheckpointRow.job_id == job.id, CheckpointRow.step_number == step)
            )
            if exists:
                return
            final = step == self.total_steps
            name = job.planned_model_name if final else _checkpoint_model_name(job, step)
            metrics = {"step": step, **event.get("metrics", {})}
            session.add(
                CheckpointRow(
                    id=ids.checkpoint_id(),
                    job_id=job.id,
                    created_at=int(time.time()),
                    fine_tuned_model_checkpoint=name,
                    step_number=step,
                    metrics=metrics,
                )
            )
            if not final:
                _register_model(session, self.settings, job, name, adapter)
            add_event(session, job.id, f"Checkpoint created at step {step} with Snapshot ID: {name}")

    def _succeed(self, event: dict) -> None:
        job = self.job
        results = self.worker.files.store(
            job.organization_id,
            "step_metrics.csv",
            "fine-tune-results",
            # OpenAI serves result files base64-encoded; the cookbook decodes them.
            base64.b64encode(self._step_metrics_csv()),
            status="processed",
        )
        with self._renewing():
            adapter = push_adapter(self.worker.storage, job.id, Path(event["adapter_path"]))
        with self.db.session() as session:
            row = session.get(JobRow, job.seq, with_for_update=True)
            if row.status != "running":
                return
            _register_model(session, self.settings, job, job.planned_model_name, adapter)
            row.status = "succeeded"
            row.fine_tuned_model = job.planned_model_name
            row.trained_tokens = event["trained_tokens"]
            row.finished_at = int(time.time())
            row.estimated_finish = None
            row.result_files = [results.id]
            row.lease_owner = None
            add_event(session, job.id, f"New fine-tuned model created: {job.planned_model_name}")
            add_event(session, job.id, "The job has successfully completed")
        if self.first_step == 1:  # a resumed run's timing would not cover all its tokens
            record_job_throughput(
                self.settings.data_dir, job.base_model, event["trained_tokens"], time.time() - self.started
            )

    def _fail(self, message: str) -> None:
        with self.db.session() as session:
            row = session.get(JobRow, self.job.seq, with_for_update=True)
            if row.status != "running":
                return
            row.status = "failed"
            row.finished_at = int(time.time())
            row.estimated_finish = None
            row.lease_owner = None
            row.error = {"code": "training_failed", "message": message, "param": None}
            add_event(session, self.job.id, f"Fine-tuning job failed: {message}", level="error")

    def _recorded_metric_steps(self) -> set[int]:
        with self.db.session() as session:
            steps = session.scalars(
                select(EventRow.data).where(EventRow.job_id == self.job.id, EventRow.type == "metrics")
            )
            return {data["step"] for data in steps if data}

    def _step_metrics_csv(self) -> bytes:
        with self.db.session() as session:
            rows = list(
                session.scalars(
                    select(EventRow.data)
                    .where(EventRow.job_id == self.job.id, EventRow.type == "metrics")
                    .order_by(EventRow.seq)
                )
            )
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(METRIC_COLUMNS)
        for data in rows:
            writer.writerow(
                [
                    data["step"],
                    data["train_loss"],
                    data.get("train_mean_token_accuracy", ""),
                    _blank_if_none(data.get("valid_loss")),
                    _blank_if_none(data.get("valid_mean_token_accuracy")),
                ]
            )
        return buffer.getvalue().encode()


def _pump(stream, lines: queue.Queue) -> None:
    for line in stream:
        lines.put(line.strip())
    lines.put(None)


def _blank_if_none(value) -> object:
    return "" if value is None else value


def _checkpoint_model_name(job: JobRow, step: int) -> str:
    base, _, rest = job.planned_model_name.removeprefix("ft:").partition(":")
    org, suffix, _ = rest.split(":")
    return f"ft:{base}:{org}:{suffix}:{ids.random_token(8)}:ckpt-step-{step}"


def _register_model(session, settings: Settings, job: JobRow, name: str, adapter_key: str) -> None:
    row = session.scalar(select(ModelRow).where(ModelRow.id == name))
    if row is None:
        owner = organization_name(session, job.organization_id, settings.organization)
        row = ModelRow(
            id=name,
            created=int(time.time()),
            owned_by=owner,
            base_model=job.base_model,
            organization_id=job.organization_id,
        )
        session.add(row)
    row.adapter_key = adapter_key
    row.job_id = job.id
