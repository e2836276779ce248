"""What a chat request may ask, beyond what its wire model (protocol/chat.py) checks: OpenAI's
limits and messages for the rest, so that a value past an edge is a 400 naming it, never a
fault in the engine."""

from openft.errors import OpenFTError
from openft.protocol.chat import ChatCompletionRequest

MAX_STOP_SEQUENCES = 4


def check_request(request: ChatCompletionRequest) -> None:
    """OpenFTError(400) for the first thing OpenAI would refuse, or openft could not honour."""
    if request.top_logprobs and not request.logprobs:
        raise OpenFTError(400, "top_logprobs requires logprobs to be true.", param="top_logprobs")
    for token, bias in (request.logit_bias or {}).items():
        if not token.isdigit() or not -100 <= bias <= 100:
            raise OpenFTError(
                400,
                f"Invalid logit_bias entry {token!r}: {bias!r}; keys are token ids, values from -100 to 100.",
                param="logit_bias",
            )
    stops = request.stop_strings()
    if len(stops) > MAX_STOP_SEQUENCES:
        raise OpenFTError(
            400,
            f"Invalid 'stop': {len(stops)} sequences given, at most {MAX_STOP_SEQUENCES} are allowed.",
            param="stop",
            code="invalid_value",
        )
    if (where := _lone_surrogate(request.model_dump(exclude_none=True), "")) is not None:
        raise OpenFTError(
            400,
            f"Invalid '{where}': the text holds a lone UTF-16 surrogate (an unpaired \\ud800-\\udfff escape), "
            "which is no character. Send text as valid Unicode.",
            param=where,
            code="invalid_value",
        )


def _lone_surrogate(value, path: str) -> str | None:
    """The path of the first string in `value` that UTF-8 cannot encode (a JSON body may
    escape half a surrogate pair, which Python keeps as is), or None."""
    if isinstance(value, str):
        try:
            value.encode()
        except UnicodeEncodeError:
            return path
        return None
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        where = f"{path}.{key}" if path else str(key)
        if isinstance(key, str) and _lone_surrogate(key, where) is not None:
            return where
        if (found := _lone_surrogate(item, where)) is not None:
            return found
    return None
