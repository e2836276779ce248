"""Statistics over rendered training examples: what `openft data check` reports.

Pure Python over `RenderedExample`s (no torch, no tokenizer). Lengths are counted after
truncation, so `tokens` is exactly what one epoch trains on, and what OpenAI bills per epoch
(billed tokens = tokens x epochs). `trained_tokens` are those that carry loss (label != -100):
the assistant replies with weight 1 and their end-of-turn tokens.

Percentiles interpolate linearly between the two nearest ranks (numpy's default), so the p50
of [1, 2, 3, 4] is 2.5.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from openft.data.labels import IGNORE_INDEX, RenderedExample


@dataclass(frozen=True)
class Distribution:
    min: float
    p5: float
    median: float
    mean: float
    p95: float
    max: float


@dataclass(frozen=True)
class TokenStats:
    examples: int
    messages_per_example: Distribution
    tokens_per_example: Distribution
    tokens: int  # all tokens of all examples, after truncation: one epoch
    trained_tokens: int  # of those, the ones that carry loss
    truncated_lines: list[int]  # 1-based lines of the examples cut to the context length

    def to_dict(self) -> dict:
        return asdict(self)


def token_stats(rendered: list[RenderedExample], message_counts: list[int], lines: list[int]) -> TokenStats:
    """Statistics of examples `rendered` from `lines` of a file, with `message_counts` messages."""
    if not rendered:
        raise ValueError("token_stats needs at least one example")
    return TokenStats(
        examples=len(rendered),
        messages_per_example=distribution(message_counts),
        tokens_per_example=distribution([len(r.input_ids) for r in rendered]),
        tokens=sum(len(r.input_ids) for r in rendered),
        trained_tokens=sum(label != IGNORE_INDEX for r in rendered for label in r.labels),
        truncated_lines=[line for r, line in zip(rendered, lines, strict=True) if r.truncated],
    )


def distribution(values: list[float]) -> Distribution:
    ordered = sorted(values)
    return Distribution(
        min=ordered[0],
        p5=percentile(ordered, 5),
        median=percentile(ordered, 50),
        mean=sum(ordered) / len(ordered),
        p95=percentile(ordered, 95),
        max=ordered[-1],
    )


def percentile(ordered: list[float], q: float) -> float:
    """The q-th percentile (0-100) of sorted, non-empty `ordered`, linearly interpolated."""
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)
