"""Training larger bases on a GPU: openft's trainer, as its memory plan runs it, beside TRL's
SFTTrainer with its defaults, on random-weight models shaped like Qwen2.5-1.5B and Llama-3-8B.

    python bench/gpu_train_bench.py [--steps 20] [--rows 8] [--tokens 512] [--models qwen2.5-1.5b,llama-3-8b]
                                    [--peers openft,trl] [--spec-tflops 989]
    python bench/gpu_train_bench.py --tiny      # the same runs on toy shapes, on the CPU: that it works

Runs, each in a process of its own (so that its peak memory is its own):
- Qwen2.5-1.5B shape: openft (the plan for this device: bf16 LoRA) and TRL;
- Llama-3-8B shape: openft in bf16 LoRA (with gradient checkpointing if the plan needs it), openft
  in QLoRA (4-bit NF4 base; needs bitsandbytes), and TRL (bf16, its default gradient checkpointing).
Both trainers get the same chats (every one `--tokens` long, `--rows` per batch, `--steps`
batches, one epoch), LoRA r=8 / alpha 16 on all linear layers, learning rate 2e-4. The tokenizer
is byte-level (each byte a token, ChatML template), built here: nothing is downloaded; the
models keep their real vocabulary sizes, so the LM head costs what it would.

Per run: training tokens/s (from the end of step 2 to the end of the last: no warm-up), peak
memory (CUDA: `max_memory_allocated` over the training steps; CPU: the process's peak RSS),
and MFU = tokens/s x 4 x parameters (LoRA: forward 2N, backward to the activations 2N, no weight
gradients) over the matmul peak measured in the same run (bf16 on CUDA), and over
`--spec-tflops`, the data sheet's dense bf16 figure, if given. A run that cannot happen here (QLoRA without CUDA or
bitsandbytes, TRL not installed) is reported as skipped, with the reason.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
SHAPES = {
    "qwen2.5-1.5b": dict(
        config="Qwen2Config",
        hidden_size=1536,
        intermediate_size=8960,
        num_hidden_layers=28,
        num_attention_heads=12,
        num_key_value_heads=2,
        vocab_size=151936,
        tie_word_embeddings=True,
    ),
    "llama-3-8b": dict(
        config="LlamaConfig",
        hidden_size=4096,
        intermediate_size=14336,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
        vocab_size=128256,
        tie_word_embeddings=False,
    ),
}
TINY = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
}
RUNS = {  # model → the runs on it: (peer, how)
    "qwen2.5-1.5b": [("openft", "plan"), ("trl", "bf16")],
    "llama-3-8b": [("openft", "bf16"), ("openft", "qlora"), ("trl", "bf16")],
}
LEARNING_RATE = 2e-4


# ---------------------------------------------------------------------------------------------
# the model and the data


def byte_tokenizer():
    """Every byte a token, plus ChatML's special tokens and a chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    tokenizer = Tokenizer(models.BPE({char: i for i, char in enumerate(sorted(alphabet))}, []))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tokenizer.decoder = decoders.ByteLevel()
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, chat_template=CHATML)
    fast.add_special_tokens({"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"})
    fast.add_special_tokens({"additional_special_tokens": ["<|im_start|>"]})
    return fast


