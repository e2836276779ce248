"""An export folder as the uncompressed tar that `GET /v1/openft/exports/{id}/content` sends
(safetensors and GGUF do not compress): `folder_name/…`, names sorted, every entry with the same
mtime (the model's creation time), mode 0644 and root as owner, so that the same fine-tune makes
the same bytes but for its card's `exported_at`."""

import os
import tarfile
from pathlib import Path


def write_tar(folder: Path, folder_name: str, mtime: int, target: Path) -> int:
    """Writes `folder` as a tar of `folder_name/…` to `target`, fsynced; returns its size."""
    with open(target, "wb") as out:
        with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for path in sorted(p for p in folder.rglob("*") if p.is_file()):
                info = tarfile.TarInfo(f"{folder_name}/{path.relative_to(folder).as_posix()}")
                info.size, info.mtime, info.mode = path.stat().st_size, mtime, 0o644
                with open(path, "rb") as reader:
                    tar.addfile(info, reader)
        out.flush()
        os.fsync(out.fileno())
        return out.tell()
