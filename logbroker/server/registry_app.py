"""The schema registry's HTTP API: Confluent's Schema Registry REST API, so
``SchemaRegistryClient`` and its serializers work unchanged.

Answers are ``application/vnd.schemaregistry.v1+json``; errors carry
Confluent's body ``{"error_code": N, "message": "..."}``. A change is
answered only after its records in ``_schemas`` are fsynced.

With SASL users configured (a SASL listener), every request needs HTTP Basic
credentials of a broker user. With ``authorizer.enable``, a subject is
guarded by the ACLs of its topic (``orders-value`` and ``orders-key`` by
``orders``, Confluent's default subject naming): DESCRIBE to read it, WRITE
to register, delete or configure it; the global config and mode need
ALTER_CONFIGS on the cluster; schemas by id are readable by any logged-in user.

Subjects may hold ``/`` (confluent-kafka's ``ProtobufSerializer`` registers
each imported ``.proto`` under its import path, ``shop/money.proto``), sent
as ``%2F``: routes match the raw path, so an encoded slash stays inside its
segment. ``?format=serialized`` gives a Protobuf schema as Confluent does, a
base64 ``FileDescriptorProto`` (what confluent-kafka's ``ProtobufDeserializer``
reads), built from its text and its references' texts.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import trio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from logbroker.broker.security import AuthenticationError, new_mechanism
from logbroker.broker.security.acls import CLUSTER
from logbroker.broker.session import RequestContext
from logbroker.errors import LogbrokerError
from logbroker.registry.protobuf_descriptor import file_descriptor
from logbroker.registry.schemas import ParsedSchema, SchemaType
from logbroker.registry.store import RegistryError, RegistryState, SchemaVersion, schema_fields

if TYPE_CHECKING:
    from logbroker.broker import Broker
    from logbroker.broker.schema_registry import SchemaRegistry

__all__ = ["registry_app"]

log = logging.getLogger("logbroker.registry")

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
_LOGIN_CACHE_SECONDS = 60.0  # a verified password is not hashed again for every request
_Handler = Callable[[Request], Awaitable[Response]]


def _answer(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body), status_code=status, media_type=CONTENT_TYPE)


def _error(status: int, code: int, message: str) -> Response:
    return _answer({"error_code": code, "message": message}, status)


def _flag(request: Request, name: str) -> bool:
    return request.query_params.get(name, "false").lower() == "true"


def _topic_of(subject: str) -> str:
    """The topic a subject belongs to under Confluent's default naming (TopicNameStrategy)."""
    for suffix in ("-value", "-key"):
        if subject.endswith(suffix):
            return subject[: -len(suffix)]
    return subject


