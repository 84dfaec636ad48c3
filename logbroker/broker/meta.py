"""The data directory's identity: ``meta.properties`` (Kafka's MetaProperties).

Format (Java properties text; other keys are kept by nobody and ignored)::

    version=1
    cluster.id=<the cluster id>
    node.id=<the node id>

It is written once, when a broker first opens the directory. Every later
start checks it before touching the log, and refuses, as Kafka does, rather
than take a new identity silently: StorageError when the file is damaged
(a new cluster id would orphan every client's and mirror's view of the
cluster), InvalidConfigError when ``node.id`` or ``cluster.id`` differ from
the stored ones (the data belongs to another node or cluster). Each message
says what to do.
"""

from __future__ import annotations

import base64
import os
import re
import uuid
from dataclasses import dataclass
from pathlib import Path

from logbroker.errors import InvalidConfigError, StorageError
from logbroker.storage import write_atomically

__all__ = ["META_FILE", "MetaProperties", "check_meta", "new_cluster_id", "write_meta"]

META_FILE = "meta.properties"
_VERSION = "1"
_CLUSTER_ID = re.compile(r"[\x21-\x7e]{1,255}")  # printable ASCII, no spaces


@dataclass(frozen=True, slots=True)
class MetaProperties:
    cluster_id: str
    node_id: int

    def text(self) -> str:
        return f"version={_VERSION}\ncluster.id={self.cluster_id}\nnode.id={self.node_id}\n"


def new_cluster_id() -> str:
    """22 characters of URL-safe base64 of a random UUID (Kafka's form)."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def _read(path: Path) -> MetaProperties | None:
    """The stored identity; None if there is no file. Raises StorageError naming
    what is wrong with a file that exists."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StorageError(f"cannot read {path}: {exc.strerror or exc}") from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _damaged(path, "it is not text") from None
    props: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line[0] in "#!":
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise _damaged(path, f"line {number} is not key=value")
        props[key.strip()] = value.strip()
    for key in ("version", "cluster.id", "node.id"):
        if key not in props:
            raise _damaged(path, f"it has no {key}")
    if props["version"] != _VERSION:
        raise _damaged(path, f"version {props['version']!r} is not {_VERSION}")
    if not _CLUSTER_ID.fullmatch(props["cluster.id"]):
        raise _damaged(path, f"cluster.id {props['cluster.id']!r} is not a cluster id")
    try:
        node_id = int(props["node.id"])
    except ValueError:
        raise _damaged(path, f"node.id {props['node.id']!r} is not a number") from None
    return MetaProperties(props["cluster.id"], node_id)


def _damaged(path: Path, why: str) -> StorageError:
    return StorageError(
        f"{path} is damaged ({why}); it holds this data directory's cluster id and node id. Restore it "
        f"from a backup, or, to give the data a new cluster id, remove it and start again"
    )


def check_meta(data_dir: str | os.PathLike, *, node_id: int, cluster_id: str | None) -> MetaProperties | None:
    """The identity stored in ``data_dir``, checked against the configured
    ``node_id`` and ``cluster_id`` (None: take the stored one); None if the
    directory has none yet. Raises StorageError, InvalidConfigError."""
    path = Path(data_dir) / META_FILE
    stored = _read(path)
    if stored is None:
        return None
    if stored.node_id != node_id:
        raise InvalidConfigError(
            f"node.id {node_id} does not match node id {stored.node_id} stored in {path}: the data belongs to "
            f"node {stored.node_id}. If you moved the data, set node.id = {stored.node_id}; to start a new node, "
            f"use an empty data directory"
        )
    if cluster_id is not None and cluster_id != stored.cluster_id:
        raise InvalidConfigError(
            f"cluster.id {cluster_id!r} does not match cluster id {stored.cluster_id!r} stored in {path}: the "
            f"data belongs to another cluster. Leave cluster.id unset (or set it to {stored.cluster_id!r}), "
            f"or use an empty data directory"
        )
    return stored


def write_meta(data_dir: str | os.PathLike, meta: MetaProperties, mode: int) -> None:
    """Write ``meta.properties`` atomically with permission bits ``mode``.
    Raises StorageError."""
    write_atomically(Path(data_dir) / META_FILE, meta.text().encode("ascii"), mode)
