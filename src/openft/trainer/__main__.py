"""`python -m openft.trainer spec.json`: run one fine-tuning job (see openft.trainer.sft)."""

import os
import sys

from openft.trainer.sft import main

code = main(sys.argv[1:])
# Every event and file is written by now. Skip the interpreter's teardown: torch's and
# transformers' exit handlers took 1.4 s more of every job (the worker waits for the exit code).
for stream in (sys.__stdout__, sys.__stderr__):
    stream.flush()
os._exit(code)