def make_model(name: str, directory: Path, tiny: bool, device: str) -> Path:
    """A random-weight model of `name`'s shape (toy-sized with `tiny`), saved with the tokenizer."""
    import torch
    import transformers

    shape = dict(SHAPES[name])
    config_class = getattr(transformers, shape.pop("config"))
    if tiny:
        shape.update(TINY)
    tokenizer = byte_tokenizer()
    config = config_class(
        **shape,
        max_position_embeddings=4096,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    with torch.device(device):
        model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    path = directory / name
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def write_chats(path: Path, n: int, tokens: int) -> Path:
    """`n` chats of exactly `tokens` tokens each as the chat template renders them (a character
    is a token), half of them in the reply."""
    empty = [{"role": "user", "content": ""}, {"role": "assistant", "content": ""}]
    text = tokens - len(byte_tokenizer().apply_chat_template(empty, tokenize=True, return_dict=False))
    chats = [
        {
            "messages": [
                {"role": "user", "content": f"{i:06d} " + "q" * (text // 2 - 7)},
                {"role": "assistant", "content": "a" * (text - text // 2)},
            ]
        }
        for i in range(n)
    ]
    path.write_text("".join(json.dumps(chat) + "\n" for chat in chats))
    return path


# ---------------------------------------------------------------------------------------------
# the runs (each in its own process: `--run PEER HOW`)


class StepClock:
    """Training tokens/s from the end of step 2 to the end of the last step, and peak memory
    from the start of training."""

    def __init__(self, device: str):
        self.device, self.ends = device, []

    def started(self) -> None:
        if self.device == "cuda":
            import torch

            torch.cuda.reset_peak_memory_stats()

    def step_ended(self) -> None:
        if self.device == "cuda":
            import torch

            torch.cuda.synchronize()
        self.ends.append(time.perf_counter())

    def result(self, tokens_per_step: int) -> dict:
        if self.device == "cuda":
            import torch

            peak = torch.cuda.max_memory_allocated()
        else:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        seconds = self.ends[-1] - self.ends[1]
        return {"tokens_per_s": tokens_per_step * (len(self.ends) - 2) / seconds, "peak_bytes": peak}


def run_openft(model: Path, chats: Path, out: Path, args, how: str) -> dict:
    from openft.trainer.plan import ModelShape, plan
    from openft.trainer.sft import train
    from openft.trainer.spec import TrainSpec

    device = probe_device(args.device)
    planned = plan(ModelShape.of(model), device, args.rows, args.tokens, qlora={"qlora": True, "bf16": False}.get(how))
    if not planned.fits:
        return {"skipped": planned.problem}
    spec = TrainSpec(
        base_model_path=str(model),
        training_file=str(chats),
        output_dir=str(out / f"openft-{how}"),
        n_epochs=1,
        batch_size=args.rows,
        learning_rate=LEARNING_RATE,
        max_length=args.tokens,
        seed=0,
        base_dtype=planned.dtype,
        gradient_checkpointing=planned.gradient_checkpointing,
        quantization="nf4" if planned.method == "qlora" else "none",
    )
    clock = StepClock(args.device)

    def emit(event: dict) -> None:
        if event["type"] == "started":
            clock.started()
        elif event["type"] == "metrics":
            clock.step_ended()

    train(spec, emit)
    return {**clock.result(args.rows * args.tokens), "plan": planned.describe()}


def run_trl(model: Path, chats: Path, out: Path, args, how: str) -> dict:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    from openft.trainer.spec import Lora, lora_config

    clock = StepClock(args.device)

    class Clock(TrainerCallback):
        def on_train_begin(self, *_, **__):
            clock.started()

        def on_step_end(self, *_, **__):
            clock.step_ended()

    rows = [json.loads(line) for line in chats.read_text().splitlines()]
    dataset = Dataset.from_list([{"prompt": r["messages"][:-1], "completion": r["messages"][-1:]} for r in rows])
    config = SFTConfig(  # TRL's defaults (gradient checkpointing on, bf16), but for what both share
        output_dir=str(out / "trl"),
        per_device_train_batch_size=args.rows,
        max_length=args.tokens,
        num_train_epochs=1,
        learning_rate=LEARNING_RATE,
        save_strategy="no",
        report_to=[],
        seed=0,
        use_cpu=args.device == "cpu",
        bf16=args.device == "cuda",
    )
    trainer = SFTTrainer(
        model=AutoModelForCausalLM.from_pretrained(model, dtype=torch.bfloat16 if args.device == "cuda" else None),
        args=config,
        train_dataset=dataset,
        processing_class=AutoTokenizer.from_pretrained(model),
        peft_config=lora_config(Lora()),
        callbacks=[Clock()],
    )
    tokens_per_step = sum(len(ids) for ids in trainer.train_dataset["input_ids"]) // args.steps
    trainer.train()
    return clock.result(tokens_per_step)


PEERS = {"openft": run_openft, "trl": run_trl}


def probe_device(kind: str):
    from openft.hardware import compute_dtype, cpu_memory, cpu_name
    from openft.trainer.plan import Device

    if kind == "cuda":
        import torch

        properties = torch.cuda.get_device_properties(0)
        qlora = importlib.util.find_spec("bitsandbytes") is not None
        return Device("cuda", properties.name, properties.total_memory, "bfloat16", qlora)
    return Device("cpu", cpu_name(), cpu_memory(), compute_dtype("cpu"), qlora=False)


def skipped(peer: str, how: str, device: str) -> str | None:
    """Why a run cannot happen here, if it cannot."""
    if peer == "trl" and importlib.util.find_spec("trl") is None:
        return "TRL is not installed (pip install -e '.[bench]')"
    if how == "qlora" and (device != "cuda" or importlib.util.find_spec("bitsandbytes") is None):
        return "QLoRA needs a CUDA device and bitsandbytes (pip install bitsandbytes)"
    return None


def matmul_peak(device: str) -> float:
    """FLOP/s of a large matmul in the device's compute dtype (bf16 on CUDA), best of a few."""
    import torch

    from openft.hardware import compute_dtype

    n = 8192 if device == "cuda" else 1024
    dtype = getattr(torch, compute_dtype(device))
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
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
    return 2 * n**3 / best


# ---------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="toy shapes on the CPU: check that every run works")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rows", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=512)
    parser.add_argument("--models", default=",".join(SHAPES))
    parser.add_argument("--peers", default="openft,trl")
    parser.add_argument("--spec-tflops", type=float, help="the device's data-sheet dense bf16 TFLOP/s, for MFU")
    parser.add_argument("--run", nargs=3, help=argparse.SUPPRESS)  # internal: PEER HOW MODEL_DIR
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--device", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.tiny:
        args.steps, args.rows, args.tokens = min(args.steps, 4), min(args.rows, 2), min(args.tokens, 96)

    if args.run:
        peer, how, model = args.run
        result = PEERS[peer](Path(model), args.work / "chats.jsonl", args.work, args, how)
        print("RESULT " + json.dumps(result), flush=True)
        return

    import torch

    from openft.models.parameters import parameter_count

    device = "cpu" if args.tiny else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        sys.exit("No CUDA device: run with --tiny on the CPU.")
    peak = matmul_peak(device)
    print(
        f"{torch.cuda.get_device_name(0) if device == 'cuda' else 'CPU'}; matmul peak {peak / 1e12:.2f} TFLOP/s"
        f"{f', data sheet {args.spec_tflops:g}' if args.spec_tflops else ''}; batches of {args.rows} x "
        f"{args.tokens} tokens, {args.steps} steps{' (tiny shapes)' if args.tiny else ''}",
        flush=True,
    )
    peers = args.peers.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        write_chats(work / "chats.jsonl", args.rows * args.steps, args.tokens)
        for name in args.models.split(","):
            model = make_model(name, work, args.tiny, device)
            parameters = parameter_count(model)
            for peer, how in RUNS[name]:
                if peer not in peers:
                    continue
                reason = skipped(peer, how, device)
                result = {"skipped": reason} if reason else run_in_process(peer, how, model, work, args, device)
                label = f"{name} {peer} {how}"
                if "skipped" in result:
                    print(f"{label:>28}: skipped: {result['skipped']}", flush=True)
                    continue
                flops = result["tokens_per_s"] * 4 * parameters
                mfu = f"MFU {flops / peak:.0%} of measured peak" + (
                    f", {flops / (args.spec_tflops * 1e12):.0%} of data sheet" if args.spec_tflops else ""
                )
                print(
                    f"{label:>28}: {result['tokens_per_s']:9.1f} tokens/s  peak {result['peak_bytes'] / 2**30:6.2f} GiB"
                    f"  {mfu}  ({parameters / 1e9:.2f}B parameters{'; ' + result['plan'] if 'plan' in result else ''})",
                    flush=True,
                )
            for path in model.glob("*.safetensors"):
                path.unlink()  # the 8B shape's 16 GB


def run_in_process(peer: str, how: str, model: Path, work: Path, args, device: str) -> dict:
    command = [
        sys.executable,
        __file__,
        "--run",
        peer,
        how,
        str(model),
        "--work",
        str(work),
        "--device",
        device,
        "--steps",
        str(args.steps),
        "--rows",
        str(args.rows),
        "--tokens",
        str(args.tokens),
    ]
    done = subprocess.run(command, capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode or not lines:
        return {"skipped": f"failed (exit {done.returncode}): {done.stderr.strip().splitlines()[-1:]}"}
    return json.loads(lines[-1].removeprefix("RESULT "))


if __name__ == "__main__":
    main()
