"""The model store: base models as folders under `<data dir>/models`, each registered in the
database so the API lists, trains and serves it; the OpenAI names that resolve to them; and the
fine-tunes trained on them (LoRA adapters in the artifact storage), registered by their jobs.

Adding a model (`add`) stages its files in `models/.staging/<name>-<random>/`, checks them
(models/checks.py), writes its facts there (`openft.json`, models/facts.py), renames the folder
to `models/<name>` and registers the row with its facts and aliases: a failure at any step
leaves no folder and no row. Everything happens under a per-name file lock
(`models/.locks/<name>.lock`), so processes that add the same model at once (a server and two
workers starting together on a fresh data dir, each adding the bundled model) do it once: the
others wait, then find it there. A process that dies mid-add leaves only a staging folder, which
the next add of that name removes; a lock dies with its process.

A name registered in the database but missing from this host's folder (another host of a fleet
added it) is installed by adding it again here; its digest must match the registered one.

Aliases are rows too (`id` the alias, `base_model` the base, no adapter), so the unique index
on names keeps an alias from meaning two models. Which base an OpenAI name resolves to, in order
of precedence: the `OPENFT_MODEL_ALIASES` setting, an alias stored by `--alias`, then
`OPENFT_DEFAULT_BASE_MODEL` for every name of `settings.OPENAI_ALIASES`.
"""

from __future__ import annotations

import re
import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from openft.models.bundled import bundled_gguf
from openft.models.checks import check_model
from openft.models.errors import ModelStoreError
from openft.models.facts import ModelFacts, read_facts, write_facts
from openft.models.sources import Source, parse_source, stage
from openft.settings import BUNDLED_MODEL, OPENAI_ALIASES, Settings
from openft.store.db import Database
from openft.store.organizations import organization_name
from openft.store.tables import JobRow, ModelRow

# `owned_by` of base models and of the OpenAI aliases that point at one.
SYSTEM_OWNER = "system"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
FINISHED = ("succeeded", "failed", "cancelled")


@dataclass
class Added:
    """What `add` did: the model's facts, whether it was already in the store, and warnings."""

    name: str
    facts: ModelFacts
    already: bool = False
    warnings: list[str] = field(default_factory=list)


def add(
    settings: Settings,
    db: Database,
    source_text: str,
    name: str | None = None,
    aliases: tuple[str, ...] = (),
    trust_remote_code: bool = False,
    chat_template: str | None = None,
) -> Added:
    """Add a model from a folder, a .gguf file or a hub id (see the module docstring)."""
    source = parse_source(source_text)
    name = name or source.default_name
    _check_name(name, "model name")
    for alias in aliases:
        _check_name(alias, "alias")
    with _locked(settings.models_dir, name):
        facts = read_facts(settings.models_dir / name)
        if facts is not None and facts.source != source.location:
            raise ModelStoreError(
                f"{name} is already in the store, added from {facts.source}: remove it first "
                f"(`openft models remove {name}`) or choose another --name."
            )
        return _add_locked(settings, db, source, name, aliases, trust_remote_code, chat_template)


def ensure_bundled_model(settings: Settings, db: Database) -> None:
    """Add the bundled SmolLM2-135M-Instruct (its GGUF, converted once), as `add` would."""
    with _locked(settings.models_dir, BUNDLED_MODEL):
        facts = _bundled_folder(settings.models_dir)
        _add_locked(settings, db, Source("gguf", facts.source), BUNDLED_MODEL, (), False, None)


def import_bundled(models_dir: Path) -> Path:
    """The bundled model's folder in `models_dir`, converted from its GGUF if it is not there
    (the store's files only: no database)."""
    with _locked(models_dir, BUNDLED_MODEL):
        _bundled_folder(models_dir)
    return models_dir / BUNDLED_MODEL


def prepare_bases(settings: Settings, db: Database) -> None:
    """What `openft serve` and `openft worker` do first: add the bundled model if it is the
    default base, and make sure that every base the settings name is registered."""
    if settings.default_base_model == BUNDLED_MODEL:
        ensure_bundled_model(settings, db)
    check_configured_bases(settings, db)


def check_configured_bases(settings: Settings, db: Database) -> None:
    """The bases the settings name (the default one, the aliases' targets) are registered."""
    with db.session() as session:
        bases = set(session.scalars(select(ModelRow.id).where(ModelRow.id == ModelRow.base_model)))
    named = {"OPENFT_DEFAULT_BASE_MODEL": settings.default_base_model}
    named |= {f"OPENFT_MODEL_ALIASES[{alias!r}]": base for alias, base in settings.model_aliases.items()}
    for setting, base in named.items():
        if base not in bases:
            raise ModelStoreError(
                f"{setting} is {base!r}, which is not a registered base model: add it with "
                f"`openft models add SOURCE --name {base}` (registered: {', '.join(sorted(bases)) or 'none'})."
            )


