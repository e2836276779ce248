"""OpenAI's Evals API (`/v1/evals`): evals, their runs and the runs' output items.

An eval says what its rows look like (`data_source_config`) and how each is graded
(`testing_criteria`: graders, parsed by `openft.graders` when the eval is created). A run reads
its rows once, when it is created (inline, a file of purpose "evals", or the organization's
stored completions), checks every row against the eval's schema (a row that breaks it is a 400
naming it, and nothing is stored), and is queued; the server's eval runner
(`services/eval_runner.py`) samples and grades it in the background. Everything is per
organization: another organization's eval, run, file or completion is a 404.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import jsonschema_rs
from pydantic import ValidationError
from sqlalchemy import delete, select

from openft import ids
from openft.errors import OpenFTError, not_found
from openft.eval.runs import summarize
from openft.graders import Grader, SandboxLimits, parse_grader
from openft.graders.templates import TemplateError
from openft.graders.templates import parse as parse_template
from openft.protocol.chat import ChatCompletionRequest
from openft.protocol.evals_api import (
    Eval,
    EvalCreateParams,
    EvalRun,
    EvalUpdateParams,
    OutputItem,
    RunCreateParams,
)
from openft.runner import eval_runs
from openft.services.chat_checks import check_request
from openft.services.files import FileService
from openft.services.graders import GraderService
from openft.services.models import ModelService
from openft.services.stored_completions import StoredCompletions
from openft.services.structured import reply_grammar
from openft.store.db import Database
from openft.store.pages import fetch_page
from openft.store.tables import EvalOutputItemRow, EvalRunRow, EvalSpecRow, StoredCompletionRow

CRITERIA = ("label_model", "string_check", "text_similarity", "python", "score_model")
# OpenAI's defaults for a completions run's sampling (SDK `SamplingParams`).
SAMPLING_DEFAULTS = {"temperature": 1.0, "top_p": 1.0, "seed": 42}
SAMPLING_KEYS = (
    "temperature",
    "max_completion_tokens",
    "top_p",
    "seed",
    "response_format",
    "tools",
    "reasoning_effort",
)
STORED_LIMIT = 10_000


class EvalsAPI:
    def __init__(
        self, db: Database, files: FileService, models: ModelService, stored: StoredCompletions, graders: GraderService
    ):
        self.db = db
        self.files = files
        self.models = models
        self.stored = stored
        self.graders = graders

    # -----------------------------------------------------------------------------------------
    # evals

    def create_eval(self, organization_id: str, params: EvalCreateParams) -> EvalSpecRow:
        config = _data_source_config(params.data_source_config)
        criteria = [
            self._criterion(organization_id, spec, f"testing_criteria[{n}]")
            for n, spec in enumerate(params.testing_criteria)
        ]
        now = int(time.time())
        row = EvalSpecRow(
            id=ids.eval_id(),
            organization_id=organization_id,
            created_at=now,
            updated_at=now,
            name=params.name or "",
            spec_metadata=params.metadata,
            data_source_config=config,
            testing_criteria=criteria,
        )
        with self.db.session() as session:
            session.add(row)
        return row

    def get_eval(self, organization_id: str, eval_id: str) -> EvalSpecRow:
        with self.db.session() as session:
            row = session.scalar(
                select(EvalSpecRow).where(EvalSpecRow.id == eval_id, EvalSpecRow.organization_id == organization_id)
            )
        if row is None:
            raise not_found("eval", eval_id, param="eval_id")
        return row

    def update_eval(self, organization_id: str, eval_id: str, params: EvalUpdateParams) -> EvalSpecRow:
        """Renames it or replaces its metadata: the only changes OpenAI allows."""
        with self.db.session() as session:
            row = session.scalar(
                select(EvalSpecRow)
                .where(EvalSpecRow.id == eval_id, EvalSpecRow.organization_id == organization_id)
                .with_for_update()
            )
            if row is None:
                raise not_found("eval", eval_id, param="eval_id")
            if params.name is not None:
                row.name = params.name
            if params.metadata is not None:
                row.spec_metadata = params.metadata
            row.updated_at = int(time.time())
        return row

    def list_evals(
        self, organization_id: str, limit: int, after: str | None, order: str, order_by: str
    ) -> tuple[list[EvalSpecRow], bool]:
        query = select(EvalSpecRow).where(EvalSpecRow.organization_id == organization_id)
        column = EvalSpecRow.updated_at if order_by == "updated_at" else EvalSpecRow.created_at
        ascending = order == "asc"
        if after:
            cursor = self.get_eval(organization_id, after)
            key = (getattr(cursor, column.key), cursor.seq)
            later = (column > key[0]) | ((column == key[0]) & (EvalSpecRow.seq > key[1]))
            earlier = (column < key[0]) | ((column == key[0]) & (EvalSpecRow.seq < key[1]))
            query = query.where(later if ascending else earlier)
        ordered = (column.asc(), EvalSpecRow.seq.asc()) if ascending else (column.desc(), EvalSpecRow.seq.desc())
        return fetch_page(self.db, query.order_by(*ordered), limit)

    def delete_eval(self, organization_id: str, eval_id: str) -> None:
        """Deletes the eval with its runs and their output items (a run in progress stops at its
        runner's next renew)."""
        with self.db.session() as session:
            where = (EvalSpecRow.id == eval_id, EvalSpecRow.organization_id == organization_id)
            if session.scalar(select(EvalSpecRow.id).where(*where).with_for_update()) is None:
                raise not_found("eval", eval_id, param="eval_id")
            session.execute(delete(EvalOutputItemRow).where(EvalOutputItemRow.eval_id == eval_id))
            session.execute(delete(EvalRunRow).where(EvalRunRow.eval_id == eval_id))
            session.execute(delete(EvalSpecRow).where(*where))

    def _criterion(self, organization_id: str, spec: Any, param: str) -> dict[str, Any]:
        """A testing criterion as stored: checked by the graders module, with an id `<name>-<uuid>`."""
        if not isinstance(spec, dict):
            raise OpenFTError(400, "A testing criterion must be a grader object.", param=param)
        kind = spec.get("type")
        if kind not in CRITERIA:
            raise OpenFTError(
                400,
                f"Unsupported testing criterion type {kind!r}: an eval's criteria are one of {', '.join(CRITERIA)}.",
                param=f"{param}.type",
            )
        if kind == "text_similarity" and not isinstance(spec.get("pass_threshold"), int | float):
            raise OpenFTError(
                400, "A text_similarity criterion needs a numeric `pass_threshold`.", param=f"{param}.pass_threshold"
            )
        self.graders.parse(organization_id, spec, param).close()  # a model grader's model: one the organization may use
        return {**spec, "id": f"{spec.get('name', kind)}-{uuid.uuid4()}"}

    # -----------------------------------------------------------------------------------------
    # runs

    async def create_run(self, organization_id: str, eval_id: str, params: RunCreateParams) -> EvalRunRow:
        spec = self.get_eval(organization_id, eval_id)
        source = params.data_source
        kind = source.get("type")
        if kind == "jsonl":
            _only(source, ("type", "source"), "data_source")
            model = None
            rows = await asyncio.to_thread(self._rows, organization_id, source.get("source"), with_stored=False)
        elif kind == "completions":
            _only(source, ("type", "source", "input_messages", "model", "sampling_params"), "data_source")
            model = await self._check_sampling(organization_id, source)
            rows = await asyncio.to_thread(
                self._rows, organization_id, source.get("source"), with_stored=True, config=spec.data_source_config
            )
            if model is not None and source.get("input_messages") is None:
                raise OpenFTError(
                    400,
                    "A completions run that samples a model needs `input_messages`.",
                    param="data_source.input_messages",
                )
        else:
            raise OpenFTError(
                400,
                f"Unsupported data_source type {kind!r}: openft runs `jsonl` and `completions` sources "
                "(`responses` needs OpenAI's Responses API, which openft does not serve).",
                param="data_source.type",
            )
        _check_rows(rows, spec.data_source_config, source.get("source") or {})
        row = EvalRunRow(
            id=ids.eval_run_id(),
            eval_id=eval_id,
            organization_id=organization_id,
            created_at=int(time.time()),
            name=params.name or _run_name(model),
            model=model,
            run_metadata=params.metadata,
            data_source=source,
            items=rows,
            status="queued",
        )
        with self.db.session() as session:
            session.add(row)
        return row

    def get_run(self, organization_id: str, eval_id: str, run_id: str) -> EvalRunRow:
        with self.db.session() as session:
            row = session.scalar(eval_runs.run_query(organization_id, eval_id, run_id))
        if row is None:
            raise not_found("eval run", run_id, param="run_id")
        return row

    def list_runs(
        self, organization_id: str, eval_id: str, limit: int, after: str | None, order: str, status: str | None
    ) -> tuple[list[EvalRunRow], bool]:
        self.get_eval(organization_id, eval_id)
        query = select(EvalRunRow).where(EvalRunRow.eval_id == eval_id, EvalRunRow.organization_id == organization_id)
        if status:
            query = query.where(EvalRunRow.status == status)
        return self._paged(query, EvalRunRow, after and self.get_run(organization_id, eval_id, after).seq, order, limit)

    def cancel_run(self, organization_id: str, eval_id: str, run_id: str) -> EvalRunRow:
        row = eval_runs.cancel(self.db, organization_id, eval_id, run_id)
        if row is None:
            raise not_found("eval run", run_id, param="run_id")
        return row

    def delete_run(self, organization_id: str, eval_id: str, run_id: str) -> None:
        if not eval_runs.remove(self.db, organization_id, eval_id, run_id):
            raise not_found("eval run", run_id, param="run_id")

    def results(self, run: EvalRunRow, criteria: list[dict]) -> dict[str, Any]:
        """The run's counts: stored once it ended, else counted from its output items so far."""
        if run.result_counts is not None:
            return {
                "result_counts": run.result_counts,
                "per_testing_criteria_results": run.per_testing_criteria_results,
                "per_model_usage": run.per_model_usage,
            }
        return summarize(graded_items(self.db, run.id), [criterion["id"] for criterion in criteria])

    # -----------------------------------------------------------------------------------------
    # output items

    def list_items(
        self,
        organization_id: str,
        eval_id: str,
        run_id: str,
        limit: int,
        after: str | None,
        order: str,
        status: str | None,
    ) -> tuple[list[EvalOutputItemRow], bool]:
        self.get_run(organization_id, eval_id, run_id)
        query = select(EvalOutputItemRow).where(EvalOutputItemRow.run_id == run_id)
        if status:
            query = query.where(EvalOutputItemRow.status == status)
        cursor = after and self.get_item(organization_id, eval_id, run_id, after).datasource_item_id
        return self._paged(query, EvalOutputItemRow, cursor, order, limit, EvalOutputItemRow.datasource_item_id)

    def get_item(self, organization_id: str, eval_id: str, run_id: str, item_id: str) -> EvalOutputItemRow:
        with self.db.session() as session:
            row = session.scalar(
                select(EvalOutputItemRow).where(
                    EvalOutputItemRow.id == item_id,
                    EvalOutputItemRow.run_id == run_id,
                    EvalOutputItemRow.eval_id == eval_id,
                    EvalOutputItemRow.organization_id == organization_id,
                )
            )
        if row is None:
            raise not_found("output item", item_id, param="output_item_id")
        return row

    def _paged(self, query, table, cursor: int | None, order: str, limit: int, column=None):
        """Items in the order of `column` (default `seq`): OpenAI's lists are ascending unless asked."""
        column = table.seq if column is None else column
        ascending = order == "asc"
        if cursor is not None:
            query = query.where(column > cursor if ascending else column < cursor)
        return fetch_page(self.db, query.order_by(column.asc() if ascending else column.desc()), limit)

    # -----------------------------------------------------------------------------------------
    # a run's rows

    def _rows(
        self, organization_id: str, source: Any, with_stored: bool, config: dict[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        """The rows of a run's source, each `{"item": …, "sample"?: …}`."""
        if not isinstance(source, dict):
            raise OpenFTError(400, "data_source.source must be an object with a `type`.", param="data_source.source")
        kind = source.get("type")
        if kind == "file_content":
            _only(source, ("type", "content"), "data_source.source")
            content = source.get("content")
            if not isinstance(content, list):
                raise OpenFTError(400, "`content` must be a list of rows.", param="data_source.source.content")
            return [_row(line, f"data_source.source.content[{n}]") for n, line in enumerate(content)]
        if kind == "file_id":
            _only(source, ("type", "id"), "data_source.source")
            return self._file_rows(organization_id, source.get("id"))
        if kind == "stored_completions" and with_stored:
            # A source without a metadata filter takes the eval's (`logs` and `stored_completions` configs).
            metadata = source.get("metadata") or (config or {}).get("metadata")
            return self._stored_rows(organization_id, {**source, "metadata": metadata})
        allowed = "file_content, file_id" + (", stored_completions" if with_stored else "")
        raise OpenFTError(400, f"Unsupported source type {kind!r}: one of {allowed}.", param="data_source.source.type")

    def _file_rows(self, organization_id: str, file_id: Any) -> list[dict[str, Any]]:
        param = "data_source.source.id"
        try:
            file = self.files.get(organization_id, str(file_id))
        except OpenFTError:
            raise not_found("File", str(file_id), param=param) from None
        rows = []
        for number, line in enumerate(self.files.read(file).decode("utf-8", "replace").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except ValueError as error:
                raise OpenFTError(400, f"File {file_id}, line {number}: invalid JSON ({error}).", param=param) from None
            rows.append(_row(value, param, f"File {file_id}, line {number}: "))
        return rows

    def _stored_rows(self, organization_id: str, source: dict[str, Any]) -> list[dict[str, Any]]:
        """The organization's stored completions that match, oldest first: each row's item is the
        request (`input`: its messages) and the stored reply (`output_text`), its sample the reply."""
        _only(source, ("type", "metadata", "model", "created_after", "created_before", "limit"), "data_source.source")
        limit = source.get("limit") or STORED_LIMIT
        rows, _ = self.stored.list(
            organization_id,
            limit=min(int(limit), STORED_LIMIT),
            model=source.get("model"),
            metadata=source.get("metadata"),
            since=source.get("created_after"),
            until=source.get("created_before"),
            completed_only=True,
        )
        return [_stored_row(row) for row in rows]

    async def _check_sampling(self, organization_id: str, source: dict[str, Any]) -> str | None:
        """The model a completions run samples (None: grade the rows' own samples), its templates
        parsed and its sampling parameters checked as a chat request would be."""
        model = source.get("model")
        messages = source.get("input_messages")
        if messages is not None:
            _check_input_messages(messages)
        if model is None:
            return None
        if not isinstance(model, str):
            raise OpenFTError(400, "`model` must be a string.", param="data_source.model")
        self.models.resolve(organization_id, model)  # 404 model_not_found for a model it cannot use
        sampling = source.get("sampling_params") or {}
        if not isinstance(sampling, dict):
            raise OpenFTError(400, "`sampling_params` must be an object.", param="data_source.sampling_params")
        _only(sampling, SAMPLING_KEYS, "data_source.sampling_params")
        request = chat_request(model, [{"role": "user", "content": "check"}], sampling)
        try:
            await asyncio.to_thread(reply_grammar, request)  # compiles response_format's schema: 400 if it cannot
        except OpenFTError as error:
            raise _in_sampling_params(error) from None
        return model


def chat_request(model: str, messages: list[dict], sampling: dict[str, Any]) -> ChatCompletionRequest:
    """The chat request for one row of a completions run: OpenAI's eval sampling defaults
    (temperature 1, top_p 1, seed 42) where `sampling` leaves them out."""
    parameters = {**SAMPLING_DEFAULTS, **{k: v for k, v in sampling.items() if k != "reasoning_effort"}}
    try:
        request = ChatCompletionRequest(model=model, messages=messages, **parameters)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise OpenFTError(400, f"{first['msg']}: '{where}'", param=f"data_source.sampling_params.{where}") from None
    try:
        check_request(request)
    except OpenFTError as error:
        raise _in_sampling_params(error) from None
    return request


def _in_sampling_params(error: OpenFTError) -> OpenFTError:
    """A chat request's error, as the run's: its param is in `data_source.sampling_params`."""
    param = f"data_source.sampling_params.{error.param}" if error.param else "data_source.sampling_params"
    return OpenFTError(error.status, error.message, param=param, code=error.code)


def grader_of(criterion: dict[str, Any], param: str, limits: SandboxLimits | None = None) -> Grader:
    """A stored criterion's grader (its `id` is the eval's, not the grader's)."""
    return parse_grader({key: value for key, value in criterion.items() if key != "id"}, param=param, limits=limits)


def sampling_of(run: EvalRunRow) -> dict[str, Any]:
    return {**SAMPLING_DEFAULTS, **(run.data_source.get("sampling_params") or {})}


# ---------------------------------------------------------------------------------------------
# checks


def _data_source_config(config: dict[str, Any]) -> dict[str, Any]:
    """The stored config: OpenAI's response shape, with the `schema` of the rows' namespaces."""
    kind = config.get("type")
    param = "data_source_config"
    if kind == "custom":
        _only(config, ("type", "item_schema", "include_sample_schema"), param)
        item_schema = config.get("item_schema")
        if not isinstance(item_schema, dict):
            raise OpenFTError(400, "`item_schema` must be a JSON Schema object.", param=f"{param}.item_schema")
        try:
            jsonschema_rs.meta.validate(item_schema)
            jsonschema_rs.validator_for(item_schema)
        except (jsonschema_rs.ValidationError, ValueError) as error:
            message = str(error).splitlines()[0]
            raise OpenFTError(400, f"Invalid item_schema: {message}", param=f"{param}.item_schema") from None
        properties, required = {"item": item_schema}, ["item"]
        if config.get("include_sample_schema"):
            properties["sample"], required = _SAMPLE_SCHEMA, ["item", "sample"]
        return {"type": "custom", "schema": {"type": "object", "properties": properties, "required": required}}
    if kind in ("logs", "stored_completions"):
        _only(config, ("type", "metadata"), param)
        metadata = config.get("metadata")
        if metadata is not None and not isinstance(metadata, dict):
            raise OpenFTError(400, "`metadata` must be an object.", param=f"{param}.metadata")
        schema = {
            "type": "object",
            "properties": {"item": {"type": "object"}, "sample": {"type": "object"}},
            "required": ["item", "sample"],
        }
        return {"type": kind, "metadata": metadata, "schema": schema}
    raise OpenFTError(
        400,
        f"Unsupported data_source_config type {kind!r}: one of custom, logs, stored_completions.",
        param=f"{param}.type",
    )


# What a sample is, when a custom config includes it (openft's reading: OpenAI's is unpublished).
_SAMPLE_SCHEMA = {
    "type": "object",
    "properties": {
        "model": {"type": "string"},
        "choices": {"type": "array"},
        "output_text": {"type": "string"},
        "output_json": {},
        "output_tools": {"type": "array"},
    },
}


def _check_input_messages(messages: Any) -> None:
    param = "data_source.input_messages"
    kind = messages.get("type") if isinstance(messages, dict) else None
    if kind == "item_reference":
        reference = messages.get("item_reference")
        if not isinstance(reference, str) or not reference.startswith("item."):
            raise OpenFTError(
                400,
                "`item_reference` must name a path in the item, like `item.input`.",
                param=f"{param}.item_reference",
            )
        return
    if kind != "template":
        raise OpenFTError(400, "`input_messages` must be a `template` or an `item_reference`.", param=f"{param}.type")
    template = messages.get("template")
    if not isinstance(template, list) or not template:
        raise OpenFTError(400, "`template` must be a non-empty list of messages.", param=f"{param}.template")
    for n, message in enumerate(template):
        where = f"{param}.template[{n}]"
        if not isinstance(message, dict) or message.get("role") not in ("user", "assistant", "system", "developer"):
            raise OpenFTError(
                400, "Each message needs a role: user, assistant, system or developer.", param=f"{where}.role"
            )
        for text, at in _texts(message.get("content"), f"{where}.content"):
            try:
                parse_template(text)
            except TemplateError as error:
                raise OpenFTError(400, str(error), param=at) from None


def _texts(content: Any, param: str) -> list[tuple[str, str]]:
    """The template strings of a message's content, each with where it is."""
    if isinstance(content, str):
        return [(content, param)]
    if isinstance(content, dict) and isinstance(content.get("text"), str):
        return [(content["text"], f"{param}.text")]
    if isinstance(content, list):
        return [pair for n, part in enumerate(content) for pair in _texts(part, f"{param}[{n}]")]
    raise OpenFTError(400, "A message's content must be text or text parts.", param=param)


def _row(value: Any, param: str, prefix: str = "") -> dict[str, Any]:
    if not isinstance(value, dict) or not isinstance(value.get("item"), dict):
        raise OpenFTError(
            400, f'{prefix}each row must be an object `{{"item": {{…}}, "sample"?: {{…}}}}`.', param=param
        )
    extra = set(value) - {"item", "sample"}
    if extra:
        raise OpenFTError(400, f"{prefix}unknown key(s) in a row: {', '.join(sorted(extra))}.", param=param)
    if "sample" in value and not isinstance(value["sample"], dict):
        raise OpenFTError(
            400, f"{prefix}a row's `sample` must be an object.", param=f"{param}.sample" if not prefix else param
        )
    return value


def _check_rows(rows: list[dict[str, Any]], config: dict[str, Any], source: dict[str, Any]) -> None:
    """Every row against the eval's schema of `item` (and `sample`, where it has one); the first
    row that breaks it is a 400 naming the row and what is wrong."""
    if not rows:
        raise OpenFTError(400, "The data source has no rows.", param="data_source.source")
    if config["type"] != "custom":
        return
    validators = {name: jsonschema_rs.validator_for(schema) for name, schema in config["schema"]["properties"].items()}
    inline = source.get("type") == "file_content"
    for n, row in enumerate(rows):
        for name, validator in validators.items():
            if name not in row:
                if name in config["schema"]["required"]:
                    raise OpenFTError(400, f"Row {n} has no `{name}`.", param=_row_param(inline, n))
                continue
            error = next(validator.iter_errors(row[name]), None)
            if error is not None:
                path = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in error.instance_path)
                raise OpenFTError(
                    400,
                    f"Row {n}: `{name}{path}` does not match the eval's {name} schema: {error.message}.",
                    param=f"{_row_param(inline, n)}.{name}" if inline else _row_param(inline, n),
                    code="invalid_item",
                )


def _row_param(inline: bool, n: int) -> str:
    return f"data_source.source.content[{n}]" if inline else "data_source.source.id"


def _only(value: dict[str, Any], keys: tuple[str, ...], param: str) -> None:
    unknown = sorted(set(value) - set(keys))
    if unknown:
        raise OpenFTError(
            400, f"Unknown parameter: '{param}.{unknown[0]}'.", param=f"{param}.{unknown[0]}", code="unknown_parameter"
        )


def _stored_row(row: StoredCompletionRow) -> dict[str, Any]:
    message = (row.response.get("choices") or [{}])[0].get("message") or {}
    item = {
        "id": row.id,
        "model": row.model,
        "input": row.request.get("messages", []),
        "output_text": message.get("content") or "",
        "metadata": row.completion_metadata,
        "created_at": row.created_at,
    }
    sample = {
        "model": row.response.get("model"),
        "choices": row.response.get("choices", []),
        "output_text": message.get("content") or "",
        "output_tools": message.get("tool_calls") or [],
        "usage": row.response.get("usage"),
    }
    return {"item": item, "sample": sample}


def _run_name(model: str | None) -> str:
    return f"{model or 'jsonl'}-{time.strftime('%Y-%m-%d-%H%M%S', time.gmtime())}"


def graded_items(db: Database, run_id: str) -> list[tuple[str, list[dict], dict]]:
    """The run's output items as `eval.runs.summarize` takes them."""
    with db.session() as session:
        query = select(EvalOutputItemRow.status, EvalOutputItemRow.results, EvalOutputItemRow.sample)
        return [tuple(row) for row in session.execute(query.where(EvalOutputItemRow.run_id == run_id))]


# ---------------------------------------------------------------------------------------------
# wire objects


def eval_object(row: EvalSpecRow) -> Eval:
    return Eval(
        id=row.id,
        name=row.name,
        data_source_config=row.data_source_config,
        testing_criteria=row.testing_criteria,
        created_at=row.created_at,
        metadata=row.spec_metadata,
    )


def run_object(row: EvalRunRow, results: dict[str, Any], origin: str) -> EvalRun:
    return EvalRun(
        id=row.id,
        eval_id=row.eval_id,
        status=row.status,
        model=row.model,
        name=row.name,
        created_at=row.created_at,
        report_url=f"{origin.rstrip('/')}/evals/{row.eval_id}/runs/{row.id}",
        data_source=row.data_source,
        metadata=row.run_metadata,
        error=row.error,
        **results,
    )


def item_object(row: EvalOutputItemRow) -> OutputItem:
    return OutputItem(
        id=row.id,
        run_id=row.run_id,
        eval_id=row.eval_id,
        created_at=row.created_at,
        status=row.status,
        datasource_item_id=row.datasource_item_id,
        datasource_item=row.datasource_item,
        results=row.results,
        sample=row.sample,
    )
