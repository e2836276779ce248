"""`python -m openft.trainer spec.json`: run one fine-tuning job (see openft.trainer.sft)."""

import sys

from openft.trainer.sft import main

sys.exit(main(sys.argv[1:]))