def register_base(db: Database, name: str, facts: ModelFacts | None = None, aliases: tuple[str, ...] = ()) -> bool:
    """Register base `name` (a folder of the store) with its facts and aliases, as a model of
    every organization; True if it was registered already. Safe against another process (of
    this host or another) registering it at the same time."""
    for attempt in (1, 2):
        try:
            with db.session() as session:
                already = _register(session, name, facts)
                for alias in aliases:
                    _register_alias(session, alias, name)
            return already
        except IntegrityError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def remove(settings: Settings, db: Database, name: str) -> str:
    """Remove a base (its folder, row and aliases) or a stored alias; says which it was.
    Refused while a job that has not finished or a fine-tune depends on the base."""
    with _locked(settings.models_dir, name):
        with db.session() as session:
            kind = _remove_rows(session, settings, name)
        if kind == "base":  # once the rows are gone: a folder left by a crash here is added again
            _remove_folder(settings.models_dir, name)
    return kind


def _remove_rows(session: Session, settings: Settings, name: str) -> str:
    row = session.scalar(select(ModelRow).where(ModelRow.id == name).with_for_update())
    if row is None:
        if name in settings.model_aliases or name in OPENAI_ALIASES:
            raise ModelStoreError(
                f"{name} is an alias that OPENFT_MODEL_ALIASES or OPENFT_DEFAULT_BASE_MODEL sets: change the setting."
            )
        raise ModelStoreError(f"There is no model named {name}.")
    if row.adapter_key is not None:
        raise ModelStoreError(f"{name} is a fine-tune: delete it through the API (client.models.delete).")
    if row.id != row.base_model:
        session.delete(row)
        return "alias"
    if name == settings.default_base_model:
        raise ModelStoreError(f"{name} is OPENFT_DEFAULT_BASE_MODEL: set another default base first.")
    depending = [
        f"{what} ({', '.join(names)})"
        for what, names in (
            ("jobs that have not finished", _names(session, JobRow.id, JobRow.status.not_in(FINISHED), name)),
            ("fine-tunes", _names(session, ModelRow.id, ModelRow.adapter_key.is_not(None), name)),
        )
        if names
    ]
    if depending:
        raise ModelStoreError(f"{name} cannot be removed while {' and '.join(depending)} depend on it.")
    for alias in session.scalars(select(ModelRow).where(ModelRow.base_model == name)):
        session.delete(alias)
    return "base"


def _names(session: Session, column, condition, base: str) -> list[str]:
    """Up to three names of the rows of `column`'s table on `base` that meet `condition`."""
    table = column.class_
    return list(session.scalars(select(column).where(table.base_model == base, condition).limit(3)))


def bases(settings: Settings, db: Database) -> list[tuple[ModelRow, list[str]]]:
    """Every registered base with the names that resolve to it, in the order they were added."""
    with db.session() as session:
        rows = list(session.scalars(select(ModelRow).where(ModelRow.adapter_key.is_(None)).order_by(ModelRow.seq)))
        targets = alias_targets(settings, session)
    names: dict[str, list[str]] = {row.id: [] for row in rows if row.id == row.base_model}
    for alias, base in targets.items():
        if base in names:
            names[base].append(alias)
    return [(row, names[row.id]) for row in rows if row.id in names]


def alias_targets(settings: Settings, session: Session) -> dict[str, str]:
    """Every alias and the base it resolves to, by the precedence of the module docstring."""
    targets = {alias: settings.default_base_model for alias in OPENAI_ALIASES}
    is_alias = (ModelRow.adapter_key.is_(None), ModelRow.id != ModelRow.base_model)
    targets |= dict(session.execute(select(ModelRow.id, ModelRow.base_model).where(*is_alias)).all())
    return targets | settings.model_aliases


def register_fine_tune(session: Session, settings: Settings, job: JobRow, name: str, adapter_key: str) -> None:
    """Serve the adapter at `adapter_key` (a key in the artifact storage) as `name`, a model of
    the job's organization."""
    row = session.scalar(select(ModelRow).where(ModelRow.id == name))
    if row is None:
        owner = organization_name(session, job.organization_id, settings.organization)
        row = ModelRow(
            id=name,
            created=int(time.time()),
            owned_by=owner,
            base_model=job.base_model,
            organization_id=job.organization_id,
        )
        session.add(row)
    row.adapter_key = adapter_key
    row.job_id = job.id


# ---------------------------------------------------------------------------------------------
# the folder and the rows


