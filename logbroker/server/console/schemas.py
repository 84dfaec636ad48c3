"""The schema registry's pages: the subject list (``/schemas``) and a subject's
page (``/schemas/{subject}``: its versions pretty-printed, its compatibility
level, and a line diff of two versions).

Read-only views of ``broker.schema_registry.state``; changes go through the
registry's REST API. A subject is visible to whoever may DESCRIBE its topic
(:func:`topic_of`), as in the registry's API.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from logbroker.server.console.app import Console, Viewer, page

if TYPE_CHECKING:
    from logbroker.registry.store import RegistryState, SchemaVersion

__all__ = ["DiffLine", "routes", "schema_diff", "pretty_schema", "topic_of"]

_MAX_SUBJECTS = 1000
_MAX_VERSIONS = 100
_DIFF_CONTEXT = 5


def topic_of(subject: str) -> str:
    """The topic a subject belongs to under Confluent's default naming
    (TopicNameStrategy): ``orders-value`` and ``orders-key`` -> ``orders``.
    The registry's API (``server/registry_app.py``) guards subjects by the same rule."""
    for suffix in ("-value", "-key"):
        if subject.endswith(suffix):
            return subject[: -len(suffix)]
    return subject


def pretty_schema(schema_type: str, text: str) -> str:
    """Avro and JSON schemas indented by two; Protobuf (and text that is not
    JSON) as registered."""
    if schema_type in ("AVRO", "JSON"):
        try:
            return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
        except ValueError:
            pass
    return text.strip("\n")


@dataclass(frozen=True, slots=True)
class DiffLine:
    kind: str
    """``add``, ``del``, ``ctx`` (unchanged) or ``hunk`` (where a hunk starts)."""
    text: str


def schema_diff(old: str, new: str, context: int = _DIFF_CONTEXT) -> list[DiffLine]:
    """A unified line diff of two texts ([] when the lines are the same)."""
    out: list[DiffLine] = []
    lines = difflib.unified_diff(old.splitlines(), new.splitlines(), lineterm="", n=context)
    for line in lines:
        if line.startswith(("---", "+++")) and not out:
            continue  # the file header: there are no file names to show
        if line.startswith("@@"):
            out.append(DiffLine("hunk", line))
        elif line.startswith("+"):
            out.append(DiffLine("add", line[1:]))
        elif line.startswith("-"):
            out.append(DiffLine("del", line[1:]))
        else:
            out.append(DiffLine("ctx", line[1:]))
    return out


@dataclass(frozen=True, slots=True)
class SubjectRow:
    name: str
    topic: str
    latest: int
    versions: int
    schema_type: str
    id: int
    compatibility: str
    own_compatibility: bool
    deleted: bool
    """Every version is soft-deleted."""


@dataclass(frozen=True, slots=True)
class VersionView:
    version: int
    id: int
    schema_type: str
    deleted: bool
    references: tuple[tuple[str, str, int], ...]
    """(name, subject, version) of each reference."""
    pretty: str


def _state(console: Console) -> RegistryState | None:
    registry = console.broker.schema_registry
    return None if registry is None else registry.state


def _may_see(console: Console, viewer: Viewer, subject: str) -> bool:
    return console.allowed(viewer, "describe", "topic", topic_of(subject))


def _own_compatibility(state: RegistryState, subject: str) -> bool:
    from logbroker.registry.store import RegistryError  # the registry's libraries load only when it is on

    try:
        state.compatibility(subject, default_to_global=False)
    except RegistryError:
        return False
    return True


def subject_rows(console: Console, viewer: Viewer, state: RegistryState, query: str = "",
                 deleted: bool = False) -> list[SubjectRow]:
    """The subjects ``viewer`` may see whose name contains ``query``."""
    rows = []
    with_live = set(state.subjects())
    for name in state.subjects(deleted=deleted):
        if query.lower() not in name.lower() or not _may_see(console, viewer, name):
            continue
        live = state.versions(name) if name in with_live else []
        latest = state.version(name, "latest", deleted=not live)
        rows.append(SubjectRow(
            name=name, topic=topic_of(name), latest=latest.version,
            versions=len(state.versions(name, deleted=deleted)), schema_type=latest.schema.schema_type.value,
            id=latest.id, compatibility=state.compatibility(name).value,
            own_compatibility=_own_compatibility(state, name), deleted=not live,
        ))
    return rows


