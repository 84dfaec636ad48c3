import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_protocol_doc_matches_the_dispatch_table():
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "gen_protocol_doc.py"), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_configuration_doc_matches_the_dataclasses():
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "gen_config_doc.py"), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
