"""Training and serving on one host's cores: each alone, then both at once, with the threads
fixed at 2 each (the defaults before openft/cores.py) and with the threads planned (the defaults
now: each process its share of the cores while the other is busy, all of them alone).

    .venv/bin/python bench/threads_bench.py [--seconds 60] [--data-dir DIR]

- train: `python -m openft.trainer spec.json` on SmolLM2-135M-Instruct (generated chats of ~150
  tokens, batch 4), tokens/s from its metric events inside the measured window (loading excluded);
- decode: openft's engine (`inference.local_engine`, what `openft serve` runs in its engine
  process) in a process of its own: one chat stream after another, 128 tokens each (end of turn
  banned), tokens/s inside the window;
- both: the trainer runs; once it trains, the decoder starts, and both are measured over the
  decoder's window.
The trainer and the engine share the data dir, hence its `cores/` folder.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from openft.settings import BUNDLED_MODEL

DECODE_TOKENS = 128
WORDS = "the a of to and in is it you that was for on are with as be at one have this from or by hot word".split()


def write_chats(path: Path, n: int) -> Path:
    rng = random.Random(0)
    lines = []
    for _ in range(n):
        question = " ".join(rng.choices(WORDS, k=rng.randint(20, 60))) + "?"
        answer = " ".join(rng.choices(WORDS, k=rng.randint(30, 90))) + "."
        lines.append({"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]})
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def start_trainer(data_dir: Path, work: Path, threads: int | None) -> subprocess.Popen:
    spec = {
        "base_model_path": str(data_dir / "models" / BUNDLED_MODEL),
        "training_file": str(write_chats(work / "train.jsonl", 4000)),
        "output_dir": str(work / f"out-{time.time_ns()}"),
        "n_epochs": 1,
        "batch_size": 4,
        "threads": threads,
        "cores_dir": str(data_dir / "cores"),
    }
    (work / "spec.json").write_text(json.dumps(spec))
    return subprocess.Popen(
        [sys.executable, "-m", "openft.trainer", str(work / "spec.json")],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )


def read_steps(trainer: subprocess.Popen, steps: list[tuple[float, int]], until: float) -> None:
    """Append (time, tokens so far) for each step the trainer reports, up to the first at `until`."""
    for line in trainer.stdout:
        event = json.loads(line)
        if event["type"] == "metrics":
            steps.append((time.time(), event["tokens"]))
            if steps[-1][0] >= until:
                return


def tokens_at(steps: list[tuple[float, int]], moment: float) -> float:
    """Tokens trained by `moment`, interpolated between the steps around it."""
    after = next(i for i, (t, _) in enumerate(steps) if t >= moment)
    (t0, n0), (t1, n1) = steps[after - 1], steps[after]
    return n0 + (n1 - n0) * (moment - t0) / (t1 - t0)


def start_decoder(data_dir: Path, seconds: float, threads: int | None) -> subprocess.Popen:
    command = [sys.executable, __file__, "--decoder", "--data-dir", str(data_dir), "--seconds", str(seconds)]
    env = {key: value for key, value in os.environ.items() if key != "OPENFT_SERVE_THREADS"}
    if threads:
        env["OPENFT_SERVE_THREADS"] = str(threads)
    return subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)


def decoder_window(decoder: subprocess.Popen) -> dict:
    lines = decoder.communicate()[0].splitlines()
    return json.loads(next(line for line in lines if line.startswith("{")))


def decode(data_dir: Path, seconds: float) -> None:
    """The decoder process: warm up, then decode back to back for `seconds`; prints its window."""
    from openft.inference import local_engine
    from openft.inference.engine import ModelRef, Prompt, SamplingParams
    from openft.settings import Settings

    engine = local_engine(Settings(data_dir=data_dir))
    params = SamplingParams(max_tokens=DECODE_TOKENS, temperature=0, logit_bias=((2, -100.0),))  # <|im_end|> banned
    prompt = Prompt([{"role": "user", "content": "Write a long story about a dragon who bakes bread."}])
    list(engine.generate(ModelRef(BUNDLED_MODEL), prompt, SamplingParams(max_tokens=4)))  # load the model
    start, tokens = time.time(), 0
    while time.time() - start < seconds:
        *_, last = engine.generate(ModelRef(BUNDLED_MODEL), prompt, params)
        tokens += last.completion_tokens
    end = time.time()
    print(json.dumps({"start": start, "end": end, "tokens": tokens}), flush=True)


def measure(data_dir: Path, work: Path, seconds: float, threads: int | None) -> dict[str, float]:
    figures = {}
    window = decoder_window(start_decoder(data_dir, seconds, threads))
    figures["decode alone"] = window["tokens"] / (window["end"] - window["start"])

    trainer = start_trainer(data_dir, work, threads)
    steps: list[tuple[float, int]] = []
    read_steps(trainer, steps, until=0)  # the first step: the model is loaded, training has begun
    read_steps(trainer, steps, until=steps[0][0] + seconds)
    figures["train alone"] = (steps[-1][1] - steps[0][1]) / (steps[-1][0] - steps[0][0])

    # Both at once: the trainer's steps are read while the decoder loads, then runs its window.
    reader = threading.Thread(target=read_steps, args=(trainer, steps, float("inf")), daemon=True)
    reader.start()
    window = decoder_window(start_decoder(data_dir, seconds, threads))
    while steps[-1][0] < window["end"] and trainer.poll() is None:  # the step under way at the end
        time.sleep(0.2)
    trainer.kill()
    trainer.wait()
    figures["decode with training"] = window["tokens"] / (window["end"] - window["start"])
    trained = tokens_at(steps, window["end"]) - tokens_at(steps, window["start"])
    figures["train with decoding"] = trained / (window["end"] - window["start"])
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--data-dir", type=Path, help="an openft data dir with the bundled model (imported if not)")
    parser.add_argument("--decoder", action="store_true", help=argparse.SUPPRESS)  # internal: the decoder process
    args = parser.parse_args()
    if args.decoder:
        decode(args.data_dir, args.seconds)
        return

    from openft.cores import usable_cores
    from openft.models.store import import_bundled

    with tempfile.TemporaryDirectory() as tmp:
        data_dir = args.data_dir or Path(tmp) / "data"
        import_bundled(data_dir / "models")
        results = {}
        for mode, threads in (("fixed 2+2", 2), ("planned", None)):
            results[mode] = measure(data_dir, Path(tmp), args.seconds, threads)
            print(f"{mode}: " + ", ".join(f"{k} {v:.1f} tokens/s" for k, v in results[mode].items()), flush=True)
        print(f"{usable_cores()} cores; {args.seconds:.0f} s windows")
        for key in results["planned"]:
            before, after = results["fixed 2+2"][key], results["planned"][key]
            print(f"{key:>22}: fixed 2+2 {before:7.1f}  planned {after:7.1f}  planned / fixed {after / before:5.2f}x")


if __name__ == "__main__":
    main()