def _add_locked(
    settings: Settings,
    db: Database,
    source: Source,
    name: str,
    aliases: tuple[str, ...],
    trust_remote_code: bool,
    chat_template: str | None,
) -> Added:
    """`add` once the name's lock is held and the source known to be the folder's, if any."""
    target = settings.models_dir / name
    facts, warnings = read_facts(target), []
    installed_here = facts is None
    if facts is None:
        if target.exists():
            raise ModelStoreError(f"{target} is not a model openft added: remove it or choose another --name.")
        facts, warnings = _install(settings.models_dir, source, name, trust_remote_code, chat_template)
    try:
        already = register_base(db, name, facts, aliases)
    except BaseException:
        if installed_here:
            _remove_folder(settings.models_dir, name)
        raise
    return Added(name, facts, already and not installed_here, warnings)


def _bundled_folder(models_dir: Path) -> ModelFacts:
    """The bundled model's facts, its folder converted first if need be. A data dir imported
    before models had facts has the folder without them: it is checked where it is."""
    target = models_dir / BUNDLED_MODEL
    if (facts := read_facts(target)) is not None:
        return facts
    if target.exists():
        facts, _ = check_model(target, BUNDLED_MODEL, str(bundled_gguf()), trust_remote_code=False)
        write_facts(target, facts)
        return facts
    return _install(models_dir, Source("gguf", str(bundled_gguf())), BUNDLED_MODEL, False, None)[0]


def _install(
    models_dir: Path, source: Source, name: str, trust_remote_code: bool, chat_template: str | None
) -> tuple[ModelFacts, list[str]]:
    """Stage, check and move the model into `models_dir/name`; the caller holds the name's lock."""
    staging_root = models_dir / ".staging"
    for leftover in staging_root.glob(f"{name}-*"):  # a process that died adding it
        shutil.rmtree(leftover, ignore_errors=True)
    staging = staging_root / f"{name}-{uuid.uuid4().hex[:8]}"
    try:
        stage(source, staging, name, trust_remote_code, chat_template)
        facts, warnings = check_model(staging, name, source.location, trust_remote_code)
        write_facts(staging, facts)
        staging.rename(models_dir / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return facts, warnings


def _remove_folder(models_dir: Path, name: str) -> None:
    """Rename first, then delete: no half-deleted model under the name."""
    gone = models_dir / ".staging" / f"{name}-removed-{uuid.uuid4().hex[:8]}"
    gone.parent.mkdir(parents=True, exist_ok=True)
    target = models_dir / name
    if target.is_symlink():
        target.unlink()
    elif target.exists():
        target.rename(gone)
        shutil.rmtree(gone, ignore_errors=True)


def _register(session: Session, name: str, facts: ModelFacts | None) -> bool:
    row = session.scalar(select(ModelRow).where(ModelRow.id == name).with_for_update())
    if row is None:
        row = ModelRow(id=name, created=int(time.time()), owned_by=SYSTEM_OWNER, base_model=name)
        session.add(row)
        already = False
    elif row.id != row.base_model or row.adapter_key is not None:
        raise ModelStoreError(f"{name} is already the name of an alias or a fine-tune: choose another --name.")
    elif facts and row.digest and row.digest != facts.digest:
        raise ModelStoreError(
            f"Another model named {name} is registered (weights {row.digest[:19]}…, these {facts.digest[:19]}…): "
            "choose another --name."
        )
    else:
        already = True
    if facts:
        for column, value in asdict(facts).items():
            setattr(row, column, value)
    return already


def _register_alias(session: Session, alias: str, base: str) -> None:
    row = session.scalar(select(ModelRow).where(ModelRow.id == alias))
    if row is None:
        session.add(ModelRow(id=alias, created=int(time.time()), owned_by=SYSTEM_OWNER, base_model=base))
    elif row.base_model != base or row.id == base or row.adapter_key is not None:
        what = f"an alias of {row.base_model}" if row.id != row.base_model and not row.adapter_key else "a model"
        raise ModelStoreError(f"{alias} is already {what}: remove it first (`openft models remove {alias}`).")


def _check_name(name: str, what: str) -> None:
    if not NAME.match(name):
        raise ModelStoreError(
            f"{name!r} cannot be a {what}: use letters, digits, '.', '_' and '-' "
            "(up to 96, starting with a letter or digit; no ':' or '/')."
        )


@contextmanager
def _locked(models_dir: Path, name: str) -> Iterator[None]:
    from filelock import FileLock

    locks = models_dir / ".locks"
    locks.mkdir(parents=True, exist_ok=True)
    with FileLock(locks / f"{name}.lock"):
        yield
