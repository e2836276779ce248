"""xgrammar against llguidance on this machine, with the bundled model's 49k vocabulary: which
grammar engine openft constrains decoding with (issue 16 asked for the choice by these figures).

For each schema of `bench/schemas.py` (and "any JSON object", json_object's grammar):
- compile: schema → a matcher ready for its first mask, nothing cached (xgrammar: a compiler
  with its cache off; llguidance: the grammar text and an `LLMatcher`), and the first mask,
  which llguidance computes lazily;
- cached: what a request pays when the schema's compiled grammar is in the cache (xgrammar: the
  cache hit + a `GrammarMatcher`; llguidance: `deep_copy` of a pristine matcher);
- per-step mask: the bundled model decodes each grammar greedily under xgrammar's mask (up to 64
  tokens, KV-cached); then each engine replays those tokens, and every `fill` of the next
  token's bitmask is timed (both engines compile the same JSON, with json.dumps's separators,
  so both accept every token; the script says if one refuses any).

Times are wall and this thread's CPU time: on a shared machine the CPU time is the steadier.

Usage (both libraries installed, e.g. `pip install --no-deps --target /tmp/gramlibs xgrammar==0.2.8
apache-tvm-ffi==0.1.15.post2 llguidance==1.9.1` and PYTHONPATH=/tmp/gramlibs:src):

    python bench/grammar_bench.py [--models-dir DIR] [--repeat 5]
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import jsonschema_rs
import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

sys.path.insert(0, str(Path(__file__).parent))
from openft.models.store import import_bundled  # noqa: E402
from schemas import SCHEMAS  # noqa: E402

MAX_STEPS = 64


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f}"


def timed(work, *args) -> tuple[object, float, float]:
    """(result, wall seconds, this thread's CPU seconds): on a shared machine the CPU time is the
    steadier of the two (a descheduled thread's wall time grows, its CPU time does not)."""
    wall, cpu = time.perf_counter(), time.thread_time()
    result = work(*args)
    return result, time.perf_counter() - wall, time.thread_time() - cpu


class XGrammar:
    name = "xgrammar"

    def __init__(self, tokenizer, vocab_size: int):
        import xgrammar as xgr

        self.xgr = xgr
        started = time.perf_counter()
        self.info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size)
        self.setup = time.perf_counter() - started
        self.cached_compiler = xgr.GrammarCompiler(self.info, max_threads=1)

    def compile(self, schema: str | None):
        compiler = self.xgr.GrammarCompiler(self.info, max_threads=1, cache_enabled=False)
        return self._matcher(compiler, schema)

    def cached(self, schema: str | None):
        return self._matcher(self.cached_compiler, schema)

    def _matcher(self, compiler, schema: str | None):
        # json_object: any object, as vLLM compiles it.
        compiled = compiler.compile_json_schema(schema or '{"type": "object"}', any_whitespace=False)
        return self.xgr.GrammarMatcher(compiled)

    @staticmethod
    def fill(matcher, bitmask: torch.Tensor) -> None:
        matcher.fill_next_token_bitmask(bitmask, 0)

    @staticmethod
    def accept(matcher, token: int) -> bool:
        return matcher.accept_token(token)

    @staticmethod
    def ended(matcher) -> bool:
        return matcher.is_terminated()


class LLGuidance:
    name = "llguidance"

    def __init__(self, tokenizer, vocab_size: int):
        import llguidance
        import llguidance.hf
        import llguidance.torch

        self.llg = llguidance
        started = time.perf_counter()
        self.tokenizer = llguidance.hf.from_tokenizer(tokenizer, n_vocab=vocab_size)
        self.setup = time.perf_counter() - started
        self.pristine: dict = {}

    def _grammar(self, schema: str | None) -> str:
        return self.llg.LLMatcher.grammar_from_json_schema(
            schema or '{"type": "object"}',
            # json.dumps's separators, as xgrammar's compact JSON has them
            defaults={"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "},
        )

    def compile(self, schema: str | None):
        matcher = self.llg.LLMatcher(self.tokenizer, self._grammar(schema))
        if matcher.is_error():
            raise ValueError(matcher.get_error())
        return matcher

    def cached(self, schema: str | None):
        if schema not in self.pristine:
            self.pristine[schema] = self.compile(schema)
        return self.pristine[schema].deep_copy()

    def fill(self, matcher, bitmask: torch.Tensor) -> None:
        self.llg.torch.fill_next_token_bitmask(matcher, bitmask, 0)

    @staticmethod
    def accept(matcher, token: int) -> bool:
        return matcher.consume_token(token)

    @staticmethod
    def ended(matcher) -> bool:
        return matcher.is_stopped()


def reference_tokens(model, tokenizer, engine, name: str, schema: str | None, bitmask) -> list[int]:
    """Greedy decoding of the bundled model under `engine`'s mask: the token sequence every
    engine then replays (so both are timed on the same states, and the model's time is not)."""
    instruction = f"Reply with JSON only, following this JSON schema: {schema}" if schema else "Reply in JSON."
    messages = [
        {"role": "system", "content": instruction},
        {"role": "user", "content": f"Give me an example {name.replace('_', ' ')}."},
    ]
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True)["input_ids"]
    matcher = engine.cached(schema)
    tokens, past, input_ids = [], None, torch.tensor([ids])
    with torch.inference_mode():
        for _ in range(MAX_STEPS):
            out = model(input_ids=input_ids, cache=past, use_cache=True)
            past, logits = out.past_key_values, out.logits[:, -1].float()
            engine.fill(matcher, bitmask)
            engine.xgr.apply_token_bitmask_inplace(logits, bitmask)
            token = int(logits.argmax())
            engine.accept(matcher, token)
            tokens.append(token)
            if engine.ended(matcher):
                break
            input_ids = torch.tensor([[token]])
    return tokens


