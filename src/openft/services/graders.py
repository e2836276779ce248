"""`POST /v1/fine_tuning/alpha/graders/validate` and `/run`, and the `ModelCaller` through which
model graders reach a model: openft's chat path for the caller's organization (a base, its
`ft:` models, or an upstream the gateway lets it use), never stored."""

from __future__ import annotations

from typing import Any

from openft.errors import OpenFTError
from openft.graders import (
    Grader,
    GradeResult,
    ModelCaller,
    ModelRefusal,
    SandboxLimits,
    grade,
    make_sample,
    parse_grader,
)
from openft.graders.spec import LabelModel, Multi, ScoreModel
from openft.protocol.chat import ChatCompletionRequest
from openft.protocol.graders import GraderRunParams, GraderValidateParams
from openft.services.completions import Completions
from openft.services.models import ModelService
from openft.settings import Settings


class GraderService:
    def __init__(self, settings: Settings, completions: Completions, models: ModelService):
        self.completions = completions
        self.models = models
        self.limits = SandboxLimits.from_settings(settings)

    def parse(self, organization_id: str, spec: Any, param: str = "grader") -> Grader:
        """`parse_grader`, and every model a model grader names is one the organization may use
        (else 400 `model_not_found` on that grader's `model`)."""
        grader = parse_grader(spec, param=param, limits=self.limits)
        self._check_models(organization_id, grader, param)
        return grader

    def validate(self, organization_id: str, body: GraderValidateParams) -> dict[str, Any]:
        """The grader as it will be run (400 naming the field if it cannot be)."""
        return {"grader": self.parse(organization_id, body.grader).spec}

    async def run(self, organization_id: str, body: GraderRunParams) -> GradeResult:
        grader = self.parse(organization_id, body.grader)
        try:
            return await grade(grader, make_sample(body.model_sample), body.item, self.model_caller(organization_id))
        finally:
            grader.close()

    def model_caller(self, organization_id: str) -> ModelCaller:
        """Model graders' calls, as `organization_id`'s chat requests."""

        async def call(
            model: str, messages: list[dict[str, Any]], response_format: dict[str, Any] | None, sampling: dict[str, Any]
        ) -> tuple[str, dict[str, int]]:
            body = {"model": model, "messages": messages, "store": False, **sampling}
            if response_format is not None:
                body["response_format"] = response_format
            reply = await self.completions.create(organization_id, ChatCompletionRequest(**body), body)
            reply = reply if isinstance(reply, dict) else reply.model_dump()
            message = reply["choices"][0]["message"]
            if message.get("refusal"):
                raise ModelRefusal(message["refusal"])
            usage = reply.get("usage") or {}
            cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
            return message.get("content") or "", {
                "prompt_tokens": usage.get("prompt_tokens", 0),
                "completion_tokens": usage.get("completion_tokens", 0),
                "total_tokens": usage.get("total_tokens", 0),
                "cached_tokens": cached,
            }

        return call

    def _check_models(self, organization_id: str, grader: Grader, param: str) -> None:
        if isinstance(grader, Multi):
            for key, part in grader.graders.items():
                self._check_models(organization_id, part, f"{param}.graders.{key}")
        elif isinstance(grader, ScoreModel | LabelModel):
            if self.completions.upstream and self.completions.relay.key_for(organization_id, grader.model):
                return
            try:
                self.models.get(organization_id, grader.model)
            except OpenFTError as error:
                raise OpenFTError(400, error.message, param=f"{param}.model", code="model_not_found") from None
