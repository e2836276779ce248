"""Next-token choice: penalties on tokens already generated, then greedy at temperature 0, else
temperature + nucleus (top_p) sampling; and the log-probabilities a client may ask for.

Values at the edges of OpenAI's ranges are sampled as their limits: a temperature below
GREEDY_BELOW is greedy (as vLLM's is; dividing logits by 1e-40 overflows to inf, and the
distribution it stands for is greedy's), and a top_p of 0 keeps the most likely token alone. A
row whose scores are not finite (a NaN or +inf from its adapter, or nothing left that its
grammar allows) raises SamplingError: its request fails, the batch goes on."""

import math
from collections import Counter

import torch

GREEDY_BELOW = 1e-5


class SamplingError(ValueError):
    pass


def bias(logits: torch.Tensor, logit_bias: tuple[tuple[int, float], ...]) -> torch.Tensor:
    """`logit_bias`: a value added to the logit of each listed token id (ids past the vocabulary
    are ignored, as a client's tokenizer may differ). One indexed add, however many entries."""
    entries = [(token, value) for token, value in logit_bias if token < logits.shape[-1]]
    if not entries:
        return logits
    ids = torch.tensor([token for token, _ in entries], device=logits.device)
    values = torch.tensor([value for _, value in entries], dtype=logits.dtype, device=logits.device)
    return logits.index_add(0, ids, values)


def penalize(logits: torch.Tensor, generated: Counter, presence: float, frequency: float) -> torch.Tensor:
    """OpenAI's penalties: each token's logit minus `frequency` x the times it was generated, and
    minus `presence` once if it was generated at all."""
    if not generated or not (presence or frequency):
        return logits
    ids = torch.tensor(list(generated), device=logits.device)
    counts = torch.tensor(list(generated.values()), dtype=logits.dtype, device=logits.device)
    logits = logits.clone()
    logits[ids] -= frequency * counts + presence
    return logits


def next_token(logits: torch.Tensor, temperature: float, top_p: float, generator: torch.Generator | None) -> int:
    token = int(logits.argmax())  # a NaN counts as the largest: caught below with the infinities
    if not math.isfinite(logits[token]):
        raise SamplingError(
            "The model's scores for the next token were not finite (NaN or infinity, or every token "
            "excluded), so no token could be chosen."
        )
    if temperature < GREEDY_BELOW:
        return token
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    if top_p < 1.0:
        # Stable: tied tokens (common with bf16 logits) keep token order, as greedy's argmax
        # breaks ties, so a top_p near 0 picks greedy's token.
        sorted_probs, order = probs.sort(descending=True, stable=True)
        # Keep the smallest set whose mass reaches top_p (the first token always survives).
        outside = sorted_probs.cumsum(-1) - sorted_probs > top_p
        sorted_probs[outside] = 0.0
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
    return int(torch.multinomial(probs, 1, generator=generator))


def token_logprobs(logits: torch.Tensor, token: int, top: int) -> tuple[float, list[tuple[int, float]]]:
    """The chosen token's log-probability under the model's distribution (temperature 1, after
    penalties) and the `top` most likely tokens with theirs, most likely first."""
    logprobs = torch.log_softmax(logits.float(), dim=-1)
    best = torch.topk(logprobs, top) if top else None
    alternatives = list(zip(best.indices.tolist(), best.values.tolist())) if best is not None else []
    # A grammar's mask leaves some positions fewer possible tokens than asked for: no -inf entries.
    alternatives = [(other, logprob) for other, logprob in alternatives if logprob > float("-inf")]
    # Ties (common with bf16 logits) in token order, as greedy's argmax breaks them.
    alternatives.sort(key=lambda alternative: (-alternative[1], alternative[0]))
    return float(logprobs[token]), alternatives
