"""The trainer's command line for each launcher: a local process, torchrun on several GPUs, a
Ray job (`ray job submit`, stopped with `ray job stop`). The local one really starts a trainer.

Ray itself is not installed here (its wheel is large), so no test submits to a real cluster."""

import json
import sys
from pathlib import Path

from openft.runner.launch import command, start_trainer, stop_command
from openft.settings import Settings

SPEC = Path("/data/jobs/ftjob-abc/spec.json")


def test_one_gpu_or_cpu_runs_the_trainer_module_here():
    assert command(Settings(), SPEC, attempt=1) == [sys.executable, "-m", "openft.trainer", str(SPEC)]
    assert stop_command(Settings(), SPEC, attempt=1) is None


def test_several_gpus_run_under_torchrun():
    assert command(Settings(train_gpus=4), SPEC, attempt=1) == [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "4",
        "-m",
        "openft.trainer",
        str(SPEC),
    ]


def test_a_ray_address_submits_a_ray_job_per_attempt():
    settings = Settings(ray_address="http://head:8265", train_gpus=2, ray_runtime_env='{"pip": ["openft"]}')
    assert command(settings, SPEC, attempt=3) == [
        "ray",
        "job",
        "submit",
        "--address",
        "http://head:8265",
        "--submission-id",
        "openft-ftjob-abc-3",
        "--entrypoint-num-gpus",
        "2",
        "--runtime-env-json",
        '{"pip": ["openft"]}',
        "--",
        "python",
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "openft.trainer",
        str(SPEC),
    ]
    assert stop_command(settings, SPEC, attempt=3) == [
        "ray",
        "job",
        "stop",
        "--address",
        "http://head:8265",
        "openft-ftjob-abc-3",
    ]
    assert command(Settings(ray_address="http://head:8265"), SPEC, attempt=1)[-4:] == [
        "python",
        "-m",
        "openft.trainer",
        str(SPEC),
    ]


def test_the_local_trainer_starts_and_reports_on_stdout(tmp_path):
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"base_model_path": str(tmp_path / "no-such-model")}))
    process = start_trainer(Settings(), spec, tmp_path / "trainer.log", attempt=1)
    events = [json.loads(line) for line in process.stdout if line.startswith("{")]
    assert process.wait(timeout=120) != 0
    assert events[-1]["type"] == "error"