async def schema_list(console: Console, request: Request, viewer: Viewer) -> Response:
    state = _state(console)
    query = request.query_params.get("q", "")
    deleted = request.query_params.get("deleted") == "1"
    if state is None:
        return console.render(request, viewer, "schemas.html", registry=False, subjects=[], more=0, query=query,
                              deleted=deleted, compatibility="", mode="")
    rows = subject_rows(console, viewer, state, query, deleted)
    return console.render(request, viewer, "schemas.html", registry=True, subjects=rows[:_MAX_SUBJECTS],
                          more=max(0, len(rows) - _MAX_SUBJECTS), query=query, deleted=deleted,
                          compatibility=state.compatibility().value, mode=state.mode().value)


def _version_view(entry: SchemaVersion) -> VersionView:
    kind = entry.schema.schema_type.value
    return VersionView(
        version=entry.version, id=entry.id, schema_type=kind, deleted=entry.deleted,
        references=tuple((r.name, r.subject, r.version) for r in entry.schema.references),
        pretty=pretty_schema(kind, entry.schema.text),
    )


def _version_param(request: Request, name: str, known: list[int], default: int) -> int:
    text = request.query_params.get(name, "")
    if text == "":
        return default
    try:
        number = int(text)
    except ValueError:
        raise HTTPException(400, f"{name} must be a version number, got {text!r}") from None
    if number not in known:
        raise HTTPException(404, f"there is no version {number} (the versions are {', '.join(map(str, known))})")
    return number


async def subject_page(console: Console, request: Request, viewer: Viewer) -> Response:
    from logbroker.registry.store import RegistryError  # the registry's libraries load only when it is on

    subject = request.path_params["subject"]
    state = _state(console)
    if state is None:
        raise HTTPException(404, "this broker runs no schema registry (set schema_registry_port)")
    # an invisible subject looks like a missing one, so names do not leak
    if not _may_see(console, viewer, subject):
        raise HTTPException(404, f"no subject {subject}")
    try:
        numbers = state.versions(subject, deleted=True)
        entries = [state.version(subject, n, deleted=True) for n in numbers]
    except RegistryError:
        raise HTTPException(404, f"no subject {subject}") from None
    views = [_version_view(e) for e in entries]
    live = [v.version for v in views if not v.deleted] or numbers
    to = _version_param(request, "to", numbers, live[-1])
    earlier = [n for n in live if n < to]
    start = _version_param(request, "from", numbers, earlier[-1] if earlier else to)
    by_number = {v.version: v for v in views}
    diff = schema_diff(by_number[start].pretty, by_number[to].pretty) if start != to else []
    topic = topic_of(subject)
    topic_link = topic in console.broker.topics() and console.allowed(viewer, "describe", "topic", topic)
    shown = list(reversed(views))[:_MAX_VERSIONS]
    return console.render(
        request, viewer, "subject.html", subject=subject, topic=topic, topic_link=topic_link, versions=shown,
        hidden=len(views) - len(shown), numbers=numbers, latest=live[-1],
        compatibility=state.compatibility(subject).value, own_compatibility=_own_compatibility(state, subject),
        mode=state.mode(subject).value, diff_from=start, diff_to=to, diff=diff,
        added=sum(1 for d in diff if d.kind == "add"), removed=sum(1 for d in diff if d.kind == "del"),
    )


def routes(console: Console) -> list[BaseRoute]:
    return [
        Route("/schemas", page(console, schema_list), methods=["GET"]),
        Route("/schemas/{subject:path}", page(console, subject_page), methods=["GET"]),
    ]
