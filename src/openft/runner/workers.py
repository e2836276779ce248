"""The workers table: each worker advertises the device it trains on and keeps saying it is
alive; jobs are planned against the workers alive (a create call refuses a job that fits none).

A worker's row is its last word: one whose heartbeat is older than a lease
(`OPENFT_LEASE_SECONDS`) is taken for dead, like a job whose lease ran out; a worker that stops
cleanly removes its row.
"""

from __future__ import annotations

import importlib.util
import socket
import time
from dataclasses import replace

from sqlalchemy import delete, select

from openft.hardware import compute_dtype, cpu_memory, cpu_name, cuda_devices
from openft.settings import Settings
from openft.store.db import Database
from openft.store.tables import WorkerRow
from openft.trainer.plan import Device, GiB


def this_device(settings: Settings) -> Device:
    """The device a job trains on here, as a worker advertises it (`capped`)."""
    return capped(host_device(settings), settings)


def capped(device: Device, settings: Settings) -> Device:
    """The host's device with its memory capped by `OPENFT_WORKER_MEMORY_GIB`."""
    if settings.worker_memory_gib is None:
        return device
    return replace(device, memory=min(device.memory, int(settings.worker_memory_gib * GiB)))


def host_device(settings: Settings) -> Device:
    """The device a job trains on here, all of it: the CUDA devices it would use
    (`OPENFT_TRAIN_GPUS` of them: the smallest's memory, since each holds the whole model) or
    the CPU's RAM."""
    gpus = cuda_devices()[: settings.train_gpus]
    if gpus:
        name, memory = min(gpus, key=lambda gpu: gpu[1])
        return Device(
            "cuda",
            name,
            memory,
            compute_dtype("cuda", settings.compute_dtype),
            importlib.util.find_spec("bitsandbytes") is not None,
        )
    return Device("cpu", cpu_name(), cpu_memory(), compute_dtype("cpu", settings.compute_dtype), qlora=False)


def advertise(db: Database, worker_id: str, device: Device) -> None:
    """Add this worker's row, or refresh it: its heartbeat."""
    now = time.time()
    with db.session() as session:
        row = session.scalar(select(WorkerRow).where(WorkerRow.id == worker_id))
        if row is None:
            row = WorkerRow(id=worker_id, host=socket.gethostname(), started_at=int(now))
            session.add(row)
        row.device, row.device_name, row.memory = device.kind, device.name, device.memory
        row.dtype, row.qlora, row.heartbeat_at = device.dtype, device.qlora, now


def remove(db: Database, worker_id: str) -> None:
    with db.session() as session:
        session.execute(delete(WorkerRow).where(WorkerRow.id == worker_id))


def alive(db: Database, settings: Settings) -> list[Device]:
    """The devices of the workers that said they were alive within a lease."""
    since = time.time() - settings.lease_seconds
    with db.session() as session:
        rows = session.scalars(select(WorkerRow).where(WorkerRow.heartbeat_at >= since).order_by(WorkerRow.seq))
        return [Device(row.device, row.device_name, row.memory, row.dtype, row.qlora) for row in rows]
