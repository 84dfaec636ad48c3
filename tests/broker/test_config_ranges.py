"""Every integer setting has Kafka's valid range, checked whichever way it is
given (keyword, TOML file under its Kafka name, LOGBROKER_* variable,
command-line flag), and the error names the setting the way it was written."""

import dataclasses

import pytest
from click.testing import CliRunner

from logbroker.broker import BrokerConfig
from logbroker.broker.config import RANGES, SPECIAL, kafka_name
from logbroker.cli.serve import serve
from logbroker.errors import InvalidConfigError

_INT64_MAX = 2**63 - 1
_FIELDS = set(BrokerConfig.field_names())
_RANGED = sorted(name for name in RANGES if name in _FIELDS)
# Settings whose lowest (highest) value breaks a rule between two settings
# when the other one keeps its default.
_PAIRED_LOW = {"group_max_session_timeout_ms", "group_share_session_timeout_ms", "group_consumer_session_timeout_ms"}
_PAIRED_HIGH = {
    "group_min_session_timeout_ms",
    "group_share_heartbeat_interval_ms",
    "group_consumer_heartbeat_interval_ms",
}


def _out_of_range() -> list[tuple[str, int]]:
    cases = []
    for name in _RANGED:
        lo, hi = RANGES[name]
        below = lo - 1
        while below in SPECIAL.get(name, {}):
            below -= 1
        cases.append((name, below))
        if hi is not None and hi < _INT64_MAX:
            cases.append((name, hi + 1))
    return cases


OUT_OF_RANGE = _out_of_range()


def _load(source: str, name: str, value, tmp_path) -> BrokerConfig:
    """Load ``name = value`` from ``source``; the label the error must use is
    returned by :func:`_label`."""
    if source == "keyword":
        return BrokerConfig(**{name: value})
    if source == "file":
        path = tmp_path / "broker.toml"
        text = repr(value) if isinstance(value, str) else str(value)
        path.write_text(f"{kafka_name(name)} = {text.replace(chr(39), chr(34))}\n")
        return BrokerConfig.load(config_file=str(path), environ={})
    if source == "env":
        return BrokerConfig.load(environ={"LOGBROKER_" + name.upper(): str(value)})
    if source == "flag":
        flag = "--" + name.replace("_", "-")
        return BrokerConfig.load(environ={}, overrides={name: value}, override_names={name: flag})
    raise AssertionError(source)


def _label(source: str, name: str, tmp_path) -> str:
    return {
        "keyword": kafka_name(name),
        "file": f"{kafka_name(name)} in {tmp_path / 'broker.toml'}",
        "env": "LOGBROKER_" + name.upper(),
        "flag": "--" + name.replace("_", "-"),
    }[source]


SOURCES = ["keyword", "file", "env", "flag"]


def test_every_integer_setting_has_a_range():
    ints = {f.name for f in dataclasses.fields(BrokerConfig) if str(f.type) in ("int", "int | None")}
    assert ints <= set(RANGES), f"no range for {sorted(ints - set(RANGES))}"


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("name, value", OUT_OF_RANGE, ids=[f"{n}={v}" for n, v in OUT_OF_RANGE])
def test_a_value_out_of_range_is_refused_naming_the_setting_as_written(tmp_path, source, name, value):
    with pytest.raises(InvalidConfigError) as refused:
        _load(source, name, value, tmp_path)
    message = str(refused.value)
    assert message.startswith(_label(source, name, tmp_path) + " must be "), message
    assert str(value) in message


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("name", _RANGED)
def test_the_bounds_themselves_are_accepted(tmp_path, source, name):
    lo, hi = RANGES[name]
    values = [] if name in _PAIRED_LOW else [lo]
    if hi is not None and hi < _INT64_MAX and name not in _PAIRED_HIGH:
        values.append(hi)
    for value in values:
        assert getattr(_load(source, name, value, tmp_path), name) == value


