"""Exports as background work (`POST /v1/openft/exports`): queued in the database, run by the
exporters of the hosts, at most `OPENFT_EXPORTS_PER_HOST` at once on each host.

An `Exporter` runs beside each worker (`openft serve` unless --no-worker, and `openft worker`).
It claims an export (runner/exports.py) only while it holds one of its host's export slots: a
file `slot-N` of `<host dir>/exports/`, exclusively `flock`ed for as long as the export runs, so
the limit holds across every process of the host, and a dead process's slot is free again (the
kernel drops its lock). Each export runs `python -m openft.export spec.json` (openft/export) in a
scratch folder of its own, `<data dir>/exporting/<export id>/`: the export process writes the
folder under a hidden name and renames it whole; the exporter writes its tar beside it and
publishes it to the artifact storage as `exports/<export id>/<name>.tar` (a rename on a local
directory, one PUT on an object store) before it marks the export succeeded. Any server then
sends it, for as long as the export is not deleted.

After a crash: the export process dies with its exporter (PR_SET_PDEATHSIG), the export's lease
runs out and an exporter claims it again; an export whose process was killed alone (out of
memory) goes back to the queue at once. Either way it fails once started `OPENFT_MAX_ATTEMPTS`
times. What a dead attempt left in its scratch folder is removed before the next attempt runs,
and when an exporter starts, with the folders of every export that nobody runs (`sweep`).
"""

from __future__ import annotations

import fcntl
import json
import logging
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from openft import ids
from openft.export.archive import write_tar
from openft.export.spec import ExportDetails
from openft.processes import die_with_parent
from openft.runner import exports
from openft.settings import Settings
from openft.storage import Storage
from openft.store.db import Database
from openft.store.tables import ExportRow

log = logging.getLogger("openft.exporter")

HEARTBEAT_SECONDS = 2.0
SLOT_WAIT_SECONDS = 0.5


def result_key(export_id: str, filename: str) -> str:
    """Where an export's tar is published in the artifact storage."""
    return f"{results_key(export_id)}/{filename}"


def results_key(export_id: str) -> str:
    return f"exports/{export_id}"


