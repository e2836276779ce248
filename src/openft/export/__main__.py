"""`python -m openft.export spec.json`: one export (run.py). An export the model cannot have
prints `{"error": message}` as its last stdout line and exits 2; other failures exit 1 with a
traceback on stderr."""

import json
import sys
from pathlib import Path

from openft.export.run import run
from openft.export.spec import ExportError, ExportSpec


def main() -> int:
    if len(sys.argv) != 2:
        print("usage: python -m openft.export spec.json", file=sys.stderr)
        return 1
    try:
        run(ExportSpec.read(Path(sys.argv[1])))
    except ExportError as error:
        print(json.dumps({"error": str(error)}), flush=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