@pytest.mark.parametrize("name, value, meaning", [
    ("log_retention_check_interval_ms", 0, "pinned a core"),
    ("log_retention_check_interval_ms", -5, "pinned a core"),
    ("log_cleaner_backoff_ms", 0, "pinned a core"),
    ("socket_request_max_bytes", 10, "refused every request"),
    ("node_id", -1, "not a node id"),
])
def test_the_values_the_issue_found_accepted(tmp_path, name, value, meaning):
    for source in SOURCES:
        with pytest.raises(InvalidConfigError, match="must be at least"):
            _load(source, name, value, tmp_path)


def test_special_values_and_types(tmp_path):
    assert BrokerConfig(connections_max_idle_ms=-1).connections_max_idle_ms == -1
    assert BrokerConfig(log_retention_ms=-1, log_retention_bytes=-1).log_retention_ms == -1
    with pytest.raises(InvalidConfigError, match=r"connections.max.idle.ms must be at least 1 or -1 \(never\), not 0"):
        BrokerConfig(connections_max_idle_ms=0)
    path = tmp_path / "broker.toml"
    path.write_text("num.partitions = true\n")
    with pytest.raises(InvalidConfigError, match="num.partitions in .* must be an integer, not True"):
        BrokerConfig.load(config_file=str(path), environ={})
    path.write_text("log_roll_ms = 1.5\n")
    with pytest.raises(InvalidConfigError, match="log_roll_ms in .* must be an integer"):
        BrokerConfig.load(config_file=str(path), environ={})
    with pytest.raises(InvalidConfigError, match="bad value 'soon' for LOGBROKER_LOG_ROLL_MS"):
        BrokerConfig.load(environ={"LOGBROKER_LOG_ROLL_MS": "soon"})


def test_rules_between_two_settings_name_both_as_written(tmp_path):
    with pytest.raises(InvalidConfigError,
                       match="LOGBROKER_GROUP_MAX_SESSION_TIMEOUT_MS must not be below group.min.session.timeout.ms"):
        BrokerConfig.load(environ={"LOGBROKER_GROUP_MAX_SESSION_TIMEOUT_MS": "10"})
    with pytest.raises(InvalidConfigError, match="group.share.heartbeat.interval.ms must be below"):
        BrokerConfig(group_share_heartbeat_interval_ms=50_000)


@pytest.mark.parametrize("source", SOURCES)
def test_modes_are_octal_strings_that_keep_the_owners_access(tmp_path, source):
    config = _load(source, "data_file_mode", "0640", tmp_path)
    assert config.file_mode == 0o640 and config.dir_mode == 0o700
    assert _load(source, "data_dir_mode", "750", tmp_path).dir_mode == 0o750
    for name, bad in [("data_file_mode", "0400"), ("data_dir_mode", "0600"), ("data_file_mode", "0999"),
                      ("data_file_mode", "rw-------")]:
        with pytest.raises(InvalidConfigError) as refused:
            _load(source, name, bad, tmp_path)
        assert str(refused.value).startswith(_label(source, name, tmp_path)), str(refused.value)
    path = tmp_path / "broker.toml"
    path.write_text("data.file.mode = 0o640\n")  # an integer would be read as decimal by mistake
    with pytest.raises(InvalidConfigError, match="written as a string"):
        BrokerConfig.load(config_file=str(path), environ={})


def test_serve_names_the_flag_and_the_file_key(tmp_path):
    runner = CliRunner()
    result = runner.invoke(serve, ["--data-dir", str(tmp_path), "--flush-interval-ms", "0"], env={})
    assert result.exit_code != 0
    assert "--flush-interval-ms must be at least 1, not 0" in result.output
    config = tmp_path / "broker.toml"
    config.write_text("log.retention.check.interval.ms = 0\n")
    result = runner.invoke(serve, ["--data-dir", str(tmp_path), "--config", str(config)], env={})
    assert f"log.retention.check.interval.ms in {config} must be at least 1, not 0" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