class _Api:
    """The routes' shared state: the broker, its registry, the login cache."""

    def __init__(self, broker: Broker, registry: SchemaRegistry) -> None:
        self.broker = broker
        self.registry = registry
        self._logins: dict[bytes, tuple[str, float]] = {}

    @property
    def state(self) -> RegistryState:
        return self.registry.state

    # -- who may do what -----------------------------------------------------------

    def principal(self, request: Request) -> str | None:
        """The caller's principal; None when credentials are needed and missing or wrong."""
        if not self.broker.config.requires_sasl:
            return "User:ANONYMOUS"
        header = request.headers.get("authorization", "")
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            user, sep, password = base64.b64decode(encoded, validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        if not sep:
            return None
        token = hashlib.sha256(f"{user}\0{password}".encode()).digest()
        cached = self._logins.get(token)
        now = time.monotonic()
        if cached is not None and cached[1] > now:
            return cached[0]
        try:
            new_mechanism("PLAIN", self.broker.users.credential).step(f"\0{user}\0{password}".encode())
        except AuthenticationError:
            return None
        principal = f"User:{user}"
        if len(self._logins) > 1000:
            self._logins.clear()
        self._logins[token] = (principal, now + _LOGIN_CACHE_SECONDS)
        return principal

    def allowed(self, principal: str, request: Request, operation: str, subject: str | None) -> bool:
        peer = request.client.host if request.client else ""
        ctx = RequestContext(principal=principal, peer=f"/{peer}", listener="HTTP")
        if subject is None:
            return self.broker.allowed(ctx, operation, "cluster", CLUSTER)
        return self.broker.allowed(ctx, operation, "topic", _topic_of(subject))

    async def durable(self, records: list[tuple[bytes, bytes | None]]) -> None:
        """Append ``records`` to ``_schemas`` and wait for their fsync."""
        point = self.registry.persist(records)
        if point is not None:
            await trio.to_thread.run_sync(point.log.flush, point.offset)


def _route(api: _Api, handler: Callable[[_Api, Request, str], Awaitable[Response]],
           operation: str | None = None, subject_scoped: bool = True) -> _Handler:
    """Wrap a handler: login, ACL check, JSON errors."""

    async def endpoint(request: Request) -> Response:
        principal = api.principal(request)
        if principal is None:
            response = _error(401, 40101, "Unauthorized: give the user name and password of a broker user "
                              "(HTTP Basic)")
            response.headers["WWW-Authenticate"] = 'Basic realm="logbroker schema registry"'
            return response
        subject = request.path_params.get("subject")
        if subject is not None:  # routed with %2F and %25 still encoded (see _RawPathRouting)
            subject = request.path_params["subject"] = unquote(subject)
        if operation is not None and not api.allowed(principal, request, operation,
                                                     subject if subject_scoped else None):
            what = f"subject {subject}" if subject_scoped and subject is not None else "the registry's settings"
            return _error(403, 40301, f"User is denied operation {operation.upper()} on {what}")
        try:
            return await handler(api, request, principal)
        except RegistryError as exc:
            return _error(exc.status, exc.code, exc.message)
        except _BadRequest as exc:
            return _error(exc.status, exc.code, str(exc))
        except LogbrokerError as exc:
            log.error("schema registry: %s %s failed: %s", request.method, request.url.path, exc)
            return _error(500, 50001, f"Error in the backend data store: {exc}")

    return endpoint


class _BadRequest(Exception):
    def __init__(self, message: str, status: int = 422, code: int = 42201) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        body = json.loads(raw or b"{}")
    except ValueError as exc:
        raise _BadRequest(f"Unexpected character in the request body: {exc}", 400, 400) from None
    if not isinstance(body, dict):
        raise _BadRequest("The request body must be a JSON object", 400, 400)
    return body


def _schema_of(api: _Api, body: dict[str, Any]) -> Any:
    text = body.get("schema")
    if not isinstance(text, str):
        raise _BadRequest("Empty schema: the body needs a \"schema\" string", 422, 42201)
    return api.state.parse(body.get("schemaType"), text, body.get("references") or ())


def _schema_id(request: Request) -> int:
    try:
        return int(request.path_params["id"])
    except ValueError:
        raise _BadRequest(f"Schema {request.path_params['id']} not found", 404, 40403) from None


# -- handlers -------------------------------------------------------------------------------


async def _root(api: _Api, request: Request, principal: str) -> Response:
    return _answer({})


async def _types(api: _Api, request: Request, principal: str) -> Response:
    return _answer([t.value for t in (SchemaType.JSON, SchemaType.PROTOBUF, SchemaType.AVRO)])


async def _schema_by_id(api: _Api, request: Request, principal: str) -> Response:
    schema = api.state.schema(_schema_id(request))
    return _answer(_formatted(api, request, schema, schema_fields(schema)))


def _version_json(api: _Api, request: Request, found: SchemaVersion) -> dict[str, Any]:
    return _formatted(api, request, found.schema, found.as_json())


def _formatted(api: _Api, request: Request, schema: ParsedSchema, fields: dict[str, Any]) -> dict[str, Any]:
    """``fields`` with ``schema`` in the format the request asks for: with
    ``format=serialized``, a Protobuf schema as a base64 ``FileDescriptorProto``
    (other types, and other formats, as registered)."""
    if request.query_params.get("format") != "serialized" or schema.schema_type != SchemaType.PROTOBUF:
        return fields
    imports = api.state.referenced_texts(schema)
    try:
        fields["schema"] = _serialized_descriptor(schema.text, tuple(imports.items()))
    except ValueError as exc:
        raise _BadRequest(f"The schema cannot be given as a serialized FileDescriptorProto: {exc}", 422,
                          42201) from None
    return fields


@functools.lru_cache(maxsize=256)
def _serialized_descriptor(text: str, imports: tuple[tuple[str, str], ...]) -> str:
    """The base64 ``FileDescriptorProto`` of a Protobuf schema (a pure function of
    its text and its imports' texts, so cached; errors are not).

    :raises ValueError: the descriptor cannot be built (see ``protobuf_descriptor``).
    """
    proto = file_descriptor(text, dict(imports))
    return base64.b64encode(proto.SerializeToString()).decode("ascii")


async def _raw_schema_by_id(api: _Api, request: Request, principal: str) -> Response:
    schema = api.state.schema(_schema_id(request))
    return _raw(schema.text)


def _raw(text: str) -> Response:
    """A schema's own text: JSON (Avro, JSON Schema) as is, Protobuf as text."""
    try:
        json.loads(text)
    except ValueError:
        return Response(text, media_type="text/plain")
    return Response(text, media_type=CONTENT_TYPE)


async def _versions_of_id(api: _Api, request: Request, principal: str) -> Response:
    uses = api.state.uses_of(_schema_id(request), deleted=_flag(request, "deleted"))
    visible = [(s, v) for s, v in uses if api.allowed(principal, request, "describe", s)]
    return _answer([{"subject": s, "version": v} for s, v in visible])


async def _subjects_of_id(api: _Api, request: Request, principal: str) -> Response:
    uses = api.state.uses_of(_schema_id(request), deleted=_flag(request, "deleted"))
    return _answer(sorted({s for s, _ in uses if api.allowed(principal, request, "describe", s)}))


async def _list_schemas(api: _Api, request: Request, principal: str) -> Response:
    prefix = request.query_params.get("subjectPrefix", "")
    deleted = _flag(request, "deleted")
    latest_only = _flag(request, "latestOnly")
    out = []
    for subject in api.state.subjects(deleted=deleted, prefix=prefix):
        if not api.allowed(principal, request, "describe", subject):
            continue
        versions = api.state.versions(subject, deleted=deleted)
        for number in versions[-1:] if latest_only else versions:
            out.append(api.state.version(subject, number, deleted=deleted).as_json())
    return _answer(out)


async def _subjects(api: _Api, request: Request, principal: str) -> Response:
    names = api.state.subjects(deleted=_flag(request, "deleted"), prefix=request.query_params.get("subjectPrefix", ""))
    return _answer([s for s in names if api.allowed(principal, request, "describe", s)])


async def _versions(api: _Api, request: Request, principal: str) -> Response:
    return _answer(api.state.versions(request.path_params["subject"], deleted=_flag(request, "deleted")))


async def _register(api: _Api, request: Request, principal: str) -> Response:
    subject = request.path_params["subject"]
    body = await _body(request)
    schema = _schema_of(api, body)
    schema_id, records = api.state.register(
        subject, schema, schema_id=_optional_int(body, "id"), version=_optional_int(body, "version"),
    )
    await api.durable(records)
    if records:
        log.info("schema registry: %s registered id %d in subject %s", principal, schema_id, subject)
    return _answer({"id": schema_id})


def _optional_int(body: dict[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is None or (isinstance(value, int) and value < 0):
        return None
    if not isinstance(value, int):
        raise _BadRequest(f"{name} must be a number", 422, 42201)
    return value


async def _get_version(api: _Api, request: Request, principal: str) -> Response:
    found = api.state.version(request.path_params["subject"], request.path_params["version"],
                              deleted=_flag(request, "deleted"))
    return _answer(_version_json(api, request, found))


async def _get_version_schema(api: _Api, request: Request, principal: str) -> Response:
    found = api.state.version(request.path_params["subject"], request.path_params["version"],
                              deleted=_flag(request, "deleted"))
    return _raw(found.schema.text)


async def _referenced_by(api: _Api, request: Request, principal: str) -> Response:
    found = api.state.version(request.path_params["subject"], request.path_params["version"])
    return _answer(api.state.referenced_by(found.subject, found.version))


async def _delete_version(api: _Api, request: Request, principal: str) -> Response:
    version, records = api.state.delete_version(request.path_params["subject"], request.path_params["version"],
                                                permanent=_flag(request, "permanent"))
    await api.durable(records)
    return _answer(version)


async def _lookup(api: _Api, request: Request, principal: str) -> Response:
    subject = request.path_params["subject"]
    schema = _schema_of(api, await _body(request))
    api.state.versions(subject, deleted=_flag(request, "deleted"))  # 40401 before 40403
    found = api.state.lookup(subject, schema, deleted=_flag(request, "deleted"))
    return _answer(_version_json(api, request, found))


async def _delete_subject(api: _Api, request: Request, principal: str) -> Response:
    versions, records = api.state.delete_subject(request.path_params["subject"],
                                                 permanent=_flag(request, "permanent"))
    await api.durable(records)
    return _answer(versions)


async def _compatibility(api: _Api, request: Request, principal: str) -> Response:
    subject = request.path_params["subject"]
    version = request.path_params.get("version")
    schema = _schema_of(api, await _body(request))
    try:
        problems = api.state.check(subject, schema, version)
    except RegistryError as exc:
        if exc.code != 40401 or version is not None:
            raise
        problems = []  # a new subject accepts any schema
    out: dict[str, Any] = {"is_compatible": not problems}
    if _flag(request, "verbose"):
        out["messages"] = problems
    return _answer(out)


async def _get_config(api: _Api, request: Request, principal: str) -> Response:
    subject = request.path_params.get("subject")
    level = api.state.compatibility(subject, default_to_global=_flag(request, "defaultToGlobal"))
    return _answer({"compatibilityLevel": level.value})


async def _put_config(api: _Api, request: Request, principal: str) -> Response:
    body = await _body(request)
    level = body.get("compatibility", body.get("compatibilityLevel"))
    if level is None:
        raise _BadRequest("Invalid compatibility level: the body needs \"compatibility\"", 422, 42203)
    parsed, records = api.state.set_compatibility(request.path_params.get("subject"), level)
    await api.durable(records)
    return _answer({"compatibility": parsed.value})


async def _delete_config(api: _Api, request: Request, principal: str) -> Response:
    before, records = api.state.delete_compatibility(request.path_params.get("subject"))
    await api.durable(records)
    return _answer({"compatibilityLevel": before.value})


async def _get_mode(api: _Api, request: Request, principal: str) -> Response:
    subject = request.path_params.get("subject")
    return _answer({"mode": api.state.mode(subject, default_to_global=_flag(request, "defaultToGlobal")
                                          or subject is None).value})


async def _put_mode(api: _Api, request: Request, principal: str) -> Response:
    body = await _body(request)
    mode, records = api.state.set_mode(request.path_params.get("subject"), str(body.get("mode", "")),
                                       force=_flag(request, "force"))
    await api.durable(records)
    return _answer({"mode": mode.value})


async def _delete_mode(api: _Api, request: Request, principal: str) -> Response:
    before, records = api.state.delete_mode(request.path_params["subject"])
    await api.durable(records)
    return _answer({"mode": before.value})


async def _contexts(api: _Api, request: Request, principal: str) -> Response:
    return _answer(["."])


class _RawPathRouting:
    """ASGI middleware: route on the raw path with ``%2F`` (and ``%25``) left
    encoded, so a subject holding ``/`` stays one path segment (Starlette
    routes on the decoded ``path``); ``_route`` decodes the subject."""

    _KEEP = re.compile(rb"%(2[fF5])")

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.app!r})"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw = scope.get("raw_path") if scope["type"] == "http" else None
        if raw:
            kept = self._KEEP.sub(rb"%25\1", bytes(raw))  # %2F -> %252F: unquote gives %2F back
            scope = {**scope, "path": unquote(kept.decode("latin-1"), encoding="utf-8", errors="replace")}
        await self.app(scope, receive, send)


def registry_app(broker: Broker) -> ASGIApp:
    """The ASGI application of ``--schema-registry-port``."""
    registry = broker.schema_registry
    if registry is None:
        raise LogbrokerError("the broker was started without a schema registry (schema.registry.port)")
    api = _Api(broker, registry)

    def r(path: str, handler: Callable[[_Api, Request, str], Awaitable[Response]], methods: list[str],
          operation: str | None = None, subject_scoped: bool = True) -> Route:
        return Route(path, _route(api, handler, operation, subject_scoped), methods=methods)

    subject = "/subjects/{subject}"
    version = subject + "/versions/{version}"
    routes = [
        r("/", _root, ["GET"]),
        r("/schemas/types", _types, ["GET"]),
        r("/schemas", _list_schemas, ["GET"]),
        r("/schemas/ids/{id}", _schema_by_id, ["GET"]),
        r("/schemas/ids/{id}/schema", _raw_schema_by_id, ["GET"]),
        r("/schemas/ids/{id}/versions", _versions_of_id, ["GET"]),
        r("/schemas/ids/{id}/subjects", _subjects_of_id, ["GET"]),
        r("/subjects", _subjects, ["GET"]),
        r(subject + "/versions", _versions, ["GET"], "describe"),
        r(subject + "/versions", _register, ["POST"], "write"),
        r(version, _get_version, ["GET"], "describe"),
        r(version, _delete_version, ["DELETE"], "write"),
        r(version + "/schema", _get_version_schema, ["GET"], "describe"),
        r(version + "/referencedby", _referenced_by, ["GET"], "describe"),
        r(subject, _lookup, ["POST"], "describe"),
        r(subject, _delete_subject, ["DELETE"], "write"),
        r("/compatibility" + subject + "/versions", _compatibility, ["POST"], "describe"),
        r("/compatibility" + version, _compatibility, ["POST"], "describe"),
        r("/config", _get_config, ["GET"]),
        r("/config", _put_config, ["PUT"], "alter_configs", subject_scoped=False),
        r("/config/{subject}", _get_config, ["GET"], "describe"),
        r("/config/{subject}", _put_config, ["PUT"], "write"),
        r("/config/{subject}", _delete_config, ["DELETE"], "write"),
        r("/mode", _get_mode, ["GET"]),
        r("/mode", _put_mode, ["PUT"], "alter_configs", subject_scoped=False),
        r("/mode/{subject}", _get_mode, ["GET"], "describe"),
        r("/mode/{subject}", _put_mode, ["PUT"], "write"),
        r("/mode/{subject}", _delete_mode, ["DELETE"], "write"),
        r("/contexts", _contexts, ["GET"]),
    ]

    async def not_found(request: Request, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 404)
        if status == 405:
            return _error(405, 405, f"HTTP {request.method} is not supported on {request.url.path}")
        return _error(404, 404, f"HTTP 404 Not Found: {request.url.path}")

    return _RawPathRouting(Starlette(routes=routes, exception_handlers={HTTPException: not_found}))
