"""Streaming text safely: never emit a half-decoded character or the start of a stop string.

Stop strings count from `start` on: a reply held to a grammar is matched against stop strings
only in the text after its grammar was complete (rows.py), so that a stop string never cuts a
strict reply's JSON short."""


def find_stop(text: str, stops: tuple[str, ...], start: int = 0) -> int | None:
    """Index where the earliest stop string that begins at or after `start` begins, or None."""
    found = [index for index in (text.find(stop, start) for stop in stops) if index != -1]
    return min(found) if found else None


def safe_length(text: str, stops: tuple[str, ...], start: int = 0) -> int:
    """How much of `text` can be sent now: hold back an unfinished UTF-8 character and any tail
    (at or after `start`) that could still grow into a stop string."""
    end = len(text) - 1 if text.endswith("\ufffd") else len(text)
    held = 0
    for stop in stops:
        for size in range(min(len(stop) - 1, end - start), 0, -1):
            if text[end - size : end] == stop[:size]:
                held = max(held, size)
                break
    return end - held
