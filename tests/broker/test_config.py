import pytest

from logbroker.broker import BrokerConfig
from logbroker.errors import InvalidConfigError


def test_precedence_defaults_file_env_flags(tmp_path):
    path = tmp_path / "broker.toml"
    path.write_text('port = 9100\n"auto.create.topics.enable" = false\nnum_partitions = 3\n')
    env = {"LOGBROKER_PORT": "9200", "LOGBROKER_FLUSH": "always", "UNRELATED": "x"}
    config = BrokerConfig.load(config_file=str(path), environ=env, overrides={"flush": "never", "host": None})
    assert config.port == 9200  # env beats file
    assert config.flush == "never"  # flags beat env
    assert config.auto_create_topics_enable is False
    assert config.num_partitions == 3
    assert config.host == "127.0.0.1"  # an unset flag does not override


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"environ": {"LOGBROKER_PORT": "x"}}, "LOGBROKER_PORT"),
        ({"environ": {"LOGBROKER_FLUSH": "sometimes"}}, "LOGBROKER_FLUSH"),
        ({"overrides": {"bogus_key": 1}}, "bogus_key"),
    ],
)
def test_bad_settings_name_the_problem(kwargs, message):
    kwargs.setdefault("environ", {})
    with pytest.raises(InvalidConfigError, match=message):
        BrokerConfig.load(**kwargs)


def test_unknown_key_in_file(tmp_path):
    path = tmp_path / "broker.toml"
    path.write_text("colour = 'blue'\n")
    with pytest.raises(InvalidConfigError, match="colour"):
        BrokerConfig.load(config_file=str(path), environ={})


def test_unquoted_kafka_names_in_toml(tmp_path):
    path = tmp_path / "broker.toml"
    path.write_text("num.partitions = 6\nauto.create.topics.enable = false\n")
    config = BrokerConfig.load(config_file=str(path), environ={})
    assert config.num_partitions == 6 and config.auto_create_topics_enable is False
