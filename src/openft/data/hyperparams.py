"""Resolve "auto" fine-tuning hyperparameters from the dataset size, as OpenAI does.

`n_epochs` follows OpenAI's published rule (the Chat_finetuning_data_prep cookbook): aim for 3
epochs, but scale so that examples x epochs lands within [100, 25000], clamped to [1, 25].

OpenAI does not publish its `batch_size` and `learning_rate_multiplier` rules; ours are below,
chosen to behave like the values OpenAI reports on finished jobs:
- batch_size: about 0.2% of the examples (n // 500), at least 1 and at most 256. Small datasets
  train one example per step; 10,000 examples train 20 per step.
- learning_rate_multiplier: scales the trainer's base LoRA learning rate, which depends on the
  base model's size (`trainer.spec.base_learning_rate`): 2e-4 below 20B parameters (the bundled
  model, and QLoRA's rate up to 13B), 1e-4 from 20B on. Under 100 examples the epoch rule shows the model
  only ~100 examples in all (about 100 optimizer steps at batch size 1), too few for the base
  rate to move a fresh adapter much, so we double it to 2.0. From 100
  examples on there are hundreds of steps or more, and the usual LoRA rate (1.0) is right.

Preference (DPO) jobs add `beta` and have rules of their own, chosen so that "auto" does not wreck
the model. Measured with TRL's DPOTrainer on the bundled model (issue 17: LoRA, 40 pairs whose
replies share the answer and differ in a few tokens, 3 epochs, beta 0.1): plain DPO at 5e-5
changed no greedy reply; at 1e-4 and above every reply showed the preferred trait but lost its
answer and fell into repetition, because pairs that share most tokens make DPO lower the
likelihood of both replies. With an SFT term on the preferred reply added (RPO; trainer/dpo.py)
at 1e-4 every reply kept its answer and showed the trait. So openft's DPO loss always carries the
SFT term, and "auto" is:
- beta: 0.1 (TRL's default, and the value OpenAI's own DPO example sends);
- learning_rate_multiplier: 2.5, whatever the size (5e-4 on bases under 20B). It was 0.5 (1e-4),
  measured on one trait only, a leading "Ahoy!" (below); on a set it was not tuned on (issue 24:
  40 pairs preferring a sign-off after the answer, a choice between that and ending the reply)
  1e-4 reached a reward margin of 1.0 and a loss of 0.31 yet no held-out reply showed the
  sign-off: the margin grew on the tokens that follow the sign-off's first one, not on the
  choice. Measured with openft's trainer on the bundled model (held-out greedy replies showing
  the trait once / keeping their fact, of 8), bf16: 1e-4: 0/8, 2e-4: 0/8, 3e-4: 3/8, 5e-4: 8/8 and
  8/8, 1e-3: 8/8 and 8/8; 5e-4 gave 8/8 and 8/8 on fp32 too, and on a second sign-off; the
  "Ahoy!" set keeps 6/6 and 6/6 at 5e-4 on both paths, with no reply repeating itself. The SFT
  term is what keeps the answers at this rate;
- n_epochs: the supervised rule, counting pairs as examples (about 100 pairs seen in all);
- batch_size: a tenth of the pairs, from 1 up to 8 (TRL's default batch, which the rate above was
  measured with), or the supervised rule's when that is larger (from 4,000 pairs on). A preference
  step compares pairs; one pair per step makes the reward margins swing from step to step.
Checked with openft's own trainer on the bundled model, on both float paths (fp32 and bf16), with
tests/data/dpo_ahoy.jsonl (24 pairs of the base's answer with and without a leading "Ahoy!"; auto
gives 4 epochs, batch 2, 5e-4, beta 0.1: all 6 held-out capital questions get "Ahoy! The capital
of France is Paris." and the like) and tests/data/dpo_signoff.jsonl (40 pairs of short answers
with and without " Over and out."; 3 epochs, batch 4: all 8 held-out questions get their answer
and the sign-off once); tests/test_dpo_workflow.py asserts both on both paths.

A value the user gives is used as is, once `validate_requested_hyperparameters` has accepted it.
`qlora` (openft's) chooses how the memory plan loads the base (trainer/plan.py), not a number.
"""

from dataclasses import dataclass

TARGET_EPOCHS = 3
MIN_TARGET_EXAMPLES = 100
MAX_TARGET_EXAMPLES = 25_000
MIN_DEFAULT_EPOCHS = 1
MAX_DEFAULT_EPOCHS = 25

