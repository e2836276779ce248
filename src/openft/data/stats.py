"""Statistics over rendered training examples: what `openft data check` reports.

Pure Python over `RenderedExample`s (no torch, no tokenizer), counted one at a time
(`TokenTally`), so a file of any size is summed in bounded memory. Lengths are counted after
truncation, so `tokens` is exactly what one epoch trains on, and what OpenAI bills per epoch
(billed tokens = tokens x epochs). `trained_tokens` are those that carry loss (label != -100):
the assistant replies with weight 1 and their end-of-turn tokens.

Percentiles interpolate linearly between the two nearest ranks (numpy's default), so the p50
of [1, 2, 3, 4] is 2.5.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
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


class TokenTally:
    """The counts behind `TokenStats`, added one rendered example at a time. Lengths are kept as a
    histogram, so memory is bounded by the context length, not by the number of examples."""

    def __init__(self) -> None:
        self.lengths: Counter[int] = Counter()  # tokens per example -> how many examples
        self.message_counts: Counter[int] = Counter()  # messages per example -> how many examples
        self.trained_tokens = 0
        self.truncated_lines: list[int] = []

    def add(self, rendered: RenderedExample, messages: int, line: int) -> None:
        self.lengths[len(rendered.input_ids)] += 1
        self.message_counts[messages] += 1
        self.trained_tokens += len(rendered.labels) - rendered.labels.count(IGNORE_INDEX)
        if rendered.truncated:
            self.truncated_lines.append(line)

    def add_pair(self, chosen: RenderedExample, rejected: RenderedExample, messages: int, line: int) -> None:
        """A DPO pair as one example: the tokens of both sides, which the trainer runs each epoch."""
        self.lengths[len(chosen.input_ids) + len(rejected.input_ids)] += 1
        self.message_counts[messages] += 1
        for side in (chosen, rejected):
            self.trained_tokens += len(side.labels) - side.labels.count(IGNORE_INDEX)
        if chosen.truncated or rejected.truncated:
            self.truncated_lines.append(line)

    def stats(self) -> TokenStats:
        if not self.lengths:
            raise ValueError("no example to describe")
        return TokenStats(
            examples=self.lengths.total(),
            messages_per_example=histogram_distribution(self.message_counts),
            tokens_per_example=histogram_distribution(self.lengths),
            tokens=sum(length * n for length, n in self.lengths.items()),
            trained_tokens=self.trained_tokens,
            truncated_lines=self.truncated_lines,
        )


def distribution(values: Iterable[float]) -> Distribution:
    return histogram_distribution(Counter(values))


def histogram_distribution(histogram: Counter) -> Distribution:
    """The distribution of the values counted in `histogram` (value -> how many times)."""
    ordered = sorted(histogram.items())
    n = histogram.total()
    return Distribution(
        min=ordered[0][0],
        p5=_percentile(ordered, n, 5),
        median=_percentile(ordered, n, 50),
        mean=sum(value * count for value, count in ordered) / n,
        p95=_percentile(ordered, n, 95),
        max=ordered[-1][0],
    )


def percentile(ordered: list[float], q: float) -> float:
    """The q-th percentile (0-100) of sorted, non-empty `ordered`, linearly interpolated."""
    return _percentile(sorted(Counter(ordered).items()), len(ordered), q)


def _percentile(ordered: list[tuple[float, int]], n: int, q: float) -> float:
    """The q-th percentile of the `n` values counted in `ordered`: (value, count) pairs, sorted."""
    rank = (n - 1) * q / 100
    low = int(rank)
    high = min(low + 1, n - 1)
    return _nth(ordered, low) + (_nth(ordered, high) - _nth(ordered, low)) * (rank - low)


def _nth(ordered: list[tuple[float, int]], index: int) -> float:
    """The value at 0-based `index` of the sorted values counted in `ordered`."""
    for value, count in ordered:
        if index < count:
            return value
        index -= count
    raise IndexError(index)
