"""Grading one sample with one parsed grader: never raises for what the data does (a missing
variable, a Python grader that throws, a model that answers badly, a formula that divides by
zero); each is an error flag in the result, with grade 0."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from openft.graders import similarity, templates
from openft.graders.formula import FormulaError
from openft.graders.model_graders import ModelCaller, grade_model
from openft.graders.result import GradeResult
from openft.graders.spec import Grader, LabelModel, Multi, Python, ScoreModel, StringCheck, TextSimilarity


async def grade(grader: Grader, sample: dict[str, Any], item: Any, models: ModelCaller) -> GradeResult:
    """`grader`'s verdict on `sample` (see `sample.make_sample`) for the dataset row `item`.
    `models` answers score_model and label_model graders (and those inside a multi); graders
    that call no model never use it. Python graders run in their sandbox process, the others
    in this process (text similarity in a thread: NLTK and rouge-score are slow on long text)."""
    if isinstance(grader, ScoreModel | LabelModel):
        return await grade_model(grader, sample, item, models)
    if isinstance(grader, Multi):
        return await _multi(grader, sample, item, models)
    started = time.perf_counter()
    result = GradeResult(reward=0.0, name=grader.name, type=grader.type)
    try:
        if isinstance(grader, StringCheck):
            result.reward = _string_check(grader, sample, item)
        elif isinstance(grader, TextSimilarity):
            text, reference = grader.input.render(item, sample), grader.reference.render(item, sample)
            result.reward = await asyncio.to_thread(similarity.score, grader.evaluation_metric, text, reference)
        else:
            assert isinstance(grader, Python)
            outcome = await grader.sandbox.grade(sample, item)
            result.reward = outcome.reward
            result.errors.update(outcome.errors)
    except templates.MissingVariable as missing:
        result.reward = 0.0
        result.errors["invalid_variable_error"] = True
        result.errors["invalid_variable_error_details"] = str(missing)
    result.passed = _passed(grader, result)
    result.execution_time = time.perf_counter() - started
    return result


def _string_check(grader: StringCheck, sample: dict[str, Any], item: Any) -> float:
    text, reference = grader.input.render(item, sample), grader.reference.render(item, sample)
    if grader.operation == "eq":
        return float(text == reference)
    if grader.operation == "ne":
        return float(text != reference)
    if grader.operation == "like":
        return float(reference in text)
    return float(reference.lower() in text.lower())  # ilike


async def _multi(grader: Multi, sample: dict[str, Any], item: Any, models: ModelCaller) -> GradeResult:
    started = time.perf_counter()
    keys = list(grader.graders)
    parts = await asyncio.gather(*(grade(grader.graders[key], sample, item, models) for key in keys))
    result = GradeResult(reward=0.0, name=grader.name, type=grader.type, sub_results=dict(zip(keys, parts)))
    result.scores = {key: part.reward for key, part in zip(keys, parts)}
    for part in parts:
        for flag, value in part.errors.items():
            if value and not result.errors[flag]:
                result.errors[flag] = value
        for model, usage in part.token_usage_per_model.items():
            total = result.token_usage_per_model.setdefault(model, dict.fromkeys(usage, 0))
            for key, count in usage.items():
                total[key] = total.get(key, 0) + count
    if not result.errored:
        try:
            result.reward = grader.calculate_output.evaluate(result.scores)
        except FormulaError as error:
            result.errors["other_error"] = True
            result.errors["other_error_details"] = str(error)
    result.passed = _passed(grader, result)
    result.execution_time = time.perf_counter() - started
    return result


def _passed(grader: Grader, result: GradeResult) -> bool | None:
    if result.errored:
        return False
    if grader.pass_threshold is not None:
        return result.reward >= grader.pass_threshold
    if isinstance(grader, StringCheck):
        return result.reward == 1.0
    return None
