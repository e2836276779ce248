"""What batch-invariant greedy decoding costs (`OPENFT_BATCH_INVARIANT`), on both float paths, in
one run: the serving engine in process on the bundled model, with it on and off.

    .venv/bin/python bench/invariance_bench.py [--tokens 64] [--rounds 3] [--model DIR]

For each compute dtype (fp32, and bf16: emulated and slow on a CPU without native bf16), an
engine with batch invariance and one without, each measured `--rounds` times in alternation
(this machine is noisy; the median is kept): decode tokens/s for 1 stream on the base, 8
concurrent streams on one adapter, and 8 streams over 8 adapters (each reply run to `--tokens`,
end of turn banned). Then whether it holds: 8 greedy replies (base and adapter rows, prompts of
different lengths) asked together and each alone; the rows whose reply differs are counted, for
each engine. Prints every figure and the ratios invariant / plain.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from engine_bench import engine_rate, make_adapters, on_own_thread
from openft.inference.batched import BatchedEngine
from openft.inference.engine import ModelRef, Prompt, SamplingParams
from openft.settings import BUNDLED_MODEL, Settings
from openft.storage import Storage

QUESTIONS = [
    "What is the capital of Italy?",
    "Hi",
    "Tell me, in a few sentences, why the sea is salty and the rivers are not.",
    "What color is a ripe tomato?",
]


def rates(engine: BatchedEngine, adapters: list[str], tokens: int) -> dict[str, float]:
    return {
        "1 stream": engine_rate(engine, [ModelRef("base")], tokens),
        "8 streams, 1 adapter": engine_rate(engine, [ModelRef("base", adapters[0])] * 8, tokens),
        "8 streams, 8 adapters": engine_rate(engine, [ModelRef("base", key) for key in adapters], tokens),
    }


def differing_rows(engine: BatchedEngine, adapter: str) -> int:
    """Of 8 greedy replies (4 prompts, base and adapter), how many differ between asked together
    and asked alone."""
    asks = [(ref, question) for question in QUESTIONS for ref in (ModelRef("base"), ModelRef("base", adapter))]
    params = SamplingParams(max_tokens=48, temperature=0)

    def reply(ask) -> str:
        return "".join(
            chunk.text for chunk in engine.generate(ask[0], Prompt([{"role": "user", "content": ask[1]}]), params)
        )

    alone = [reply(ask) for ask in asks]
    with ThreadPoolExecutor(len(asks)) as pool:
        together = list(pool.map(reply, asks))
    return sum(a != b for a, b in zip(alone, together))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--model", type=Path, default=Path(".openft/models") / BUNDLED_MODEL)
    parser.add_argument("--json", action="store_true", help="print one JSON record of the figures at the end")
    args = parser.parse_args()
    torch.set_num_threads(2)
    record = {"figures": {}, "ratios": {}}
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        (data / "models").mkdir()
        (data / "models" / "base").symlink_to(args.model.resolve(), target_is_directory=True)
        storage = Storage.for_settings(Settings(data_dir=data))
        adapters = on_own_thread(make_adapters, data / "models" / "base", storage, data / "scratch", 8, 0.02)
        for dtype in ("float32", "bfloat16"):
            engines = {
                invariant: BatchedEngine(
                    data / "models", 2, storage, data / "cache", compute_dtype=dtype, batch_invariant=invariant
                )
                for invariant in (True, False)
            }
            for engine in engines.values():
                engine_rate(engine, [ModelRef("base", key) for key in adapters], 2)  # load the model and adapters
            measured = {invariant: [] for invariant in engines}
            for _ in range(args.rounds):
                for invariant, engine in engines.items():
                    measured[invariant].append(rates(engine, adapters, args.tokens))
            median = {
                invariant: {label: statistics.median(r[label] for r in runs) for label in runs[0]}
                for invariant, runs in measured.items()
            }
            print(f"\n{dtype}: decode tokens/s (median of {args.rounds}), batch-invariant vs plain")
            for label in median[True]:
                on, off = median[True][label], median[False][label]
                print(f"  {label:24} {on:8.1f} {off:8.1f}   invariant / plain {on / off:.2f}x")
                record["ratios"][f"{dtype} {label}: invariant / plain"] = on / off
            for invariant, engine in engines.items():
                kind, changed = "batch-invariant" if invariant else "plain", differing_rows(engine, adapters[0])
                print(f"  {kind:16} rows whose greedy reply changed: {changed} of 8")
                record["figures"][f"{dtype} {kind}: rows whose greedy reply changed in a batch of 8"] = changed
    if args.json:
        print(json.dumps(record))


if __name__ == "__main__":
    main()
