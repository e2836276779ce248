"""OpenAI-style identifiers: a prefix and a random alphanumeric tail."""

import secrets
import string

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


def eval_id() -> str:
    return "eval-" + random_token(24)


def organization_id() -> str:
    return "org-" + random_token(24)


def api_key_id() -> str:
    return "key_" + random_token(16)


def api_key() -> str:
    """The secret itself: shown once, stored only as its sha256."""
    return "sk-openft-" + random_token(48)