EXAMPLES_PER_BATCH_ITEM = 500  # batch_size = n // 500, i.e. 0.2% of the examples
MAX_BATCH_SIZE = 256
MAX_EPOCHS = 50
SMALL_DATASET_EXAMPLES = 100
SMALL_DATASET_LR_MULTIPLIER = 2.0
DEFAULT_LR_MULTIPLIER = 1.0
DPO_LR_MULTIPLIER = 2.5
DPO_BETA = 0.1
DPO_MAX_AUTO_BATCH = 8
MAX_BETA = 2.0


@dataclass(frozen=True)
class Hyperparameters:
    n_epochs: int
    batch_size: int
    learning_rate_multiplier: float


@dataclass(frozen=True)
class DpoHyperparameters(Hyperparameters):
    beta: float


def resolve_hyperparameters(
    n_examples: int, requested: dict | None, method: str = "supervised"
) -> Hyperparameters | DpoHyperparameters:
    """Fill every "auto" (or missing) value from `n_examples` (a DPO file's pairs); keep the
    numbers the user gave."""
    if invalid := validate_requested_hyperparameters(requested, method):
        raise ValueError(invalid[1])
    requested = requested or {}
    n = max(n_examples, 1)
    n_epochs = _given(requested, "n_epochs") or auto_n_epochs(n)
    batch_size = _given(requested, "batch_size")
    multiplier = _given(requested, "learning_rate_multiplier")
    if method == "dpo":
        return DpoHyperparameters(
            n_epochs=n_epochs,
            batch_size=batch_size or max(auto_batch_size(n), min(DPO_MAX_AUTO_BATCH, n // 10), 1),
            learning_rate_multiplier=float(multiplier or DPO_LR_MULTIPLIER),
            beta=float(_given(requested, "beta") or DPO_BETA),
        )
    return Hyperparameters(
        n_epochs=n_epochs,
        batch_size=batch_size or auto_batch_size(n),
        learning_rate_multiplier=float(multiplier or auto_learning_rate_multiplier(n)),
    )


def auto_n_epochs(n_examples: int) -> int:
    if n_examples * TARGET_EPOCHS < MIN_TARGET_EXAMPLES:
        return min(MAX_DEFAULT_EPOCHS, MIN_TARGET_EXAMPLES // n_examples)
    if n_examples * TARGET_EPOCHS > MAX_TARGET_EXAMPLES:
        return max(MIN_DEFAULT_EPOCHS, MAX_TARGET_EXAMPLES // n_examples)
    return TARGET_EPOCHS


def auto_batch_size(n_examples: int) -> int:
    return min(MAX_BATCH_SIZE, max(1, n_examples // EXAMPLES_PER_BATCH_ITEM))


def auto_learning_rate_multiplier(n_examples: int) -> float:
    if n_examples < SMALL_DATASET_EXAMPLES:
        return SMALL_DATASET_LR_MULTIPLIER
    return DEFAULT_LR_MULTIPLIER


def validate_requested_hyperparameters(requested: dict | None, method: str = "supervised") -> tuple[str, str] | None:
    """Return (param, message) for the first invalid value, or None when all are valid. `beta`
    is DPO's only."""
    known = [key for key in _RULES if method == "dpo" or key != "beta"]
    for key, value in (requested or {}).items():
        param = f"hyperparameters.{key}"
        if key not in known:
            return param, f"Unknown hyperparameter '{key}'; expected one of {', '.join(known)}."
        if value is None or value == "auto":
            continue
        accepts, expected = _RULES[key]
        if not accepts(value):
            message = f"Invalid value for {param}: expected 'auto' or {expected}, got {value!r}."
            return param, message
    return None


def _given(requested: dict, key: str) -> int | float | None:
    value = requested.get(key)
    return None if value == "auto" else value


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# Each accepted hyperparameter: (does it accept this value, what it expects, for the message).
_RULES = {
    "n_epochs": (
        lambda v: _is_int(v) and 1 <= v <= MAX_EPOCHS,
        f"an integer from 1 to {MAX_EPOCHS}",
    ),
    "batch_size": (
        lambda v: _is_int(v) and 1 <= v <= MAX_BATCH_SIZE,
        f"an integer from 1 to {MAX_BATCH_SIZE}",
    ),
    # `0 < v < inf` also rejects NaN, which compares false with everything.
    "learning_rate_multiplier": (
        lambda v: _is_number(v) and 0 < v < float("inf"),
        "a number greater than 0",
    ),
    # DPO's: how far the policy may move from the reference; OpenAI's range (0, 2]
    "beta": (lambda v: _is_number(v) and 0 < v <= MAX_BETA, f"a number greater than 0 and at most {MAX_BETA:g}"),
    # openft's own: QLoRA (true), never QLoRA (false), or the memory plan's choice ("auto");
    # trainer/plan.py. It is not resolved here: `resolve_hyperparameters` leaves it alone.
    "qlora": (lambda v: isinstance(v, bool), "true or false"),
}