def replay(engine, schema: str | None, tokens: list[int], bitmask) -> tuple[list[float], list[float], int]:
    """Fills the mask before each token and accepts it: (wall seconds, CPU seconds of each fill,
    tokens accepted)."""
    matcher = engine.cached(schema)
    walls, cpus = [], []
    for accepted, token in enumerate(tokens):
        _, wall, cpu = timed(engine.fill, matcher, bitmask)
        walls.append(wall)
        cpus.append(cpu)
        if not engine.accept(matcher, token):
            return walls, cpus, accepted
    return walls, cpus, len(tokens)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models-dir", type=Path, default=Path(".openft/models"))
    parser.add_argument("--repeat", type=int, default=5, help="compiles of each schema, per engine")
    args = parser.parse_args()
    torch.set_num_threads(1)

    path = import_bundled(args.models_dir)
    tokenizer = AutoTokenizer.from_pretrained(path)
    vocab_size = AutoConfig.from_pretrained(path).vocab_size
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    xgrammar, llguidance = XGrammar(tokenizer, vocab_size), LLGuidance(tokenizer, vocab_size)
    bitmask = xgrammar.xgr.allocate_token_bitmask(1, vocab_size)
    cases = {"json_object": None, **{name: json.dumps(schema) for name, schema in SCHEMAS.items()}}
    references = {
        name: reference_tokens(model, tokenizer, xgrammar, name, schema, bitmask) for name, schema in cases.items()
    }

    rows, accepted = {}, {}
    for engine in (xgrammar, llguidance):
        compile_wall, compile_cpu, cached, fill_wall, fill_cpu = [], [], [], [], []
        for name, schema in cases.items():
            for _ in range(args.repeat):
                matcher, wall, cpu = timed(engine.compile, schema)
                _, fill_w, fill_c = timed(engine.fill, matcher, bitmask)  # llguidance's first mask is lazy
                compile_wall.append(wall + fill_w)
                compile_cpu.append(cpu + fill_c)
            engine.cached(schema)
            for _ in range(args.repeat):
                cached.append(timed(engine.cached, schema)[1])
            walls, cpus, accepted[engine.name, name] = replay(engine, schema, references[name], bitmask)
            fill_wall += walls
            fill_cpu += cpus
        rows[engine.name] = (engine.setup, compile_wall, compile_cpu, cached, fill_wall, fill_cpu)

    valid = 0
    for name, schema in cases.items():
        try:
            value = json.loads(tokenizer.decode(references[name], skip_special_tokens=True))
        except ValueError:
            continue  # cut at MAX_STEPS
        valid += schema is None or jsonschema_rs.validator_for(json.loads(schema)).is_valid(value)

    def spread(values: list[float]) -> str:
        return f"{ms(percentile(values, 0.5))} / {ms(percentile(values, 0.95))} / {ms(statistics.mean(values))}"

    steps = sum(map(len, references.values()))
    print(
        f"{len(cases)} grammars, vocabulary {vocab_size}, {steps} decoded tokens ({valid} replies complete and valid)"
    )
    print(
        "| engine | tokenizer setup ms | compile p50 / p95 / mean ms (wall; CPU) | cached p50 / p95 ms "
        "| mask p50 / p95 / mean ms (wall; CPU) |"
    )
    print("|---|---|---|---|---|")
    for name, (setup, compile_wall, compile_cpu, cached, fill_wall, fill_cpu) in rows.items():
        print(
            f"| {name} | {ms(setup)} | {spread(compile_wall)}; {spread(compile_cpu)} "
            f"| {ms(percentile(cached, 0.5))} / {ms(percentile(cached, 0.95))} "
            f"| {spread(fill_wall)}; {spread(fill_cpu)} |"
        )
    x, g = rows["xgrammar"], rows["llguidance"]
    print(
        f"llguidance / xgrammar CPU: compile p50 {percentile(g[2], 0.5) / percentile(x[2], 0.5):.2f}x, "
        f"mask mean {statistics.mean(g[5]) / statistics.mean(x[5]):.2f}x"
    )
    refused = {key: count for key, count in accepted.items() if count < len(references[key[1]])}
    print(f"tokens of the reference decodes refused: {refused or 'none'}")


if __name__ == "__main__":
    main()
