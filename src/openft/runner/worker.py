"""The worker: claims a job, runs the trainer subprocess, and turns its stdout events into job
events, checkpoints and, at the end, a servable fine-tuned model.

The trainer writes one JSON object per line (see trainer/sft.py). The job's status changes go
through runner/jobs.py (claim, renew, release, succeed, fail). Everything the worker learns
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
from dataclasses import asdict, replace
from pathlib import Path

from sqlalchemy import func, select

from openft import ids
from openft.memory import HostMemory
from openft.models.store import register_fine_tune
from openft.runner import jobs, workers
from openft.runner.artifacts import push_adapter, push_checkpoint, restore_checkpoint
from openft.runner.launch import start_trainer, stop_trainer
from openft.runner.planning import job_plan
from openft.runner.spec import job_dir, read_lora, resolve, write_spec
from openft.runner.throughput import record_job_throughput
from openft.settings import Settings
from openft.store.db import Database
from openft.store.events import add_event
from openft.store.files import FileStore
from openft.store.tables import CheckpointRow, EventRow, JobRow
from openft.trainer.plan import Device, Plan, memory_needed

log = logging.getLogger("openft.worker")

HEARTBEAT_SECONDS = 2.0
METRIC_COLUMNS = ("step", "train_loss", "train_accuracy", "valid_loss", "valid_mean_token_accuracy")
# A DPO job's CSV adds the preference metrics (trainer/dpo.py), after OpenAI's columns.
DPO_METRIC_COLUMNS = tuple(
    f"{split}_rewards_{name}"
    for split in ("train", "valid")
    for name in ("chosen", "rejected", "margins", "accuracies")
)


class Worker:
    def __init__(self, settings: Settings, db: Database):
        self.settings = settings
        self.db = db
        self.files = FileStore(settings, db)
        self.storage = self.files.storage
        self.worker_id = "worker-" + ids.random_token(12)
        self._device: Device | None = None
        self._host_memory: HostMemory | None = None
        self._advertised_at = 0.0
        # What the claim being decided would hold, or waits for (`fits`).
        self._claiming = self._wanted = 0

    @property
    def device(self) -> Device:
        """What this worker advertises and trains on (asked of torch in a child process, once)."""
        if self._device is None:
            self._probe()
        return self._device

    @property
    def host_memory(self) -> HostMemory:
        """This worker's record of its trainer's memory on the host (openft/memory.py)."""
        if self._host_memory is None:
            self._probe()
        return self._host_memory

    def _probe(self) -> None:
        host = workers.host_device(self.settings)
        self._device = workers.capped(host, self.settings)
        # A trainer that runs under Ray holds nothing of this host.
        directory = None if self.settings.ray_address else self.settings.memory_dir
        self._host_memory = HostMemory(directory, "trainer", host.kind, host.memory)

    def room(self) -> Device:
        """The device as far as the other processes of the host leave it to a job now."""
        return replace(self.device, memory=max(0, min(self.device.memory, self.host_memory.room())))

    def run_forever(self, stop: threading.Event) -> None:
        workers.advertise(self.db, self.worker_id, self.device)  # the device is probed now (seconds), once
        self._advertised_at = time.time()
        try:
            while not stop.is_set():
                try:
                    self.heartbeat()
                    if not self.run_once(stop):
                        stop.wait(self.settings.worker_poll_seconds)
                except Exception:
                    log.exception("worker loop error")
                    stop.wait(self.settings.worker_poll_seconds)
        finally:
            workers.remove(self.db, self.worker_id)
            self.host_memory.close()

    def heartbeat(self) -> None:
        """Advertise this worker's device, and that it is alive (at most every HEARTBEAT_SECONDS),
        once the device is known: probing it takes seconds, which no lease renewal may wait for."""
        if self._device is not None and time.time() - self._advertised_at >= HEARTBEAT_SECONDS:
            workers.advertise(self.db, self.worker_id, self.device)
            self._advertised_at = time.time()

    def run_once(self, stop: threading.Event | None = None) -> bool:
        """Claim and run one job that fits this worker; False when there was none."""
        jobs.promote_validated(self.db)
        with self.host_memory.deciding():  # the room a claim plans into is the room it holds
            self._claiming = self._wanted = 0
            job = jobs.claim(self.db, self.worker_id, self.settings.lease_seconds, fits=self.fits)
            self.host_memory.record(self._claiming, wanted=0 if job else self._wanted)
        if job is None:
            return False
        try:
            JobRun(self, job).run(stop or threading.Event())
        finally:
            self.host_memory.record(0)
        return True

    def fits(self, job: JobRow) -> bool:
        """Whether this worker can train `job` now: its base is in this host's model store and its
        memory plan fits what the other processes of the host leave of this worker's device. A
        job that would fit the device if they held less is noted as wanted (openft/memory.py:
        an idle engine makes room). A job from before plans were made fits."""
        if job.n_examples is None:
            return True
        planned = self.plan(job, self.room())
        if planned is not None and planned.fits:
            self._claiming = planned.estimate
            return True
        whole = self.plan(job, self.device)
        if whole is not None and whole.fits:
            self._wanted = max(self._wanted, memory_needed(whole.estimate))
        return False

    def plan(self, job: JobRow, device: Device) -> Plan | None:
        return job_plan(
            self.settings,
            job.base_model,
            job.n_examples,
            job.example_tokens,
            job.hyperparameters,
            device,
            method=job.method,
        )


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
            jobs.fail(self.db, self.job.id, f"{type(error).__name__}: {error}")

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
        hyperparameters, n_examples, example_tokens = resolve(job, training_path)
        initial_adapter = self._initial_adapter()
        with self.worker.host_memory.deciding():
            planned = job_plan(
                self.settings,
                job.base_model,
                n_examples,
                example_tokens,
                job.hyperparameters,
                self.worker.room(),
                initial_adapter and read_lora(initial_adapter),
                method=job.method,
            )
            if planned is not None and planned.fits:
                self.worker.host_memory.record(planned.estimate)
        if planned is None or not planned.fits:
            problem = planned.problem if planned else f"the base model {job.base_model} is not on this worker's host"
            jobs.fail(self.db, job.id, f"This job cannot train here: {problem}.")
            return
        with self.db.session() as session:
            row = session.get(JobRow, job.seq)
            row.hyperparameters = {**job.hyperparameters, **asdict(hyperparameters)}  # "auto" → numbers
            row.plan = planned.to_dict()
            add_event(session, job.id, f"Training plan: {planned.describe()} (estimated peak, of this worker's budget)")
        spec_path = write_spec(
            self.settings, job, hyperparameters, training_path, validation_path, planned, initial_adapter
        )
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
                self.worker.heartbeat()
                jobs.promote_validated(self.db)
                status = jobs.renew(self.db, job.id, self.worker.worker_id, self.settings.lease_seconds)
                if status != "running" or stop.is_set():
                    # Cancelled, taken over, or this worker is shutting down; in the last case
                    # the job goes back to the queue and resumes from its last checkpoint.
                    stop_trainer(self.settings, process, spec_path, job.attempts)
                    if stop.is_set():
                        jobs.release(self.db, job.id, self.worker.worker_id)
                    return
        process.wait()
        if finished:
            return
        if reported_error is None and process.returncode < 0 and job.attempts < self.settings.max_attempts:
            # Killed by a signal, not failed on its own: start again from the last checkpoint.
            log.warning("trainer of %s killed (signal %d); requeueing", job.id, -process.returncode)
            jobs.release(self.db, job.id, self.worker.worker_id)
            return
        message = reported_error or f"The trainer stopped without a result (exit code {process.returncode})."
        jobs.fail(self.db, job.id, message)

    @contextmanager
    def _renewing(self) -> Iterator[None]:
        """Keep renewing the lease while a slow call (an upload, a download) holds up the loop
        that renews it, so that no other worker takes the job meanwhile."""
        done = threading.Event()

        def renew() -> None:
            while not done.wait(HEARTBEAT_SECONDS):
                jobs.renew(self.db, self.job.id, self.worker.worker_id, self.settings.lease_seconds)
                self.worker.heartbeat()

        thread = threading.Thread(target=renew, name=f"lease-{self.job.id}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join()

    def _initial_adapter(self) -> Path | None:
        """The `ft:` model's adapter the job goes on training, on this host (fetched once)."""
        key = self.job.initial_adapter_key
        if key is None:
            return None
        with self._renewing():
            return Path(self.worker.storage.fetch(key, self.settings.cache_dir))

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
        if event.get("train_rewards_margins") is not None:
            message += f", reward margin={event['train_rewards_margins']:.2f}"
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
            name = job.planned_model_name if final else ids.checkpoint_model_name(job.planned_model_name, step)
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
                register_fine_tune(session, self.settings, job, name, adapter)
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
        succeeded = jobs.succeed(self.db, self.settings, job.id, adapter, event["trained_tokens"], results.id)
        if succeeded and self.first_step == 1:  # a resumed run's timing would not cover all its tokens
            record_job_throughput(
                self.settings.data_dir, job.base_model, event["trained_tokens"], time.time() - self.started
            )

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
        extra = DPO_METRIC_COLUMNS if self.job.method == "dpo" else ()
        writer.writerow(METRIC_COLUMNS + extra)
        for data in rows:
            writer.writerow(
                [
                    data["step"],
                    data["train_loss"],
                    data.get("train_mean_token_accuracy", ""),
                    _blank_if_none(data.get("valid_loss")),
                    _blank_if_none(data.get("valid_mean_token_accuracy")),
                    *(_blank_if_none(data.get(column)) for column in extra),
                ]
            )
        return buffer.getvalue().encode()


def _pump(stream, lines: queue.Queue) -> None:
    for line in stream:
        lines.put(line.strip())
    lines.put(None)


def _blank_if_none(value) -> object:
    return "" if value is None else value
