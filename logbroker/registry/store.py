"""The schema registry's state: subjects, versions, global schema ids, and the
compatibility and mode settings, as a state machine over the records of the
``_schemas`` topic.

Every change is a method that checks the request, applies it, and returns
the ``(key, value)`` records that say the same in Confluent's format, for
the caller to append to ``_schemas``; replaying those records with
:meth:`RegistryState.apply` rebuilds the same state. No I/O here.

Record format (Confluent's, so its tools can read the topic):

- key ``{"keytype":"SCHEMA","subject":S,"version":V,"magic":1}``, value
  ``{"subject":S,"version":V,"id":ID,"schema":TEXT,"deleted":false}`` plus
  ``schemaType`` (not for Avro) and ``references`` when present; a null
  value (tombstone) is a permanent delete;
- ``{"keytype":"CONFIG","subject":S|null,"magic":0}`` ->
  ``{"compatibilityLevel":LEVEL}`` (null: back to the default);
- ``{"keytype":"MODE","subject":S|null,"magic":0}`` -> ``{"mode":MODE}``;
- ``{"keytype":"NOOP","magic":0}`` -> ``{"maxId":N}``: the highest id ever
  given, so ids stay unique after permanent deletes and compaction.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from logbroker.errors import LogbrokerError
from logbroker.registry.schemas import (
    CompatibilityLevel,
    InvalidSchemaError,
    ParsedSchema,
    SchemaReference,
    SchemaType,
    compatibility_errors,
    parse_schema,
)

__all__ = ["Mode", "RegistryError", "RegistryState", "SchemaVersion"]

Record = tuple[bytes, bytes | None]

DEFAULT_COMPATIBILITY = CompatibilityLevel.BACKWARD


class Mode(StrEnum):
    READWRITE = "READWRITE"
    READONLY = "READONLY"
    IMPORT = "IMPORT"


class RegistryError(LogbrokerError):
    """A refused registry request: the HTTP status and Confluent's error code."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def _subject_not_found(subject: str) -> RegistryError:
    return RegistryError(404, 40401, f"Subject '{subject}' not found.")


def _version_not_found(subject: str, version: int | str) -> RegistryError:
    return RegistryError(404, 40402, f"Version {version} not found.")


def _schema_not_found(what: str = "Schema not found") -> RegistryError:
    return RegistryError(404, 40403, what)


@dataclass(frozen=True, slots=True)
class SchemaVersion:
    """One version of a subject."""

    subject: str
    version: int
    id: int
    schema: ParsedSchema
    deleted: bool = False

    def as_json(self) -> dict[str, Any]:
        """Confluent's answer for a version: subject, version, id, schema (+ type, references)."""
        out: dict[str, Any] = {"subject": self.subject, "version": self.version, "id": self.id}
        out.update(schema_fields(self.schema))
        return out


def schema_fields(schema: ParsedSchema) -> dict[str, Any]:
    """``schemaType`` (left out for Avro, as Confluent does), ``references`` when any, ``schema``."""
    out: dict[str, Any] = {}
    if schema.schema_type != SchemaType.AVRO:
        out["schemaType"] = schema.schema_type.value
    if schema.references:
        out["references"] = [{"name": r.name, "subject": r.subject, "version": r.version} for r in schema.references]
    out["schema"] = schema.text
    return out


