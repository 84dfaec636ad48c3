"""A client of Confluent's Schema Registry REST API (logbroker's registry, or
Confluent's own): schemas by id, subjects and their versions, registration,
lookup, deletes, compatibility settings and checks.

Calls are synchronous HTTP (``urllib.request``) and block for at most
``timeout`` seconds each. From trio, run them in a worker thread:
``await trio.to_thread.run_sync(registry.subjects)``.

Thread-safety: a :class:`SchemaRegistryClient` may be shared by threads; it
holds no connection, and its cache of schemas by id (ids never change their
schema) is a dict filled at most once per id.
"""

from __future__ import annotations

import base64
import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from logbroker.errors import ClientError

__all__ = [
    "CompatibilityResult",
    "Schema",
    "SchemaReference",
    "SchemaRegistryClient",
    "SchemaRegistryError",
    "SchemaRegistryUnreachableError",
    "SubjectVersion",
]

_CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
_ACCEPT = "application/vnd.schemaregistry.v1+json, application/vnd.schemaregistry+json; qs=0.9, application/json; qs=0.5"
SCHEMA_TYPES = ("AVRO", "JSON", "PROTOBUF")


class SchemaRegistryError(ClientError):
    """The registry refused a request: ``status`` is the HTTP status, ``error_code``
    Confluent's code (40401 subject not found, 40403 schema not found, 409
    incompatible, 42201 invalid schema...), ``message`` its words."""

    def __init__(self, message: str, *, status: int, error_code: int) -> None:
        super().__init__(f"{message} (error {error_code})" if error_code > 0 else message)
        self.message = message
        self.status = status
        self.error_code = error_code

    def __reduce__(self) -> tuple[Any, ...]:  # keyword-only arguments survive pickling
        return (_rebuild, (type(self), self.message, self.status, self.error_code))


class SchemaRegistryUnreachableError(SchemaRegistryError):
    """No answer from the registry: refused connection, unknown host, TLS
    failure or timeout (``status`` and ``error_code`` are 0)."""


def _rebuild(cls: type[SchemaRegistryError], message: str, status: int, error_code: int) -> SchemaRegistryError:
    return cls(message, status=status, error_code=error_code)


@dataclass(frozen=True, slots=True)
class SchemaReference:
    """A schema's use of version ``version`` of ``subject`` under ``name``: an
    Avro full type name, a JSON Schema ``$ref`` URI, a Protobuf import path."""

    name: str
    subject: str
    version: int

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "subject": self.subject, "version": self.version}


@dataclass(frozen=True, slots=True)
class Schema:
    """A schema's text, type (``AVRO``, ``JSON`` or ``PROTOBUF``) and references."""

    text: str
    schema_type: str = "AVRO"
    references: tuple[SchemaReference, ...] = ()

    def as_json(self) -> dict[str, Any]:
        """The request body Confluent's API takes (``schemaType`` left out for Avro, as it does)."""
        out: dict[str, Any] = {"schema": self.text}
        if self.schema_type != "AVRO":
            out["schemaType"] = self.schema_type
        if self.references:
            out["references"] = [ref.as_json() for ref in self.references]
        return out


@dataclass(frozen=True, slots=True)
class SubjectVersion:
    """One version of a subject: what ``GET /subjects/S/versions/V`` answers."""

    subject: str
    version: int
    schema_id: int
    schema: Schema

    def as_json(self) -> dict[str, Any]:
        return {"subject": self.subject, "version": self.version, "id": self.schema_id, **self.schema.as_json()}


@dataclass(frozen=True, slots=True)
class CompatibilityResult:
    """Whether a schema may follow a subject's versions, and why not."""

    is_compatible: bool
    messages: tuple[str, ...] = ()


def _schema_of(body: Mapping[str, Any]) -> Schema:
    refs = tuple(SchemaReference(str(r["name"]), str(r["subject"]), int(r["version"]))
                 for r in body.get("references") or ())
    return Schema(str(body["schema"]), str(body.get("schemaType") or "AVRO").upper(), refs)


