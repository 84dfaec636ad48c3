"""`logbroker serve` refusing to start says why in one line: the address it
could not listen on, or the data directory that is a file."""

import os
import socket
import subprocess
import sys
import time


def _serve(*args, cwd):
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGBROKER_")}
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "logbroker", "serve", *args], env=env, cwd=cwd,
                            capture_output=True, text=True, timeout=60)
    return result, time.monotonic() - started


def test_a_port_in_use_names_the_address(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result, took = _serve("--port", str(port), "--data-dir", str(tmp_path / "data"), cwd=tmp_path)
    assert result.returncode == 1
    assert (f"Error: cannot listen on 127.0.0.1:{port}: address already in use "
            "(is another broker running? choose another with --port)") in result.stderr
    assert "Traceback" not in result.stderr
    assert took < 20


def test_a_data_dir_that_is_a_file(tmp_path):
    (tmp_path / "x").write_text("not a directory")
    result, took = _serve("--port", "0", "--data-dir", "./x", cwd=tmp_path)
    assert result.returncode == 1
    assert "Error: data directory ./x is a file, not a directory" in result.stderr
    assert "Traceback" not in result.stderr
    assert (tmp_path / "x").read_text() == "not a directory"
    assert took < 20