def _key(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _schema_key(subject: str, version: int) -> bytes:
    return _key({"keytype": "SCHEMA", "subject": subject, "version": version, "magic": 1})


def _config_key(subject: str | None) -> bytes:
    return _key({"keytype": "CONFIG", "subject": subject, "magic": 0})


def _mode_key(subject: str | None) -> bytes:
    return _key({"keytype": "MODE", "subject": subject, "magic": 0})


_NOOP_KEY = _key({"keytype": "NOOP", "magic": 0})


def _identity(schema: ParsedSchema) -> tuple[str, str, tuple[SchemaReference, ...]]:
    return schema.schema_type.value, schema.canonical, schema.references


class RegistryState:
    """Subjects and schemas. Not thread-safe: the broker calls it from its own thread."""

    def __init__(self) -> None:
        self._subjects: dict[str, dict[int, SchemaVersion]] = {}
        self._by_id: dict[int, ParsedSchema] = {}
        self._ids: dict[tuple[str, str, tuple[SchemaReference, ...]], int] = {}
        self._max_id = 0
        self._configs: dict[str | None, CompatibilityLevel] = {}
        self._modes: dict[str | None, Mode] = {}

    def __repr__(self) -> str:
        return f"RegistryState(subjects={len(self._subjects)}, schemas={len(self._by_id)}, max_id={self._max_id})"

    # -- queries -------------------------------------------------------------

    def subjects(self, *, deleted: bool = False, prefix: str = "") -> list[str]:
        """Subjects with a live version (any version with ``deleted``), sorted."""
        return sorted(
            s for s, versions in self._subjects.items()
            if s.startswith(prefix) and any(deleted or not v.deleted for v in versions.values())
        )

    def versions(self, subject: str, *, deleted: bool = False) -> list[int]:
        """:raises RegistryError: 40401 no such subject."""
        found = [v.version for v in self._subject(subject, deleted=deleted).values() if deleted or not v.deleted]
        return sorted(found)

    def version(self, subject: str, version: int | str, *, deleted: bool = False) -> SchemaVersion:
        """``version``: a number, ``latest`` or -1.

        :raises RegistryError: 40401 no subject, 40402 no such version, 42202 not a version.
        """
        versions = self._subject(subject, deleted=deleted)
        number = self._version_number(version)
        live = sorted(v for v, sv in versions.items() if deleted or not sv.deleted)
        if number == -1:
            if not live:
                raise _subject_not_found(subject)
            number = live[-1]
        found = versions.get(number)
        if found is None or (found.deleted and not deleted):
            raise _version_not_found(subject, number)
        return found

    def schema(self, schema_id: int) -> ParsedSchema:
        """:raises RegistryError: 40403 unknown id."""
        found = self._by_id.get(schema_id)
        if found is None:
            raise _schema_not_found(f"Schema {schema_id} not found")
        return found

    def uses_of(self, schema_id: int, *, deleted: bool = False) -> list[tuple[str, int]]:
        """``(subject, version)`` pairs registered with ``schema_id``."""
        self.schema(schema_id)
        return sorted(
            (s, v.version) for s, versions in self._subjects.items() for v in versions.values()
            if v.id == schema_id and (deleted or not v.deleted)
        )

    def referenced_by(self, subject: str, version: int) -> list[int]:
        """Ids of live schemas that reference ``subject`` version ``version``."""
        return sorted({
            v.id for versions in self._subjects.values() for v in versions.values()
            if not v.deleted and any(r.subject == subject and r.version == version for r in v.schema.references)
        })

    def lookup(self, subject: str, schema: ParsedSchema, *, deleted: bool = False) -> SchemaVersion:
        """The subject's version holding ``schema`` (by canonical form).

        :raises RegistryError: 40401 no subject, 40403 not registered under it.
        """
        want = _identity(schema)
        for version in sorted(self._subject(subject, deleted=deleted).values(), key=lambda v: v.version):
            if (deleted or not version.deleted) and _identity(version.schema) == want:
                return version
        raise _schema_not_found()

    def compatibility(self, subject: str | None = None, *, default_to_global: bool = True) -> CompatibilityLevel:
        """The subject's level, else the global one, else BACKWARD.

        :raises RegistryError: 40408 the subject has none of its own (``default_to_global`` False).
        """
        if subject is not None and subject in self._configs:
            return self._configs[subject]
        if subject is not None and not default_to_global:
            raise RegistryError(404, 40408, f"Subject '{subject}' does not have subject-level compatibility "
                                "configured")
        return self._configs.get(None, DEFAULT_COMPATIBILITY)

    def mode(self, subject: str | None = None, *, default_to_global: bool = True) -> Mode:
        """:raises RegistryError: 40409 the subject has no mode of its own (``default_to_global`` False)."""
        if subject is not None and subject in self._modes:
            return self._modes[subject]
        if subject is not None and not default_to_global:
            raise RegistryError(404, 40409, f"Subject '{subject}' does not have subject-level mode configured")
        return self._modes.get(None, Mode.READWRITE)

    def parse(self, schema_type: str | None, text: str, references: Sequence[Mapping[str, Any]] = ()) -> ParsedSchema:
        """Parse a schema as a request gives it, resolving ``references`` to registered versions.

        :raises RegistryError: 42201 invalid schema or reference, 42202 bad reference version.
        """
        try:
            kind = SchemaType((schema_type or "AVRO").upper())
        except ValueError:
            raise RegistryError(422, 42201, f"Invalid schema type {schema_type!r}: give AVRO, JSON or "
                                "PROTOBUF") from None
        refs = []
        for ref in references:
            try:
                refs.append(SchemaReference(str(ref["name"]), str(ref["subject"]), int(ref["version"])))
            except (KeyError, TypeError, ValueError):
                raise RegistryError(422, 42201, f"Invalid reference {ref!r}: needs name, subject and "
                                    "version") from None
        resolved: dict[str, str] = {}
        self._resolve(refs, resolved, depth=0)
        try:
            return parse_schema(kind, text, refs, resolved)
        except InvalidSchemaError as exc:
            raise RegistryError(422, 42201, f"Invalid schema: {exc}") from exc

    def referenced_texts(self, schema: ParsedSchema) -> dict[str, str]:
        """The text of every schema ``schema`` needs, its references' references
        included, by reference name, dependencies first (what :meth:`parse`
        resolved when it was registered; soft-deleted versions count).

        :raises RegistryError: 42201 a reference names a version no longer held.
        """
        resolved: dict[str, str] = {}
        self._resolve(schema.references, resolved, depth=0, deleted=True)
        return resolved

    def check(self, subject: str, schema: ParsedSchema, version: int | str | None = None) -> list[str]:
        """Why ``schema`` is not compatible with ``version`` of ``subject`` (or, with
        None, with the versions its level asks for); [] when it is.

        :raises RegistryError: 40401/40402 as :meth:`version`.
        """
        level = self.compatibility(subject)
        if version is not None:
            against = [self.version(subject, version).schema]
            if level == CompatibilityLevel.NONE:
                return []
            return compatibility_errors(_non_transitive(level), schema, against)
        previous = [self._subject(subject)[v].schema for v in self.versions(subject)]
        return compatibility_errors(level, schema, previous)

    # -- changes -----------------------------------------------------------------

    def register(self, subject: str, schema: ParsedSchema, *, schema_id: int | None = None,
                 version: int | None = None) -> tuple[int, list[Record]]:
        """Register ``schema`` under ``subject``: its id (the existing one when the
        subject holds it already, or when another subject registered the same
        schema), and the records to append. ``schema_id``/``version`` only in IMPORT mode.

        :raises RegistryError: 409 incompatible, 42205 read-only, 42201 bad import.
        """
        mode = self.mode(subject)
        if mode == Mode.READONLY:
            raise RegistryError(422, 42205, f"Subject {subject} is in read-only mode")
        if (schema_id is not None or version is not None) and mode != Mode.IMPORT:
            raise RegistryError(422, 42205, "Schema ids and versions can be given only in IMPORT mode")
        existing = self._subjects.get(subject, {})
        for found in existing.values():
            if not found.deleted and _identity(found.schema) == _identity(schema):
                if schema_id is None or schema_id == found.id:
                    return found.id, []
        if mode != Mode.IMPORT:
            problems = self.check(subject, schema) if any(not v.deleted for v in existing.values()) else []
            if problems:
                raise RegistryError(409, 409, f"Schema being registered is incompatible with an earlier schema "
                                    f"for subject \"{subject}\", details: [{'; '.join(problems)}]")
        new_id = self._ids.get(_identity(schema)) if schema_id is None else schema_id
        if schema_id is not None:
            held = self._by_id.get(schema_id)
            if held is not None and _identity(held) != _identity(schema):
                raise RegistryError(422, 42205, f"Schema id {schema_id} is taken by another schema")
        if new_id is None:
            new_id = self._max_id + 1
        number = version if version is not None else max(existing, default=0) + 1
        if number in existing:
            raise RegistryError(422, 42201, f"Version {number} of subject {subject} exists already")
        entry = SchemaVersion(subject, number, new_id, schema)
        records: list[Record] = [self._schema_record(entry)]
        if new_id > self._max_id:
            records.append((_NOOP_KEY, _key({"maxId": new_id})))
        for key, value in records:
            self.apply(key, value)
        return new_id, records

    def delete_version(self, subject: str, version: int | str, *, permanent: bool) -> tuple[int, list[Record]]:
        """Soft delete (or, after one, permanently delete) a version; returns its number.

        :raises RegistryError: 40401/40402, 40406 already soft-deleted, 40407 not
            soft-deleted first, 42206 still referenced, 42205 read-only.
        """
        self._writable(subject)
        entry = self.version(subject, version, deleted=True)
        if permanent and not entry.deleted:
            raise RegistryError(404, 40407, f"Subject '{subject}' Version {entry.version} was not deleted first "
                                "before being permanently deleted")
        if not permanent and entry.deleted:
            raise RegistryError(404, 40406, f"Subject '{subject}' Version {entry.version} was soft deleted. "
                                "Set permanent=true to delete permanently")
        users = self.referenced_by(subject, entry.version)
        if users and not permanent:
            raise RegistryError(422, 42206, f"One or more references exist to the schema {{subject={subject}, "
                                f"version={entry.version}}} (ids {users})")
        if permanent:
            record: Record = (_schema_key(subject, entry.version), None)
        else:
            record = self._schema_record(SchemaVersion(subject, entry.version, entry.id, entry.schema, True))
        self.apply(*record)
        return entry.version, [record]

    def delete_subject(self, subject: str, *, permanent: bool) -> tuple[list[int], list[Record]]:
        """Soft delete every version (or, after that, permanently delete them), and
        the subject's own config and mode; returns the versions.

        :raises RegistryError: 40401, 40404 already soft-deleted, 40405 not soft-deleted first, 42206.
        """
        self._writable(subject)
        versions = dict(self._subject(subject, deleted=True))  # a copy: applying the records changes it
        live = [v for v in versions.values() if not v.deleted]
        if permanent and live:
            raise RegistryError(404, 40405, f"Subject '{subject}' was not deleted first before being permanently "
                                "deleted")
        if not permanent and not live:
            raise RegistryError(404, 40404, f"Subject '{subject}' was soft deleted. Set permanent=true to delete "
                                "permanently")
        if not permanent:
            for v in live:
                if self.referenced_by(subject, v.version):
                    raise RegistryError(422, 42206, f"One or more references exist to the schema "
                                        f"{{subject={subject}, version={v.version}}}")
        records: list[Record] = []
        for v in sorted(versions.values() if permanent else live, key=lambda v: v.version):
            if permanent:
                records.append((_schema_key(subject, v.version), None))
            else:
                records.append(self._schema_record(SchemaVersion(subject, v.version, v.id, v.schema, True)))
        if permanent:
            if subject in self._configs:
                records.append((_config_key(subject), None))
            if subject in self._modes:
                records.append((_mode_key(subject), None))
        for key, value in records:
            self.apply(key, value)
        return sorted(v.version for v in (versions.values() if permanent else live)), records

    def set_compatibility(self, subject: str | None, level: str) -> tuple[CompatibilityLevel, list[Record]]:
        """:raises RegistryError: 42203 not a level."""
        try:
            parsed = CompatibilityLevel(str(level).upper())
        except ValueError:
            raise RegistryError(422, 42203, "Invalid compatibility level. Valid values are none, backward, "
                                "forward, full, backward_transitive, forward_transitive, and "
                                "full_transitive") from None
        record: Record = (_config_key(subject), _key({"compatibilityLevel": parsed.value}))
        self.apply(*record)
        return parsed, [record]

    def delete_compatibility(self, subject: str | None) -> tuple[CompatibilityLevel, list[Record]]:
        """Back to the default; returns the level it had.

        :raises RegistryError: 40401 (a subject that does not exist).
        """
        if subject is not None and subject not in self._subjects:
            raise _subject_not_found(subject)
        before = self.compatibility(subject)
        if subject not in self._configs:
            return before, []
        record: Record = (_config_key(subject), None)
        self.apply(*record)
        return before, [record]

    def set_mode(self, subject: str | None, mode: str, *, force: bool = False) -> tuple[Mode, list[Record]]:
        """:raises RegistryError: 42204 not a mode; 42205 IMPORT on a registry with schemas (without ``force``)."""
        try:
            parsed = Mode(str(mode).upper())
        except ValueError:
            raise RegistryError(422, 42204, "Invalid mode. Valid values are READWRITE, READONLY and "
                                "IMPORT") from None
        if parsed == Mode.IMPORT and not force:
            holds = self._subjects.get(subject, {}) if subject is not None else self._by_id
            if holds:
                raise RegistryError(422, 42205, "Cannot import since found existing subjects")
        record: Record = (_mode_key(subject), _key({"mode": parsed.value}))
        self.apply(*record)
        return parsed, [record]

    def delete_mode(self, subject: str) -> tuple[Mode, list[Record]]:
        before = self.mode(subject)
        if subject not in self._modes:
            return before, []
        record: Record = (_mode_key(subject), None)
        self.apply(*record)
        return before, [record]

    # -- records -----------------------------------------------------------------

    def apply(self, key: bytes, value: bytes | None) -> None:
        """Apply one record of ``_schemas`` (as written by this class or by
        Confluent's registry). Records it cannot read are skipped.

        :raises ValueError: the key is not JSON (the caller logs and skips it).
        """
        k = json.loads(key)
        if not isinstance(k, dict):
            raise ValueError("a _schemas key must be a JSON object")
        kind = k.get("keytype")
        v = json.loads(value) if value is not None else None
        if kind == "SCHEMA":
            self._apply_schema(str(k["subject"]), int(k["version"]), v)
        elif kind == "CONFIG":
            subject = k.get("subject")
            if v is None:
                self._configs.pop(subject, None)
            else:
                self._configs[subject] = CompatibilityLevel(v.get("compatibilityLevel") or v.get("compatibility"))
        elif kind == "MODE":
            subject = k.get("subject")
            if v is None:
                self._modes.pop(subject, None)
            else:
                self._modes[subject] = Mode(v["mode"])
        elif kind == "NOOP" and isinstance(v, dict) and "maxId" in v:
            self._max_id = max(self._max_id, int(v["maxId"]))
        elif kind == "DELETE_SUBJECT" and isinstance(v, dict):  # Confluent's soft delete of a whole subject
            subject = str(k["subject"])
            for number, entry in list(self._subjects.get(subject, {}).items()):
                if number <= int(v.get("version", number)):
                    self._subjects[subject][number] = SchemaVersion(subject, number, entry.id, entry.schema, True)
        elif kind == "CLEAR_SUBJECT":
            self._subjects.pop(str(k["subject"]), None)

    def live_records(self) -> list[Record]:
        """The records that rebuild this state (for compacting ``_schemas``)."""
        records: list[Record] = [(_NOOP_KEY, _key({"maxId": self._max_id}))]
        for subject in sorted(self._subjects):
            for number in sorted(self._subjects[subject]):
                records.append(self._schema_record(self._subjects[subject][number]))
        records += [(_config_key(s), _key({"compatibilityLevel": c.value})) for s, c in self._configs.items()]
        records += [(_mode_key(s), _key({"mode": m.value})) for s, m in self._modes.items()]
        return records

    # -- private -------------------------------------------------------------------

    def _apply_schema(self, subject: str, version: int, value: dict[str, Any] | None) -> None:
        versions = self._subjects.setdefault(subject, {})
        if value is None:
            versions.pop(version, None)
            if not versions:
                del self._subjects[subject]
            self._forget_unused()
            return
        schema_id = int(value["id"])
        schema = self._by_id.get(schema_id)
        if schema is None or schema.text != value["schema"]:
            schema = self.parse(value.get("schemaType"), value["schema"], value.get("references") or ())
        self._by_id[schema_id] = schema
        self._ids.setdefault(_identity(schema), schema_id)
        self._max_id = max(self._max_id, schema_id)
        versions[version] = SchemaVersion(subject, version, schema_id, schema, bool(value.get("deleted", False)))

    def _forget_unused(self) -> None:
        used = {v.id for versions in self._subjects.values() for v in versions.values()}
        for schema_id in [i for i in self._by_id if i not in used]:
            schema = self._by_id.pop(schema_id)
            if self._ids.get(_identity(schema)) == schema_id:
                del self._ids[_identity(schema)]

    def _schema_record(self, entry: SchemaVersion) -> Record:
        value: dict[str, Any] = {"subject": entry.subject, "version": entry.version, "id": entry.id}
        value.update(schema_fields(entry.schema))
        value["deleted"] = entry.deleted
        return _schema_key(entry.subject, entry.version), _key(value)

    def _subject(self, subject: str, *, deleted: bool = False) -> dict[int, SchemaVersion]:
        versions = self._subjects.get(subject)
        if not versions or not (deleted or any(not v.deleted for v in versions.values())):
            raise _subject_not_found(subject)
        return versions

    @staticmethod
    def _version_number(version: int | str) -> int:
        if version == "latest":
            return -1
        try:
            number = int(version)
        except (TypeError, ValueError):
            number = 0
        if number == -1 or 1 <= number <= 2**31 - 1:
            return number
        raise RegistryError(422, 42202, "The specified version '{}' is not a valid version id. Allowed values "
                            "are between [1, 2^31-1] and the string \"latest\"".format(version))

    def _writable(self, subject: str) -> None:
        if self.mode(subject) == Mode.READONLY:
            raise RegistryError(422, 42205, f"Subject {subject} is in read-only mode")

    def _resolve(self, refs: Iterable[SchemaReference], into: dict[str, str], depth: int, *,
                 deleted: bool = False) -> None:
        if depth > 32:
            raise RegistryError(422, 42201, "Invalid schema: references nest too deep (a cycle?)")
        for ref in refs:
            if ref.name in into:
                continue
            try:
                target = self.version(ref.subject, ref.version, deleted=deleted)
            except RegistryError:
                raise RegistryError(422, 42201, f"Invalid schema: reference {ref.name} names subject "
                                    f"{ref.subject} version {ref.version}, which does not exist") from None
            self._resolve(target.schema.references, into, depth + 1, deleted=deleted)
            into[ref.name] = target.schema.text


def _non_transitive(level: CompatibilityLevel) -> CompatibilityLevel:
    return CompatibilityLevel(level.value.removesuffix("_TRANSITIVE"))
