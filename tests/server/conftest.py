import pytest

from server_support import DispatchEnv


@pytest.fixture
def make_env(tmp_path):
    envs = []

    def make(**settings):
        env = DispatchEnv(str(tmp_path / f"data{len(envs)}"), **settings)
        envs.append(env)
        return env

    yield make
    for env in envs:
        env.close()
