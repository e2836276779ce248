"""What a training run, and serving a model, would cost at OpenAI's published prices.

The prices live in `prices.json` next to this module, so updating them is a data change. They
are keyed by model family; a dated snapshot ("gpt-3.5-turbo-0125"), or a fine-tuned model
("ft:gpt-4o-mini-2024-07-18:personal::abc123") being trained further, costs what its family
costs. The longest family name that matches wins, so "gpt-4o-mini-…" is not priced as "gpt-4o".
"""

import json
from dataclasses import dataclass
from functools import cache
from importlib.resources import files

# Prices a model OpenAI does not sell (SmolLM2…) as if it were this one, flagged `reference`:
# the training cost of `openft data check`, the inference costs of an eval.
REFERENCE_PRICE_MODEL = "gpt-3.5-turbo"


def training_cost_usd(model: str, billed_tokens: int) -> float | None:
    """USD for `billed_tokens` (tokens x epochs) of training `model`; None for an unpriced model."""
    price = price_per_1k_tokens(model)
    if price is None:
        return None
    # Rounded to a millionth of a dollar: 300K tokens at $0.008/1K is 2.4, not 2.4000000000000004.
    return round(billed_tokens / 1000 * price, 6)


def price_per_1k_tokens(model: str) -> float | None:
    prices = _prices()["usd_per_1k_training_tokens"]
    family = _family(model, prices)
    return prices[family] if family else None


@dataclass(frozen=True)
class InferencePrice:
    """What OpenAI charges to serve one request's tokens, in USD per 1M tokens."""

    model: str  # the family priced
    input: float
    output: float

    def per_1k_requests_usd(self, prompt_tokens: float, completion_tokens: float) -> float:
        """USD for 1,000 requests of this many prompt and completion tokens each (on average)."""
        return round(1000 * (prompt_tokens * self.input + completion_tokens * self.output) / 1e6, 6)


def inference_price(model: str, fine_tuned: bool) -> InferencePrice | None:
    """OpenAI's price to chat with `model` (a fine-tune of it when `fine_tuned`: OpenAI charges
    more per token for those); None for an unpriced model."""
    prices = _prices()["usd_per_1m_inference_tokens"]
    family = _family(model, prices)
    if family is None:
        return None
    price = prices[family]["fine_tuned" if fine_tuned else "base"]
    return InferencePrice(family, price["input"], price["output"])


def _family(model: str, prices: dict) -> str | None:
    if model.startswith("ft:"):
        model = model.removeprefix("ft:").split(":", 1)[0]
    families = [f for f in prices if model == f or model.startswith(f + "-")]
    return max(families, key=len) if families else None


@cache
def _prices() -> dict:
    text = files("openft.data").joinpath("prices.json").read_text(encoding="utf-8")
    return json.loads(text)
