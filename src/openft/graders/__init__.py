"""OpenAI's graders, built once for the three places that use them: eval testing criteria,
`/v1/fine_tuning/alpha/graders/{validate,run}`, and reinforcement fine-tuning's rewards.

    grader = parse_grader(spec)          # OpenAI's JSON → checked, compiled (400 with `param`)
    result = await grade(grader, make_sample(text), item, models)
    result.reward, result.passed, result.metadata()

Nothing here imports torch; model graders reach a model only through the `ModelCaller` the
caller passes."""

from openft.graders.grade import grade
from openft.graders.model_graders import ModelCaller, ModelRefusal
from openft.graders.result import ERROR_FLAGS, GradeResult
from openft.graders.sample import make_sample
from openft.graders.sandbox import SandboxLimits
from openft.graders.spec import Grader, parse_grader

__all__ = [
    "ERROR_FLAGS",
    "GradeResult",
    "Grader",
    "ModelCaller",
    "ModelRefusal",
    "SandboxLimits",
    "grade",
    "make_sample",
    "parse_grader",
]
