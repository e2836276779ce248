"""openft's trainer against TRL's SFTTrainer, on the same data and LoRA config, in one run.

    .venv/bin/pip install -e '.[bench]'          # TRL, kept out of the runtime dependencies
    .venv/bin/python bench/train_bench.py [--examples 128] [--epochs 1] [--device cpu|cuda]
                                          [--model bundled|random-0.5b] [--peers trl,openft]

The data is generated here from a fixed seed: 128 chats of varied length (a system prompt, a
user message of 4-90 words, and a reply that follows a fixed, learnable pattern), plus 32
held-out chats. Each peer runs in its own subprocess:

- `trl`: TRL's SFTTrainer with its defaults, but for what both must share: LoRA r=8 / alpha 16
  on all linear layers, batch 8, max length 512, fp32 on CPU, one epoch, the same learning rate
  and schedule (linear decay after 10% warmup), and the loss on the reply only (the chats are
  given as prompt / completion, which TRL trains on the completion);
- `openft`: `openft.trainer.sft.train` on the same file, batch 8, max length 512.

For each: tokens/s (real, non-pad tokens over the training loop's wall time, model loading
excluded), wall time, the mean train loss of the last 5 steps, and the held-out loss, computed
for both by one evaluator (fp32 base + the trained adapter, mean cross-entropy over the reply
tokens). Then the ratio openft / TRL, and MFU: tokens/s x 4 x parameters (forward 2N, backward
to the activations 2N; the frozen base has no weight gradients) over this machine's matmul peak
measured in the same run (fp32 and bf16).
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BATCH_SIZE = 8
MAX_LENGTH = 512
LEARNING_RATE = 2e-4
WORDS = (
    "the a of to and in is it you that he was for on are with as his they be at one have this from "
    "or had by hot word but what some we can out other were all there when up use your how said an "
    "each she which do their time if will way about many then them write would like so these her "
    "long make thing see him two has look more day could go come did number sound no most people "
    "my over know water than call first who may down side been now find any new work part take "
    "get place made live where after back little only round man year came show every good me give"
).split()


# ---------------------------------------------------------------------------------------------
# data


def chat(rng: random.Random) -> dict:
    words = rng.choices(WORDS, k=rng.randint(4, 90))
    question = " ".join(words).capitalize() + "?"
    reply = (
        f"Arr, matey! Ye asked about {words[0]} and {words[-1]}. "
        + " ".join(reversed(words[: rng.randint(2, 40)]))
        + "."
    )
    return {
        "messages": [
            {"role": "system", "content": "You are a pirate who answers every question in the same way."},
            {"role": "user", "content": question},
            {"role": "assistant", "content": reply},
        ]
    }


def write_data(directory: Path, n_train: int, n_heldout: int = 32, seed: int = 0) -> tuple[Path, Path]:
    rng = random.Random(seed)
    paths = directory / "train.jsonl", directory / "heldout.jsonl"
    for path, n in zip(paths, (n_train, n_heldout)):
        path.write_text("".join(json.dumps(chat(rng)) + "\n" for _ in range(n)))
    return paths


# ---------------------------------------------------------------------------------------------
# the model


def bundled_model(data_dir: Path) -> Path:
    from openft.models.store import import_bundled

    return import_bundled(data_dir / "models")


def random_model(directory: Path, tokenizer_from: Path) -> Path:
    """A ~0.5B Qwen2.5-0.5B-shaped Llama with random weights (nothing can be downloaded here),
    with the bundled model's tokenizer and chat template: for timing on a GPU."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_from)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=896,
        intermediate_size=4864,
        num_hidden_layers=24,
        num_attention_heads=14,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    path = directory / "random-0.5b"
    LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


# ---------------------------------------------------------------------------------------------
# the peers (each in its own process: `--peer NAME`)


def run_trl(model: Path, train_file: Path, out: Path, epochs: int, device: str) -> dict:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    from openft.trainer.spec import Lora, lora_config

    rows = [json.loads(line) for line in train_file.read_text().splitlines()]
    dataset = Dataset.from_list([{"prompt": r["messages"][:-1], "completion": r["messages"][-1:]} for r in rows])
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    config = SFTConfig(
        output_dir=str(out / "trl"),
        per_device_train_batch_size=BATCH_SIZE,
        max_length=MAX_LENGTH,
        num_train_epochs=epochs,
        learning_rate=LEARNING_RATE,
        lr_scheduler_type="linear",
        warmup_steps=0.1,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        seed=42,
        use_cpu=device == "cpu",
        bf16=device == "cuda",
    )
    losses = []

    class Losses(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                losses.append(logs["loss"])

    trainer = SFTTrainer(
        model=AutoModelForCausalLM.from_pretrained(model, dtype=dtype),
        args=config,
        train_dataset=dataset,
        processing_class=AutoTokenizer.from_pretrained(model),
        peft_config=lora_config(Lora()),  # openft's recipe (trainer/spec.py)
        callbacks=[Losses()],
    )
    tokens = sum(len(ids) for ids in trainer.train_dataset["input_ids"]) * epochs
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    trainer.model.save_pretrained(out / "trl-adapter")
    return {
        "tokens": tokens,
        "seconds": seconds,
        "train_loss": sum(losses[-5:]) / len(losses[-5:]),
        "adapter": str(out / "trl-adapter"),
    }


def run_openft(model: Path, train_file: Path, out: Path, epochs: int, device: str) -> dict:
    from openft.trainer.sft import train
    from openft.trainer.spec import TrainSpec

    events = []
    times = {}

    def emit(event: dict) -> None:
        events.append(event)
        times.setdefault(event["type"], time.perf_counter())
        if event["type"] == "metrics":
            times["last_step"] = time.perf_counter()

    spec = TrainSpec(
        base_model_path=str(model),
        training_file=str(train_file),
        output_dir=str(out / "openft"),
        n_epochs=epochs,
        batch_size=BATCH_SIZE,
        learning_rate=LEARNING_RATE,
        max_length=MAX_LENGTH,
        seed=42,
    )
    train(spec, emit)
    metrics = [e for e in events if e["type"] == "metrics"]
    losses = [e["train_loss"] for e in metrics[-5:]]
    return {
        "tokens": metrics[-1]["tokens"],
        "seconds": times["last_step"] - times["started"],
        "train_loss": sum(losses) / len(losses),
        "adapter": str(out / "openft" / "adapter"),
    }


PEERS = {"trl": run_trl, "openft": run_openft}


# ---------------------------------------------------------------------------------------------
# the judge: one evaluator for every adapter, and the matmul peak


def heldout_loss(model: Path, adapter: str, heldout: Path, device: str) -> float:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from openft.trainer.sft import evaluate, load_examples

    tokenizer = AutoTokenizer.from_pretrained(model)
    base = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32).to(device)
    peft_model = PeftModel.from_pretrained(base, adapter)
    examples = load_examples(tokenizer, str(heldout), MAX_LENGTH, "heldout")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    # the trainer's own batching and loss: the same tokens and labels whichever peer trained
    loss, _ = evaluate(peft_model, examples, BATCH_SIZE, pad_id, torch.device(device))
    return loss


