"""OpenAI-style identifiers: a prefix and a random alphanumeric tail."""

import secrets
import string
from typing import NamedTuple

_ALPHABET = string.ascii_letters + string.digits


def random_token(length: int) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def file_id() -> str:
    return "file-" + random_token(24)


def job_id() -> str:
    return "ftjob-" + random_token(24)


def event_id() -> str:
    return "ftevent-" + random_token(24)


def checkpoint_id() -> str:
    return "ftckpt_" + random_token(24)


def completion_id() -> str:
    return "chatcmpl-" + random_token(24)


def fine_tuned_model_name(base: str, organization: str, suffix: str | None) -> str:
    """`ft:{base}:{org}:{suffix}:{8-char id}`; an empty suffix leaves `::` as OpenAI does."""
    return f"ft:{base}:{organization}:{suffix or ''}:{random_token(8)}"


class FineTunedModelName(NamedTuple):
    base: str
    organization: str
    suffix: str
    id: str


def parse_fine_tuned_model_name(name: str) -> FineTunedModelName:
    """The parts of `ft:{base}:{org}:{suffix}:{id}`; a checkpoint's `:ckpt-step-N` tail is dropped."""
    base, organization, suffix, model_id = name.removeprefix("ft:").split(":")[:4]
    return FineTunedModelName(base, organization, suffix, model_id)


def checkpoint_model_name(final_name: str, step: int) -> str:
    """An earlier checkpoint of the fine-tune `final_name`: its base, org and suffix, an 8-char id
    of its own, and `:ckpt-step-N`."""
    name = parse_fine_tuned_model_name(final_name)
    return f"{fine_tuned_model_name(name.base, name.organization, name.suffix)}:ckpt-step-{step}"


def eval_report_id() -> str:
    """An `openft eval` report's."""
    return "eval-" + random_token(24)


def eval_id() -> str:
    """An eval of the Evals API (`/v1/evals`), as OpenAI writes them."""
    return "eval_" + random_token(32)


def eval_run_id() -> str:
    return "evalrun_" + random_token(32)


def output_item_id() -> str:
    return "outputitem_" + random_token(32)


def export_id() -> str:
    return "export-" + random_token(24)


def organization_id() -> str:
    return "org-" + random_token(24)


def api_key_id() -> str:
    return "key_" + random_token(16)


def api_key() -> str:
    """The secret itself: shown once, stored only as its sha256."""
    return "sk-openft-" + random_token(48)
