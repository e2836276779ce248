"""What structured outputs cost in openft's engine (in process, no HTTP), in one run.

    .venv/bin/python bench/structured_bench.py [--tokens 96] [--rounds 3] [--model DIR]

Decode: 8 concurrent streams, each held to one of `bench/schemas.py`'s schemas (greedy, up to
`--tokens`), against the same 8 prompts unconstrained, each run to exactly the number of tokens
its constrained twin decoded (end of turn banned): the same batch, row for row and step for
step, with and without the grammar's masks. Rounds alternate the two; the best round of each
counts (the machine is shared).

Compile: every schema (and json_object's "any object", and a strict tool call) compiled for the
bundled model's tokenizer as the engine does it off the scheduler thread (`Grammars._compile`),
uncached, `--rounds` x 5 times each; then the cached path a row takes (`Grammars.matcher`: a copy
of the compiled matcher).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from openft.inference.batched import BatchedEngine  # noqa: E402
from openft.inference.constraints import ANY_OBJECT, Tool, json_grammar, tools_grammar  # noqa: E402
from openft.inference.engine import ModelRef, Prompt, SamplingParams  # noqa: E402
from openft.models.store import import_bundled  # noqa: E402
from openft.settings import BUNDLED_MODEL, Settings  # noqa: E402
from openft.storage import Storage  # noqa: E402
from schemas import SCHEMAS  # noqa: E402

EOS = 2  # <|im_end|>
STREAMS = 8


def prompt(name: str, schema: dict) -> Prompt:
    return Prompt(
        [
            {"role": "system", "content": f"Reply with JSON following this schema: {json.dumps(schema)}"},
            {"role": "user", "content": f"Give me an example {name.replace('_', ' ')}."},
        ]
    )


def run(engine: BatchedEngine, jobs: list[tuple[Prompt, SamplingParams]]) -> tuple[float, list[int]]:
    """The streams at once: (tokens/s over all of them, each one's completion tokens)."""
    counts = [0] * len(jobs)

    def stream(index: int) -> None:
        *_, last = engine.generate(ModelRef(BUNDLED_MODEL), *jobs[index])
        counts[index] = last.completion_tokens

    threads = [threading.Thread(target=stream, args=(index,)) for index in range(len(jobs))]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts) / (time.perf_counter() - started), counts


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=96)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--models-dir", type=Path, default=Path(".openft/models"))
    parser.add_argument("--json", action="store_true", help="print one JSON record of the figures at the end")
    args = parser.parse_args()
    torch.set_num_threads(2)
    import_bundled(args.models_dir)
    settings = Settings(data_dir=args.models_dir.parent)  # OPENFT_COMPUTE_DTYPE, OPENFT_BATCH_INVARIANT
    storage = Storage.for_settings(settings)
    engine = BatchedEngine(
        args.models_dir,
        2,
        storage,
        args.models_dir.parent / "cache",
        compute_dtype=settings.compute_dtype,
        batch_invariant=settings.batch_invariant,
    )

    constrained = []
    for name, schema in list(SCHEMAS.items())[:STREAMS]:
        params = SamplingParams(max_tokens=args.tokens, temperature=0, grammar=json_grammar(schema, True))
        constrained.append((prompt(name, schema), params))
    run(engine, constrained)  # loads the model, compiles the grammars
    _, counts = run(engine, constrained)
    free = [
        (job[0], SamplingParams(max_tokens=count, temperature=0, logit_bias=((EOS, -100.0),)))
        for job, count in zip(constrained, counts, strict=True)
    ]
    rates = {"constrained": [], "free": []}
    for _ in range(args.rounds):
        for label, jobs in (("constrained", constrained), ("free", free)):
            rate, got = run(engine, jobs)
            if got != counts:  # greedy decoding should repeat itself; say so if it did not
                print(f"note: {label} rows decoded {got} tokens, not {counts}")
            rates[label].append(rate)

    grammars = engine._bases[BUNDLED_MODEL].grammars
    weather = Tool("get_weather", SCHEMAS["get_weather_args"], strict=True)
    texts = [json_grammar(schema, True) for schema in SCHEMAS.values()]
    texts += [json_grammar(ANY_OBJECT, True), tools_grammar([weather], forced=False, parallel=True, reply_schema=None)]
    compiles, cached = [], []
    for _ in range(args.rounds * 5):
        for text in texts:
            started = time.perf_counter()
            grammars._compile(text)
            compiles.append(time.perf_counter() - started)
    for text in texts:
        grammars.matcher(text)
        for _ in range(args.rounds * 5):
            started = time.perf_counter()
            grammars.matcher(text)
            cached.append(time.perf_counter() - started)

    best = {label: max(values) for label, values in rates.items()}
    ratio = best["constrained"] / best["free"]
    print(f"{STREAMS} streams, {sum(counts)} tokens a round ({min(counts)}-{max(counts)} each), {args.rounds} rounds")
    for label, values in rates.items():
        print(f"  {label:12} best {best[label]:6.1f} tokens/s  (rounds: {', '.join(f'{v:.1f}' for v in values)})")
    print(f"  constrained / free: {ratio:.3f} ({1 - ratio:+.1%} slower)")
    print(
        f"compile, {len(texts)} grammars x {args.rounds * 5}: p50 {percentile(compiles, 0.5) * 1000:.2f} ms, "
        f"p95 {percentile(compiles, 0.95) * 1000:.2f} ms, mean {statistics.mean(compiles) * 1000:.2f} ms"
    )
    print(
        f"cached (a row's matcher): p50 {percentile(cached, 0.5) * 1000:.3f} ms, "
        f"p95 {percentile(cached, 0.95) * 1000:.3f} ms"
    )
    if args.json:
        figures = {
            "best tokens/s": best,
            "compile p50 ms": percentile(compiles, 0.5) * 1000,
            "compile p95 ms": percentile(compiles, 0.95) * 1000,
            "cached p50 ms": percentile(cached, 0.5) * 1000,
        }
        print(json.dumps({"figures": figures, "ratios": {"8 streams constrained / free": ratio}}))


if __name__ == "__main__":
    main()
