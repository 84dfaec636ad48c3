"""Protobuf message classes built at run time from ``.proto`` text, with no
generated code and no ``protoc``: the registry's
:mod:`logbroker.registry.protobuf_descriptor` builds the
``FileDescriptorProto`` protoc would and a private ``DescriptorPool`` holding
it and its imports; ``message_factory`` makes the classes.

Not thread-safe while building; a built :class:`ProtoSchema` is read-only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from google.protobuf import message_factory  # type: ignore[import-untyped]  # protobuf ships no type information

from logbroker.registry.protobuf_descriptor import build_pool

__all__ = ["ProtoSchema", "build"]


class ProtoSchema:
    """A ``.proto`` schema made usable: its message types by message-index path."""

    def __init__(self, pool: Any, proto: Any) -> None:
        self.pool = pool
        self.proto = proto  # the FileDescriptorProto built from the text
        self._classes: dict[tuple[int, ...], Any] = {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(package={self.proto.package!r}, messages={self.message_names()})"

    def message_names(self) -> list[str]:
        """Full names of the file's top-level messages, in order."""
        prefix = f"{self.proto.package}." if self.proto.package else ""
        return [prefix + m.name for m in self.proto.message_type]

    def message_class(self, indexes: Sequence[int]) -> Any:
        """The message class at ``indexes`` (Confluent's message-index path).

        :raises ValueError: a path that names no message.
        """
        key = tuple(indexes)
        found = self._classes.get(key)
        if found is None:
            name = self.proto.package
            messages = self.proto.message_type
            for depth, index in enumerate(key):
                if not 0 <= index < len(messages):
                    where = "the file" if depth == 0 else f"message {name}"
                    raise ValueError(f"message index {list(key)} names no message: {where} has {len(messages)}")
                name = f"{name}.{messages[index].name}" if name else messages[index].name
                messages = messages[index].nested_type
            found = message_factory.GetMessageClass(self.pool.FindMessageTypeByName(name))
            self._classes[key] = found
        return found

    def indexes_of(self, name: str | None) -> list[int]:
        """The message-index path of message ``name`` (full, or relative to the
        package, nested with dots); the first message when ``name`` is None.

        :raises ValueError: no such message.
        """
        if not self.proto.message_type:
            raise ValueError("the schema declares no message")
        if name is None:
            return [0]
        package = self.proto.package
        relative = name.lstrip(".")
        if package and relative.startswith(package + "."):
            relative = relative[len(package) + 1:]
        path: list[int] = []
        messages = self.proto.message_type
        for part in relative.split("."):
            found = next((i for i, m in enumerate(messages) if m.name == part), None)
            if found is None:
                raise ValueError(f"the schema has no message {name!r} (it has {', '.join(self.message_names())})")
            path.append(found)
            messages = messages[found].nested_type
        return path


def build(text: str, imports: Mapping[str, str]) -> ProtoSchema:
    """The schema ``text`` with its imports, ``imports`` mapping each import path
    to its text, dependencies first (as ``referenced_schemas`` gives them).

    :raises ValueError: a text that does not parse, a type or import that
        resolves to nothing, a file the descriptor pool refuses.
    """
    pool, proto = build_pool(text, imports)
    return ProtoSchema(pool, proto)
