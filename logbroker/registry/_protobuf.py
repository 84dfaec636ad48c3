"""Placeholder until this schema type is implemented."""

from __future__ import annotations

from collections.abc import Mapping


def parse(text: str, resolved: Mapping[str, str]) -> tuple[str, str, object]:
    """:raises ValueError: always, this type is not supported yet."""
    raise ValueError("This schema type is not supported yet")


def reader_errors(reader: object, writer: object, reader_role: str, writer_role: str) -> list[str]:
    """Never reached: no schema of this type parses."""
    return []
