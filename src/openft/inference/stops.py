"""Streaming text safely: never emit a half-decoded character or the start of a stop string."""


def find_stop(text: str, stops: tuple[str, ...]) -> int | None:
    """Index where the earliest stop string begins in `text`, or None."""
    found = [index for index in (text.find(stop) for stop in stops) if index != -1]
    return min(found) if found else None


def safe_length(text: str, stops: tuple[str, ...]) -> int:
    """How much of `text` can be sent now: hold back an unfinished UTF-8 character and any tail
    that could still grow into a stop string."""
    end = len(text) - 1 if text.endswith("\ufffd") else len(text)
    held = 0
    for stop in stops:
        for size in range(min(len(stop) - 1, end), 0, -1):
            if text[end - size : end] == stop[:size]:
                held = max(held, size)
                break
    return end - held
