"""Dynamic broker configs (Kafka's KIP-226 for one node): the BROKER config
resource of AlterConfigs, IncrementalAlterConfigs and DescribeConfigs.

Two layers lie over the static settings (defaults, file, environment, flags):
the cluster-wide default (resource name ``""``) and this node's (resource name
= ``node.id``), which wins. Only the settings in ``config.DYNAMIC`` may be set;
the others are answered as Kafka's ``DynamicBrokerConfig.validateConfigs``
does ("Cannot update these configs dynamically").

Both layers live in ``dynamic-broker-configs.json`` in the data dir, replaced
atomically and fsynced on every change (``write_atomically``), so a restart
comes back with them. Layout::

    {"version": 1, "default": {"log.retention.ms": "3600000"}, "node": {...}}

Keys are Kafka names, values the strings the client sent. Not thread-safe: the
broker's request loop is its only caller.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from logbroker.broker.config import DYNAMIC, RANGES, BrokerConfig, kafka_name, with_settings
from logbroker.errors import InvalidConfigError, InvalidRequestError, StorageError
from logbroker.storage import write_atomically

log = logging.getLogger("logbroker.broker")

DYNAMIC_CONFIG_FILE = "dynamic-broker-configs.json"

# DescribeConfigs config_source codes (Kafka's ConfigSource).
SOURCE_TOPIC, SOURCE_DYNAMIC_BROKER, SOURCE_DYNAMIC_DEFAULT, SOURCE_STATIC_BROKER, SOURCE_DEFAULT = 1, 2, 3, 4, 5
# DescribeConfigs config_type codes (Kafka's ConfigDef.Type).
TYPE_BOOLEAN, TYPE_STRING, TYPE_INT, TYPE_LONG, TYPE_DOUBLE, TYPE_LIST, TYPE_PASSWORD = 1, 2, 3, 5, 6, 7, 9
_INT32_MAX = 2**31 - 1
# Settings whose values DescribeConfigs never shows (Kafka: PASSWORD-typed configs).
SENSITIVE: frozenset[str] = frozenset(
    f.name for f in dataclasses.fields(BrokerConfig) if "password" in f.name or "secret" in f.name
)


@dataclass(frozen=True, slots=True)
class ConfigEntry:
    """One config as DescribeConfigs reports it (Kafka's source and type codes).
    ``synonyms``: ``(name, value, source)``, the winning one first."""

    name: str
    value: str | None
    source: int
    config_type: int
    read_only: bool = False
    is_sensitive: bool = False
    synonyms: tuple[tuple[str, str | None, int], ...] = ()


_DYNAMIC_KAFKA_NAMES = {kafka_name(name): name for name in DYNAMIC}


class DynamicBrokerConfigs:
    """The cluster-default and per-node layers, loaded from and saved to the data dir."""

    def __init__(self, data_dir: str, file_mode: int) -> None:
        self._path = Path(data_dir) / DYNAMIC_CONFIG_FILE
        self._file_mode = file_mode
        self._default: dict[str, str] = {}
        self._node: dict[str, str] = {}
        try:
            doc = json.loads(self._path.read_text(encoding="utf-8"))
            self._default = {str(k): str(v) for k, v in doc.get("default", {}).items()}
            self._node = {str(k): str(v) for k, v in doc.get("node", {}).items()}
        except FileNotFoundError:
            pass
        except (OSError, ValueError, AttributeError) as exc:
            raise StorageError(f"cannot read dynamic broker configs {self._path}: {exc}") from exc

    def __repr__(self) -> str:
        return f"DynamicBrokerConfigs(default={self._default}, node={self._node})"

    def layer(self, per_broker: bool) -> dict[str, str]:
        """A copy of the node layer (``per_broker``) or the cluster-default layer."""
        return dict(self._node if per_broker else self._default)

    def effective(self, static: BrokerConfig) -> BrokerConfig:
        """``static`` with the default layer, then the node layer, laid over it. A stored
        value the broker no longer takes (a range changed) is logged and left out."""
        config = static
        for where, layer in (("cluster default", self._default), ("this broker", self._node)):
            for key, value in layer.items():
                try:
                    config = with_settings(config, {key: value}, source=f"{self._path} ({where})")
                except InvalidConfigError as exc:
                    log.warning("ignoring the dynamic config %s=%s: %s", key, value, exc)
        return config

    def check(self, static: BrokerConfig, layer: Mapping[str, str], per_broker: bool) -> BrokerConfig:
        """The effective config if ``layer`` replaced the named layer. Raises
        InvalidRequestError as Kafka words it (KAFKA-13609: INVALID_REQUEST, not
        INVALID_CONFIG) for a read-only or unknown setting or a bad value."""
        fixed = sorted(key for key in layer if key not in _DYNAMIC_KAFKA_NAMES)
        if fixed:
            raise InvalidRequestError(f"Cannot update these configs dynamically: Set({', '.join(fixed)})")
        default, node = (self._default, dict(layer)) if per_broker else (dict(layer), self._node)
        try:
            return with_settings(with_settings(static, default, source="the cluster default"), node,
                                 source="this broker")
        except InvalidConfigError as exc:
            raise InvalidRequestError(f"Invalid config value for resource: {exc}") from exc

    def replace(self, layer: Mapping[str, str], per_broker: bool) -> None:
        """Make ``layer`` the named layer and save both; raises StorageError with nothing changed."""
        default, node = (self._default, dict(layer)) if per_broker else (dict(layer), self._node)
        doc = {"version": 1, "default": default, "node": node}
        write_atomically(self._path, json.dumps(doc, indent=1, sort_keys=True).encode("utf-8"), self._file_mode)
        self._default, self._node = dict(default), dict(node)

    def describe(self, static: BrokerConfig, per_broker: bool, include_synonyms: bool) -> list[ConfigEntry]:
        """DescribeConfigs of the BROKER resource: for this node (``per_broker``)
        every setting, its winning value and source; for the cluster default
        only the settings that layer holds. Sensitive values are None."""
        defaults = BrokerConfig()
        entries = []
        for field in dataclasses.fields(BrokerConfig):
            name = kafka_name(field.name)
            chain: list[tuple[str, str | None, int]] = []
            if per_broker and name in self._node:
                chain.append((name, self._node[name], SOURCE_DYNAMIC_BROKER))
            if name in self._default:
                chain.append((name, self._default[name], SOURCE_DYNAMIC_DEFAULT))
            if not per_broker and not chain:
                continue
            static_value = getattr(static, field.name)
            if static_value != getattr(defaults, field.name):
                chain.append((name, _text(static_value), SOURCE_STATIC_BROKER))
            chain.append((name, _text(getattr(defaults, field.name)), SOURCE_DEFAULT))
            sensitive = field.name in SENSITIVE
            if sensitive:
                chain = [(n, None, source) for n, _, source in chain]
            _, value, source = chain[0]
            entries.append(ConfigEntry(
                name, value, source, _type_of(field.name, field.type), read_only=field.name not in DYNAMIC,
                is_sensitive=sensitive, synonyms=tuple(chain) if include_synonyms else (),
            ))
        return entries


def incremental_layer(current: Mapping[str, str], operations: Iterable[tuple[str, int, str]]) -> dict[str, str]:
    """``current`` after IncrementalAlterConfigs ``operations`` (name, op, value):
    SET and DELETE; APPEND and SUBTRACT only apply to lists and no broker
    setting is one, so they raise InvalidRequestError as Kafka's
    ``prepareIncrementalConfigs`` does."""
    layer = dict(current)
    for name, op, value in operations:
        if op == 0:
            layer[name] = value
        elif op == 1:
            layer.pop(name, None)
        elif op in (2, 3):
            verb = "append" if op == 2 else "subtract"
            raise InvalidRequestError(f"Config value {verb} is not allowed for config key: {name}")
        else:
            raise InvalidRequestError(f"Unknown operations type {op}")
    return layer


def broker_resource(name: str, node_id: int) -> bool:
    """True for this node's resource, False for the cluster default (``""``);
    raises InvalidRequestError for another broker, as Kafka's ConfigAdminManager."""
    if name == "":
        return False
    try:
        number = int(name)
    except ValueError:
        raise InvalidRequestError(f"Node id must be an integer, but it is: {name}") from None
    if number != node_id:
        raise InvalidRequestError(f"Unexpected broker id, expected {node_id}, but received {name}")
    return True


def _text(value: object) -> str | None:
    if value is None:
        return None
    return str(value).lower() if isinstance(value, bool) else str(value)


def _type_of(field_name: str, annotation: object) -> int:
    kind = str(annotation)
    if field_name in SENSITIVE:
        return TYPE_PASSWORD
    if kind == "bool":
        return TYPE_BOOLEAN
    if kind.startswith("int"):
        high = RANGES.get(field_name, (0, _INT32_MAX))[1]
        return TYPE_LONG if high is None or high > _INT32_MAX else TYPE_INT
    return TYPE_STRING