def _version_of(body: Mapping[str, Any]) -> SubjectVersion:
    return SubjectVersion(str(body["subject"]), int(body["version"]), int(body["id"]), _schema_of(body))


def _quote(part: str | int) -> str:
    return urllib.parse.quote(str(part), safe="")


def _query(**params: Any) -> str:
    """``?a=b&...`` of the params that are not None/False (booleans as ``true``)."""
    pairs = [(name, "true" if value is True else str(value)) for name, value in params.items()
             if value is not None and value is not False and value != ""]
    return "?" + urllib.parse.urlencode(pairs) if pairs else ""


class SchemaRegistryClient:
    """A Schema Registry at ``url`` (``http://host:8081`` or ``https://...``).

    ``user`` and ``password`` are sent as HTTP Basic credentials (logbroker's
    registry takes a broker user's SASL credentials); a URL with
    ``user:password@`` gives them too. ``ca_file`` is a PEM file of the CA(s)
    that signed an https registry's certificate (default: the system's).
    ``timeout`` bounds each request, in seconds.

    Every method raises :class:`SchemaRegistryError` when the registry answers
    an error and :class:`SchemaRegistryUnreachableError` when it does not answer.
    """

    def __init__(self, url: str, *, user: str | None = None, password: str | None = None,
                 ca_file: str | None = None, timeout: float = 10.0) -> None:
        parts = urllib.parse.urlsplit(url.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"schema registry URL {url!r} is not http://HOST:PORT or https://HOST:PORT")
        if parts.username is not None and user is None:
            user = urllib.parse.unquote(parts.username)
            password = urllib.parse.unquote(parts.password or "")
        netloc = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
        if parts.port is not None:
            netloc += f":{parts.port}"
        self.url = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
        self.user = user
        self.timeout = timeout
        self._authorization = None
        if user is not None:
            token = base64.b64encode(f"{user}:{password or ''}".encode()).decode("ascii")
            self._authorization = f"Basic {token}"
        self._ssl: ssl.SSLContext | None = None
        if parts.scheme == "https":
            try:
                self._ssl = ssl.create_default_context(cafile=ca_file)
            except (OSError, ssl.SSLError) as exc:
                raise ValueError(f"cannot read the CA file {ca_file}: {exc}") from None
        self._by_id: dict[int, Schema] = {}

    def __repr__(self) -> str:
        who = f", user={self.user!r}" if self.user else ""
        return f"{type(self).__name__}({self.url!r}{who}, cached_schemas={len(self._by_id)})"

    # -- HTTP -------------------------------------------------------------------------------

    def request(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        """One call: ``path`` (with its query) below the registry's URL; the
        decoded JSON answer.

        :raises SchemaRegistryError: an error answer, with Confluent's code and message.
        :raises SchemaRegistryUnreachableError: no answer.
        """
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Accept", _ACCEPT)
        if data is not None:
            req.add_header("Content-Type", _CONTENT_TYPE)
        if self._authorization is not None:
            req.add_header("Authorization", self._authorization)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout, context=self._ssl) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            raise self._refusal(exc) from None
        except urllib.error.URLError as exc:
            reason = exc.reason
            if isinstance(reason, ssl.SSLError):
                why = f"TLS failed: {getattr(reason, 'verify_message', None) or reason.reason or reason}"
            else:
                why = getattr(reason, "strerror", None) or str(reason)
            raise SchemaRegistryUnreachableError(f"cannot reach the schema registry at {self.url}: {why}",
                                                 status=0, error_code=0) from None
        except TimeoutError:
            raise SchemaRegistryUnreachableError(f"the schema registry at {self.url} did not answer within "
                                                 f"{self.timeout:g} s", status=0, error_code=0) from None
        except OSError as exc:  # a reset connection, raised while reading the answer
            raise SchemaRegistryUnreachableError(f"cannot reach the schema registry at {self.url}: "
                                                 f"{exc.strerror or exc}", status=0, error_code=0) from None
        try:
            return json.loads(raw)
        except ValueError:
            raise SchemaRegistryError(f"the schema registry at {self.url} answered {method} {path} with something "
                                      f"that is not JSON: {raw[:80]!r}", status=200, error_code=0) from None

    def _refusal(self, exc: urllib.error.HTTPError) -> SchemaRegistryError:
        raw = exc.read()
        try:
            body = json.loads(raw)
            return SchemaRegistryError(str(body["message"]), status=exc.code, error_code=int(body["error_code"]))
        except (ValueError, KeyError, TypeError):  # not Confluent's error body: a proxy, a wrong URL
            text = raw.decode("utf-8", "replace").strip().splitlines()
            detail = f": {text[0][:200]}" if text else ""
            return SchemaRegistryError(f"HTTP {exc.code} {exc.reason} from {self.url}{detail}",
                                       status=exc.code, error_code=exc.code)

    # -- schemas ---------------------------------------------------------------------------

    def schema(self, schema_id: int) -> Schema:
        """The schema with id ``schema_id`` (cached: an id never changes its schema).

        :raises SchemaRegistryError: 40403 no such id.
        """
        found = self._by_id.get(schema_id)
        if found is None:
            found = _schema_of(self.request("GET", f"/schemas/ids/{int(schema_id)}"))
            self._by_id[schema_id] = found
        return found

    def cached_schema(self, schema_id: int) -> Schema | None:
        """The schema with id ``schema_id`` if it was fetched already; never blocks."""
        return self._by_id.get(schema_id)

    def schema_uses(self, schema_id: int) -> list[tuple[str, int]]:
        """``(subject, version)`` of every version that has schema ``schema_id``."""
        return [(str(u["subject"]), int(u["version"]))
                for u in self.request("GET", f"/schemas/ids/{int(schema_id)}/versions")]

    def schemas(self, prefix: str = "", *, latest_only: bool = False, deleted: bool = False) -> list[SubjectVersion]:
        """Every version of every subject whose name starts with ``prefix`` (only
        the latest of each with ``latest_only``), in one call."""
        query = _query(subjectPrefix=prefix or None, latestOnly=latest_only, deleted=deleted)
        return [_version_of(body) for body in self.request("GET", "/schemas" + query)]

    def types(self) -> list[str]:
        """The schema types the registry takes."""
        return [str(t) for t in self.request("GET", "/schemas/types")]

    def referenced_schemas(self, schema: Schema) -> dict[str, Schema]:
        """Every schema ``schema`` needs, its references' references included, by
        reference name, dependencies before the schemas that use them."""
        out: dict[str, Schema] = {}

        def visit(refs: Iterable[SchemaReference], depth: int) -> None:
            if depth > 32:
                raise SchemaRegistryError("schema references nest more than 32 deep (a cycle?)",
                                          status=0, error_code=0)
            for ref in refs:
                if ref.name in out:
                    continue
                found = self.version(ref.subject, ref.version).schema
                visit(found.references, depth + 1)
                out[ref.name] = found

        visit(schema.references, 0)
        return out

    # -- subjects --------------------------------------------------------------------------

    def subjects(self, prefix: str = "", *, deleted: bool = False) -> list[str]:
        """Subject names (with soft-deleted ones when ``deleted``)."""
        return [str(s) for s in self.request("GET", "/subjects" + _query(subjectPrefix=prefix or None,
                                                                         deleted=deleted))]

    def versions(self, subject: str, *, deleted: bool = False) -> list[int]:
        """The version numbers of ``subject``. :raises SchemaRegistryError: 40401."""
        return [int(v) for v in self.request("GET", f"/subjects/{_quote(subject)}/versions" + _query(deleted=deleted))]

    def version(self, subject: str, version: int | str = "latest", *, deleted: bool = False) -> SubjectVersion:
        """Version ``version`` (a number or ``"latest"``) of ``subject``.

        :raises SchemaRegistryError: 40401 no subject, 40402 no such version.
        """
        path = f"/subjects/{_quote(subject)}/versions/{_quote(version)}" + _query(deleted=deleted)
        return _version_of(self.request("GET", path))

    def latest(self, subject: str) -> SubjectVersion:
        """The latest version of ``subject``."""
        return self.version(subject, "latest")

    def register(self, subject: str, schema: Schema, *, normalize: bool = False) -> int:
        """Register ``schema`` under ``subject`` (a new version unless the subject
        has it already); its id.

        :raises SchemaRegistryError: 409 incompatible, 42201 invalid schema.
        """
        path = f"/subjects/{_quote(subject)}/versions" + _query(normalize=normalize)
        return int(self.request("POST", path, schema.as_json())["id"])

    def lookup(self, subject: str, schema: Schema, *, normalize: bool = False,
               deleted: bool = False) -> SubjectVersion:
        """The version of ``subject`` that has ``schema``.

        :raises SchemaRegistryError: 40401 no subject, 40403 not registered under it.
        """
        path = f"/subjects/{_quote(subject)}" + _query(normalize=normalize, deleted=deleted)
        return _version_of(self.request("POST", path, schema.as_json()))

    def delete_subject(self, subject: str, *, permanent: bool = False) -> list[int]:
        """Delete every version of ``subject`` (soft unless ``permanent``, which
        needs a soft delete first); the versions deleted."""
        path = f"/subjects/{_quote(subject)}" + _query(permanent=permanent)
        return [int(v) for v in self.request("DELETE", path)]

    def delete_version(self, subject: str, version: int | str, *, permanent: bool = False) -> int:
        """Delete one version of ``subject``; its number."""
        path = f"/subjects/{_quote(subject)}/versions/{_quote(version)}" + _query(permanent=permanent)
        return int(self.request("DELETE", path))

    def referenced_by(self, subject: str, version: int | str) -> list[int]:
        """Ids of the schemas that reference this version."""
        return [int(i) for i in self.request("GET", f"/subjects/{_quote(subject)}/versions/{_quote(version)}"
                                                    "/referencedby")]

    # -- compatibility ---------------------------------------------------------------------

    def compatibility(self, subject: str | None = None, *, default_to_global: bool = False) -> str:
        """The compatibility level of ``subject``, or the global one.

        :raises SchemaRegistryError: 40408 the subject has no level of its own
            (unless ``default_to_global``).
        """
        path = "/config" + (f"/{_quote(subject)}" if subject is not None else "")
        body = self.request("GET", path + _query(defaultToGlobal=default_to_global))
        return str(body.get("compatibilityLevel") or body.get("compatibility"))

    def set_compatibility(self, level: str, subject: str | None = None) -> str:
        """Set the compatibility level of ``subject`` (or the global one); the level set.

        :raises SchemaRegistryError: 42203 not a level.
        """
        path = "/config" + (f"/{_quote(subject)}" if subject is not None else "")
        body = self.request("PUT", path, {"compatibility": level.upper()})
        return str(body.get("compatibility") or body.get("compatibilityLevel"))

    def delete_compatibility(self, subject: str) -> str:
        """Drop ``subject``'s own level (the global one applies again); the level it had."""
        body = self.request("DELETE", f"/config/{_quote(subject)}")
        return str(body.get("compatibilityLevel") or body.get("compatibility"))

    def check_compatibility(self, subject: str, schema: Schema, version: int | str = "latest") -> CompatibilityResult:
        """Whether ``schema`` may follow ``version`` of ``subject`` under its
        compatibility level (``version="all"``: every version), with the reasons
        when not. A subject that does not exist accepts any schema."""
        base = f"/compatibility/subjects/{_quote(subject)}/versions"
        path = (base if version == "all" else f"{base}/{_quote(version)}") + "?verbose=true"
        try:
            body = self.request("POST", path, schema.as_json())
        except SchemaRegistryError as exc:
            if exc.error_code in (40401, 40402) and version == "latest":  # nothing to be compatible with
                return CompatibilityResult(True)
            raise
        return CompatibilityResult(bool(body["is_compatible"]), tuple(str(m) for m in body.get("messages") or ()))
