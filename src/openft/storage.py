"""Artifacts (uploaded files, adapters, checkpoints) by key, on any fsspec filesystem.

Keys are relative and '/'-separated: `files/file-…`, `adapters/ftjob-…`,
`checkpoints/ftjob-…/step-N`. By default the storage is the data dir itself, so `files/<id>` is
`<data dir>/files/<id>` as it always was; `OPENFT_STORAGE_URL` points it at any URL fsspec
knows (`s3://bucket/openft` with `s3fs` installed, `file:///mnt/shared/openft`, …), and then
servers and workers on any host share one copy of every artifact.

An artifact is published whole or not at all. One file: on a local directory it is renamed
into place and fsynced, on an object store a PUT is atomic. A directory (an adapter, a
checkpoint) is written file by file, so nothing may read it before its writer says it is there:
the worker commits the row that names it (a model, a checkpoint) only after the upload.
Readers on other hosts `fetch` a key into a local cache once: artifacts never change after they
are published, so a cached copy never goes stale.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from pathlib import Path
from typing import IO

import fsspec
from fsspec.implementations.local import LocalFileSystem

from openft.settings import Settings


class Storage:
    def __init__(self, url: str):
        self.url = url
        self.fs, self.root = fsspec.core.url_to_fs(url)
        self.root = self.root.rstrip("/")
        # Where the artifacts are when the storage is a directory of this host, else None.
        self.local_root = Path(self.root) if isinstance(self.fs, LocalFileSystem) else None

    @classmethod
    def for_settings(cls, settings: Settings) -> Storage:
        return cls(settings.storage_url or str(settings.data_dir.resolve()))

    def _path(self, key: str) -> str:
        return f"{self.root}/{key}"

    def local_path(self, key: str) -> Path | None:
        """The key's path on this host when the storage is a local directory."""
        return self.local_root / key if self.local_root else None

    def location(self, key: str) -> str:
        """Where the key is, for people: a path for a local directory, else a URL."""
        local = self.local_path(key)
        return str(local) if local else self.fs.unstrip_protocol(self._path(key))

    def put(self, source: Path, key: str, *, move: bool = False) -> None:
        """Publish the local file `source` as `key` (moved there, when `move` and possible)."""
        target = self.local_path(key)
        if target is None:
            self._put_file(source, self._path(key))
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            if not move:
                _copy_in_place(source, target)
            else:
                os.replace(source, target)  # atomic, and no copy
        except OSError as error:
            if not move or error.errno != errno.EXDEV:
                raise
            _copy_in_place(source, target)  # `source` is on another filesystem
        _fsync_dir(target.parent)

    def put_dir(self, source: Path, key: str) -> None:
        """Publish the local directory `source` as `key`, replacing what a failed try left."""
        self.delete(key)
        for path in sorted(source.rglob("*")):
            if path.is_file():
                relative = path.relative_to(source).as_posix()
                self._put_file(path, self._path(f"{key}/{relative}"))

    def _put_file(self, source: Path, path: str) -> None:
        self.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)  # object stores: no-op
        self.fs.put_file(str(source), path)

    def open(self, key: str, mode: str = "rb") -> IO:
        return self.fs.open(self._path(key), mode)

    def exists(self, key: str) -> bool:
        return self.fs.exists(self._path(key))

    def delete(self, key: str) -> None:
        """Remove a file or a directory; nothing to remove is fine."""
        path = self._path(key)
        if self.fs.exists(path):
            self.fs.rm(path, recursive=True)

    def fetch(self, key: str, cache_dir: Path) -> Path:
        """A local path holding the file or directory `key`: the storage's own on a local
        directory, else a copy downloaded once into `cache_dir`."""
        local = self.local_path(key)
        if local is not None:
            return local
        target = cache_dir / key
        if target.exists():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(dir=target.parent, prefix=".fetch-"))
        try:
            path = self._path(key)
            if self.fs.isdir(path):
                download = scratch / "dir"
                for remote in self.fs.find(path):
                    relative = remote[len(path) + 1 :]
                    (download / relative).parent.mkdir(parents=True, exist_ok=True)
                    self.fs.get_file(remote, str(download / relative))
            else:
                download = scratch / "file"
                self.fs.get_file(path, str(download))
            os.replace(download, target)  # a concurrent fetch of the same key may have won: same bytes
        except OSError:
            if not target.exists():
                raise
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return target


def _copy_in_place(source: Path, target: Path) -> None:
    """Copy to a hidden file next to `target`, fsync, rename: `target` is whole or absent."""
    handle = tempfile.NamedTemporaryFile(dir=target.parent, prefix=".put-", suffix=".part", delete=False)
    try:
        with handle, open(source, "rb") as reader:
            shutil.copyfileobj(reader, handle, 2**20)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(handle.name, target)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise


def _fsync_dir(directory: Path) -> None:
    """Make a rename in `directory` durable."""
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
