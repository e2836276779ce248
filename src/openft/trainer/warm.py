"""`python -m openft.trainer --warm BASE`: a trainer started before its job is known, so that a job
claimed by its worker starts training at once (runner/launch.py `WarmTrainer`).

It imports torch, transformers and peft and loads BASE's tokenizer and frozen weights in the
CPU's compute dtype (`sft.preload`), then waits for one line on stdin, `{"spec": path, "log":
path}`: it sends its stderr to the job's log from then on and runs that spec as
`python -m openft.trainer spec.json` would, taking the preloaded base if the spec's plan asks
for that base in that dtype (else it loads what the spec asks, as a cold trainer does). One job
per process: LoRA wraps the base in place, and the worker starts the next warm trainer after it.
An empty stdin (the worker stopping) ends it.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from pathlib import Path


def main(argv: list[str]) -> int:
    from openft.trainer import sft  # torch, transformers, peft: the seconds this process saves a job

    try:
        sft.preload(Path(argv[0]))
    except Exception:  # the job then loads its base itself, as a cold trainer does
        traceback.print_exc()
    line = sys.stdin.readline()
    if not line.strip():
        return 0
    request = json.loads(line)
    log = open(request["log"], "ab")
    os.dup2(log.fileno(), sys.stderr.fileno())
    return sft.main([request["spec"]])