def matmul_peak(device: str) -> dict[str, float]:
    """GFLOP/s of a large square matmul, fp32 and bf16, best of a few."""
    import torch

    peaks = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        n = 4096 if device == "cuda" else 1536
        a, b = (torch.randn(n, n, device=device).to(dtype) for _ in range(2))
        best = float("inf")
        for _ in range(5):
            if device == "cuda":
                torch.cuda.synchronize()
            started = time.perf_counter()
            for _ in range(4):
                a @ b
            if device == "cuda":
                torch.cuda.synchronize()
            best = min(best, (time.perf_counter() - started) / 4)
        peaks[name] = 2 * n**3 / best / 1e9
    return peaks


def parameters(model: Path) -> int:
    from transformers import AutoConfig, AutoModelForCausalLM

    with __import__("torch").device("meta"):
        return sum(p.numel() for p in AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(model)).parameters())


# ---------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--model", default="bundled", help="bundled, random-0.5b, or a model directory")
    parser.add_argument("--peers", default="trl,openft")
    parser.add_argument("--data-dir", type=Path, help="openft data dir holding the bundled model (imported if not)")
    parser.add_argument("--peer", help=argparse.SUPPRESS)  # internal: run one peer, print its JSON
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.peer:
        result = PEERS[args.peer](args.work / "model", args.work / "train.jsonl", args.work, args.epochs, args.device)
        print("RESULT " + json.dumps(result))
        return

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data_dir = args.data_dir or work / "data"
        bundled = bundled_model(data_dir)
        if args.model == "bundled":
            model = bundled
        elif args.model == "random-0.5b":
            model = random_model(work, bundled)
        else:
            model = Path(args.model)
        (work / "model").symlink_to(model.resolve(), target_is_directory=True)
        train_file, heldout = write_data(work, args.examples)
        n_params = parameters(model)
        peak = matmul_peak(args.device)
        print(
            f"{args.examples} examples, {args.epochs} epoch(s), batch {BATCH_SIZE}, max length {MAX_LENGTH}, "
            f"{n_params / 1e6:.0f}M parameters, device {args.device}; matmul peak "
            f"{peak['fp32']:.0f} GFLOP/s fp32, {peak['bf16']:.0f} bf16"
        )
        results = {}
        for name in args.peers.split(","):
            run = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--peer",
                    name,
                    "--work",
                    str(work),
                    "--epochs",
                    str(args.epochs),
                    "--device",
                    args.device,
                ],
                capture_output=True,
                text=True,
            )
            lines = [line for line in run.stdout.splitlines() if line.startswith("RESULT ")]
            if run.returncode or not lines:
                sys.exit(f"{name} failed:\n{run.stderr[-3000:]}")
            result = json.loads(lines[-1].removeprefix("RESULT "))
            result["heldout_loss"] = heldout_loss(model, result["adapter"], heldout, args.device)
            result["tokens_per_s"] = result["tokens"] / result["seconds"]
            for precision in ("fp32", "bf16"):
                result[f"mfu_{precision}"] = result["tokens_per_s"] * 4 * n_params / (peak[precision] * 1e9)
            results[name] = result
            print(
                f"{name:>7}: {result['tokens_per_s']:7.1f} tokens/s  {result['seconds']:7.1f} s  "
                f"{result['tokens']:,} tokens  train loss {result['train_loss']:.4f}  "
                f"held-out loss {result['heldout_loss']:.4f}  MFU {result['mfu_fp32']:.0%} of fp32 peak "
                f"({result['mfu_bf16']:.0%} of bf16)",
                flush=True,
            )
        if {"trl", "openft"} <= results.keys():
            ours, theirs = results["openft"], results["trl"]
            print(
                f"openft / TRL: {ours['tokens_per_s'] / theirs['tokens_per_s']:.2f}x tokens/s; held-out loss "
                f"{ours['heldout_loss'] / theirs['heldout_loss'] - 1:+.1%}; fp32 limit "
                f"{peak['fp32'] * 1e9 / (4 * n_params):.0f} tokens/s"
            )


if __name__ == "__main__":
    main()