class ExportFailed(Exception):
    """The export process ended without its folder. `code`: `unsupported_export` (the model cannot
    have the format; the message is for the user) or `export_failed`."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


class ExportKilled(Exception):
    """The export process was killed by a signal (out of memory, an operator): it may run again."""


class ExportStopped(Exception):
    """The exporter stopped the export process: the export was deleted or taken over, or the
    exporter is stopping."""


class HostSlots:
    """The export slots of a host: `limit` files in `directory`, each held by an exclusive flock."""

    def __init__(self, directory: Path, limit: int):
        self.directory, self.limit = directory, limit

    def take(self) -> IO | None:
        """A free slot, held until the returned file is closed; None if every slot is held."""
        self.directory.mkdir(parents=True, exist_ok=True)
        for n in range(self.limit):
            slot = open(self.directory / f"slot-{n}", "a")
            try:
                fcntl.flock(slot, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return slot
            except BlockingIOError:
                slot.close()
        return None

    def wait(self) -> IO:
        """A slot, once one is free."""
        while (slot := self.take()) is None:
            time.sleep(SLOT_WAIT_SECONDS)
        return slot


def run_export(
    settings: Settings,
    storage: Storage,
    details: ExportDetails,
    output: Path,
    scratch: Path,
    keep_going: Callable[[], bool] = lambda: True,
) -> None:
    """Runs the export process for `details` on this host into `output` (created whole, or not at
    all), its spec and output in `scratch`. `keep_going` is asked every HEARTBEAT_SECONDS; when it
    says no the process is killed (ExportStopped). Raises ExportFailed or ExportKilled."""
    adapter = storage.fetch(details.adapter_key, settings.cache_dir) if details.adapter_key else None
    base = (settings.models_dir / details.base_model).resolve()
    spec_path = scratch / "spec.json"
    details.spec(base, adapter, output, settings.train_threads).write(spec_path)
    with open(scratch / "stdout.log", "w+") as stdout, open(scratch / "stderr.log", "w+") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "openft.export", str(spec_path)],
            stdout=stdout,
            stderr=stderr,
            preexec_fn=die_with_parent,
        )
        while True:
            try:
                process.wait(timeout=HEARTBEAT_SECONDS)
                break
            except subprocess.TimeoutExpired:
                if not keep_going():
                    process.kill()
                    process.wait()
                    raise ExportStopped() from None
        if process.returncode == 0:
            return
        if process.returncode < 0:
            raise ExportKilled(f"The export process of `{details.model}` was killed (signal {-process.returncode}).")
        if process.returncode == 2:  # openft/export/__main__.py: an export the model cannot have
            stdout.seek(0)
            raise ExportFailed("unsupported_export", json.loads(stdout.read().strip().splitlines()[-1])["error"])
        stderr.seek(0)
        output_text = stderr.read()
    log.error("export of %s failed:\n%s", details.model, output_text)
    last = (output_text.strip().splitlines() or ["(no output)"])[-1]
    raise ExportFailed("export_failed", f"The export of `{details.model}` failed: {last}")


class Exporter:
    def __init__(self, settings: Settings, db: Database):
        self.settings = settings
        self.db = db
        self.storage = Storage.for_settings(settings)
        self.owner = "exporter-" + ids.random_token(12)
        self.slots = HostSlots(settings.export_slots_dir, settings.exports_per_host)

    def run_forever(self, stop: threading.Event) -> None:
        """Claims exports while a slot is free, each run on a thread of its own."""
        self.sweep()
        running: list[threading.Thread] = []
        while not stop.is_set():
            try:
                claimed = self.claim()
            except Exception:
                log.exception("exporter loop error")
                claimed = None
            if claimed is None:
                stop.wait(self.settings.worker_poll_seconds)
                continue
            export, slot = claimed
            thread = threading.Thread(target=self.run, args=(export, slot, stop), name=f"openft-{export.id}")
            thread.start()
            running = [thread, *(other for other in running if other.is_alive())]
        for thread in running:
            thread.join()

    def run_once(self, stop: threading.Event | None = None) -> bool:
        """Claims and runs one export, on this thread; False when none could start."""
        claimed = self.claim()
        if claimed is None:
            return False
        self.run(*claimed, stop or threading.Event())
        return True

    def claim(self) -> tuple[ExportRow, IO] | None:
        """A queued export and the slot it runs in, or None (no free slot, or nothing to run)."""
        slot = self.slots.take()
        if slot is None:
            return None
        try:
            export = exports.claim(self.db, self.owner, self.settings.lease_seconds, self.settings.max_attempts)
        except BaseException:
            slot.close()
            raise
        if export is None:
            slot.close()
            return None
        return export, slot

    def run(self, export: ExportRow, slot: IO, stop: threading.Event) -> None:
        """Runs a claimed export in its slot: published and succeeded, back in the queue (its
        process was killed, or this exporter stops), or failed."""
        scratch = self.settings.export_scratch_dir / export.id
        with slot:
            shutil.rmtree(scratch, ignore_errors=True)  # what an attempt that died with its exporter left
            scratch.mkdir(parents=True)
            try:
                with self._renewing(export.id, stop) as keep_going:
                    self._export(export, scratch, keep_going)
            except ExportStopped:
                if stop.is_set():
                    exports.release(self.db, export.id, self.owner)
            except ExportKilled as killed:
                log.warning("%s; it goes back to the queue", killed)
                exports.release(self.db, export.id, self.owner)
            except ExportFailed as failed:
                exports.fail(self.db, export.id, self.owner, failed.code, failed.message)
            except Exception as error:
                log.exception("export %s failed", export.id)
                exports.fail(self.db, export.id, self.owner, "export_failed", f"{type(error).__name__}: {error}")
            finally:
                shutil.rmtree(scratch, ignore_errors=True)

    def _export(self, export: ExportRow, scratch: Path, keep_going: Callable[[], bool]) -> None:
        details = ExportDetails.from_dict(export.details)
        folder = scratch / details.folder_name
        run_export(self.settings, self.storage, details, folder, scratch, keep_going)
        filename = f"{details.folder_name}.tar"
        size = write_tar(folder, details.folder_name, details.mtime, scratch / filename)
        if not keep_going():
            raise ExportStopped()
        self.storage.put(scratch / filename, result_key(export.id, filename), move=True)
        if not exports.succeed(self.db, export.id, self.owner, filename, size):
            self.storage.delete(results_key(export.id))  # deleted while it was published

    @contextmanager
    def _renewing(self, export_id: str, stop: threading.Event) -> Iterator[Callable[[], bool]]:
        """Renews the export's lease every HEARTBEAT_SECONDS on a side thread (a slow upload holds
        no loop up); yields whether the export is still this exporter's to run."""
        done, lost = threading.Event(), threading.Event()

        def renew() -> None:
            while not done.wait(HEARTBEAT_SECONDS):
                if not exports.renew(self.db, export_id, self.owner, self.settings.lease_seconds):
                    lost.set()

        thread = threading.Thread(target=renew, name=f"lease-{export_id}", daemon=True)
        thread.start()
        try:
            yield lambda: not (lost.is_set() or stop.is_set())
        finally:
            done.set()
            thread.join()

    def sweep(self) -> None:
        """Removes the scratch folders of the exports that no exporter runs now: left by an
        exporter of this host that died (its exports run again), or by a deleted export."""
        scratch_dir = self.settings.export_scratch_dir
        folders = list(scratch_dir.iterdir()) if scratch_dir.is_dir() else []
        live = exports.running_now(self.db, [folder.name for folder in folders])
        for folder in folders:
            if folder.name not in live:
                shutil.rmtree(folder, ignore_errors=True)
