"""`logbroker serve` as a user runs it: settings from a file and the environment,
logging, graceful shutdown and the clean-shutdown marker."""

import os
import signal
import subprocess
import sys
import time

from kafka import KafkaAdminClient, KafkaProducer


def _start(args, env, cwd):
    proc = subprocess.Popen([sys.executable, "-m", "logbroker", "serve", *args], env=env, cwd=cwd,
                            stderr=subprocess.PIPE, text=True)
    lines = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        lines.append(line)
        if "listening on" in line:
            return proc, lines
    proc.kill()
    raise AssertionError("".join(lines))


def test_config_file_and_environment(tmp_path):
    config = tmp_path / "broker.toml"
    config.write_text('port = 0\n"num.partitions" = 3\n')
    env = {**os.environ, "LOGBROKER_DATA_DIR": str(tmp_path / "data"), "LOGBROKER_FLUSH": "always"}
    proc, lines = _start(["--config", str(config)], env, tmp_path)
    try:
        text = "".join(lines)
        assert "data directory " + str(tmp_path / "data") in text
        port = int(text.rsplit("listening on 127.0.0.1:", 1)[1].split(",")[0])
        producer = KafkaProducer(bootstrap_servers=f"127.0.0.1:{port}")
        producer.send("auto", b"x").get(timeout=10)  # auto-created with num.partitions
        producer.close()
        admin = KafkaAdminClient(bootstrap_servers=f"127.0.0.1:{port}")
        topic = admin.describe_topics(["auto"])[0]
        admin.close()
        assert len(topic["partitions"]) == 3
    finally:
        proc.send_signal(signal.SIGTERM)
        rest = proc.communicate(timeout=30)[1]
    assert proc.returncode == 0
    assert "clean shutdown complete" in rest
    assert os.path.exists(tmp_path / "data" / "auto-0")


def test_bad_setting_is_a_clear_error(tmp_path):
    env = {**os.environ, "LOGBROKER_PORT": "not-a-port"}
    result = subprocess.run([sys.executable, "-m", "logbroker", "serve", "--data-dir", str(tmp_path)],
                            env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode != 0
    assert "port" in result.stderr and "Traceback" not in result.stderr


def test_second_broker_on_same_directory_is_refused(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGBROKER_")}
    proc, _ = _start(["--data-dir", str(tmp_path), "--port", "0"], env, tmp_path)
    try:
        result = subprocess.run([sys.executable, "-m", "logbroker", "serve", "--data-dir", str(tmp_path),
                                 "--port", "0"], env=env, capture_output=True, text=True, timeout=30)
        assert result.returncode != 0
        assert "in use by another process" in result.stderr and "Traceback" not in result.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
