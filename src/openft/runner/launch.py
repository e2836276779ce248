"""Start the trainer as a child process that dies with its worker.

If the worker is killed, the orphaned trainer would go on training a job that another worker will
claim; PR_SET_PDEATHSIG makes the kernel kill it instead.
"""

import ctypes
import os
import signal
import subprocess
import sys
from pathlib import Path

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def start_trainer(spec_path: Path, log_path: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.Popen(
        [sys.executable, "-m", "openft.trainer", str(spec_path)],
        stdout=subprocess.PIPE,
        stderr=open(log_path, "ab"),
        env=env,
        preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        text=True,
    )
