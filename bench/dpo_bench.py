"""openft's DPO against TRL's DPOTrainer, on the same pairs, LoRA, loss, beta and schedule, in one run.

    .venv/bin/pip install -e '.[bench]'          # TRL, kept out of the runtime dependencies
    .venv/bin/python bench/dpo_bench.py [--epochs 1] [--batch 4] [--threads N] [--device cpu|cuda]
                                        [--peers trl,openft]

The pairs are tests/data/dpo_ahoy.jsonl (24 pairs: the bundled model's own answer, with and
without a leading "Ahoy!"); the last 6 are held out for the reward accuracy, the rest train. Each
peer runs in its own subprocess:

- `trl`: DPOTrainer with LoRA r=8 / alpha 16 on all linear layers (openft's recipe), the loss
  openft uses (`loss_type=["sigmoid", "sft"]`, weights 1 and 1: DPO plus the SFT term), beta 0.1,
  lr 1e-4 with linear decay after 10% warmup, fp32 on CPU, its reference as TRL makes it (the
  base under disabled adapters, one no-grad forward per step: TRL's default);
- `openft`: `openft.trainer.dpo.train_dpo` with the same numbers (its reference computed once
  before the first step).

For each: tokens/s (both replies' real tokens over the training loop's wall time: model loading
excluded for TRL, included for openft along with its reference pass; the count is openft's
rendering of the same pairs, so the ratio is a ratio of times), the held-out reward accuracy,
and the outcome: greedy replies to the held-out prompts, counted as showing the trait ("Ahoy")
and keeping the base's answer (its last word).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PAIRS = REPO / "tests" / "data" / "dpo_ahoy.jsonl"
HELD_OUT = 6
BETA = 0.1
LEARNING_RATE = 1e-4


def split(work: Path) -> tuple[Path, Path]:
    lines = PAIRS.read_text().splitlines(keepends=True)
    (work / "train.jsonl").write_text("".join(lines[:-HELD_OUT]))
    (work / "heldout.jsonl").write_text("".join(lines[-HELD_OUT:]))
    return work / "train.jsonl", work / "heldout.jsonl"


def run_trl(model: Path, work: Path, args) -> dict:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    from openft.trainer.spec import Lora, lora_config

    def rows(path: Path) -> Dataset:
        pairs = [json.loads(line) for line in path.read_text().splitlines()]
        return Dataset.from_list(
            [
                {
                    "prompt": p["input"]["messages"],
                    "chosen": p["preferred_output"],
                    "rejected": p["non_preferred_output"],
                }
                for p in pairs
            ]
        )

    torch.set_num_threads(args.threads)
    config = DPOConfig(
        output_dir=str(work / "trl"),
        per_device_train_batch_size=args.batch,
        per_device_eval_batch_size=args.batch,
        num_train_epochs=args.epochs,
        learning_rate=LEARNING_RATE,
        lr_scheduler_type="linear",
        warmup_steps=0.1,
        beta=BETA,
        loss_type=["sigmoid", "sft"],
        loss_weights=[1.0, 1.0],
        max_length=2048,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        seed=42,
        gradient_checkpointing=False,
        use_cpu=args.device == "cpu",
        bf16=args.device == "cuda",
    )
    trainer = DPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32),
        args=config,
        train_dataset=rows(work / "train.jsonl"),
        eval_dataset=rows(work / "heldout.jsonl"),
        processing_class=AutoTokenizer.from_pretrained(model),
        peft_config=lora_config(Lora()),
    )
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    accuracy = trainer.evaluate()["eval_rewards/accuracies"]
    trainer.model.save_pretrained(work / "trl-adapter")
    return {"seconds": seconds, "heldout_reward_accuracy": accuracy, "adapter": str(work / "trl-adapter")}


def run_openft(model: Path, work: Path, args) -> dict:
    from openft.trainer.dpo import train_dpo
    from openft.trainer.spec import TrainSpec

    events, times = [], {}

    def emit(event: dict) -> None:
        events.append(event)
        times.setdefault(event["type"], time.perf_counter())
        if event["type"] == "metrics":
            times["last_step"] = time.perf_counter()

    spec = TrainSpec(
        base_model_path=str(model),
        training_file=str(work / "train.jsonl"),
        validation_file=str(work / "heldout.jsonl"),
        output_dir=str(work / "openft"),
        n_epochs=args.epochs,
        batch_size=args.batch,
        learning_rate=LEARNING_RATE,
        seed=42,
        threads=args.threads,
        method="dpo",
        beta=BETA,
        eval_every=10**9,  # the held-out pairs once, at the end, as TRL's evaluate() does
    )
    started = time.perf_counter()
    train_dpo(spec, emit)
    last = [e for e in events if e["type"] == "metrics"][-1]
    return {
        # from the call: the model load and the reference pass count against openft
        "seconds": times["last_step"] - started,
        "heldout_reward_accuracy": last["full_valid_rewards_accuracies"],
        "adapter": str(work / "openft" / "adapter"),
        "tokens": last["tokens"],
    }


PEERS = {"trl": run_trl, "openft": run_openft}


def replies(model: Path, adapter: str, heldout: Path, device: str) -> list[str]:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model)
    policy = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32), adapter)
    policy.to(device).eval()
    out = []
    for line in heldout.read_text().splitlines():
        messages = json.loads(line)["input"]["messages"]
        ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
        generated = policy.generate(**ids.to(device), max_new_tokens=40, do_sample=False)
        out.append(tokenizer.decode(generated[0, ids["input_ids"].shape[1] :], skip_special_tokens=True))
    return out


def outcome(texts: list[str], heldout: Path) -> dict:
    answers = [json.loads(line)["non_preferred_output"][0]["content"] for line in heldout.read_text().splitlines()]
    keys = [answer.rstrip(".!?").split()[-1] for answer in answers]  # the answer's last word, e.g. "Paris"
    return {
        "trait": sum("Ahoy" in text for text in texts),
        "answer_kept": sum(key in text for key, text in zip(keys, texts, strict=True)),
        "replies": texts,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--peers", default="trl,openft")
    parser.add_argument("--data-dir", type=Path, help="openft data dir holding the bundled model (imported if not)")
    parser.add_argument("--peer", help=argparse.SUPPRESS)  # internal: run one peer, print its JSON
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.peer:
        print("RESULT " + json.dumps(PEERS[args.peer](args.work / "model", args.work, args)))
        return

    from openft.models.store import import_bundled

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model = import_bundled((args.data_dir or work / "data") / "models")
        (work / "model").symlink_to(model.resolve(), target_is_directory=True)
        _, heldout = split(work)
        print(
            f"{args.epochs} epoch(s), batch {args.batch} pairs, beta {BETA}, lr {LEARNING_RATE}, {args.threads} threads"
        )
        results = {}
        for name in args.peers.split(","):
            command = [sys.executable, __file__, "--peer", name, "--work", str(work)]
            for flag in ("epochs", "batch", "threads", "device"):
                command += [f"--{flag}", str(getattr(args, flag))]
            run = subprocess.run(command, capture_output=True, text=True)
            lines = [line for line in run.stdout.splitlines() if line.startswith("RESULT ")]
            if run.returncode or not lines:
                sys.exit(f"{name} failed:\n{run.stderr[-3000:]}")
            results[name] = json.loads(lines[-1].removeprefix("RESULT "))
            results[name].update(outcome(replies(model, results[name]["adapter"], heldout, args.device), heldout))
        tokens = results.get("openft", {}).get("tokens")
        for name, result in results.items():
            rate = f"{tokens / result['seconds']:7.1f} tokens/s" if tokens else ""
            print(
                f"{name:>7}: {rate}  {result['seconds']:7.1f} s  held-out reward accuracy "
                f"{result['heldout_reward_accuracy']:.2f}  trait {result['trait']}/{HELD_OUT}  "
                f"answer kept {result['answer_kept']}/{HELD_OUT}"
            )
            for text in result["replies"]:
                print(f"         {text!r}")
        if {"trl", "openft"} <= results.keys():
            trl, ours = results["trl"], results["openft"]
            print(
                f"openft / TRL: {trl['seconds'] / ours['seconds']:.2f}x tokens/s, reward accuracy "
                f"{ours['heldout_reward_accuracy'] - trl['heldout_reward_accuracy']:+.2f}"
            )


if __name__ == "__main__":
    main()
