"""What a training run would cost at OpenAI's published fine-tuning prices.

The prices live in `prices.json` next to this module, so updating them is a data change. They
are keyed by model family; a dated snapshot ("gpt-3.5-turbo-0125"), or a fine-tuned model
("ft:gpt-4o-mini-2024-07-18:personal::abc123") being trained further, costs what its family
costs. The longest family name that matches wins, so "gpt-4o-mini-…" is not priced as "gpt-4o".
"""

import json
from functools import cache
from importlib.resources import files


def training_cost_usd(model: str, billed_tokens: int) -> float | None:
    """USD for `billed_tokens` (tokens x epochs) of training `model`; None for an unpriced model."""
    price = price_per_1k_tokens(model)
    if price is None:
        return None
    # Rounded to a millionth of a dollar: 300K tokens at $0.008/1K is 2.4, not 2.4000000000000004.
    return round(billed_tokens / 1000 * price, 6)


def price_per_1k_tokens(model: str) -> float | None:
    if model.startswith("ft:"):
        model = model.removeprefix("ft:").split(":", 1)[0]
    prices = _prices()
    families = [f for f in prices if model == f or model.startswith(f + "-")]
    return prices[max(families, key=len)] if families else None


@cache
def _prices() -> dict[str, float]:
    text = files("openft.data").joinpath("prices.json").read_text(encoding="utf-8")
    return json.loads(text)["usd_per_1k_training_tokens"]
