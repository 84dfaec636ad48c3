"""Fixtures for the fault-injection tests (helpers live in ``fault_support``).

``fault_broker(*args, data_dir=None, preexec_fn=None, start=True)`` makes a
:class:`FaultBroker`; every one is killed at the end of the test and the tail
of its log is attached to a failed test's report. ``small_disk`` is a data
directory on a freshly mounted 8 MiB tmpfs (unmounted afterwards).

Set ``LOGBROKER_FAULT_ITERATIONS`` to run the long versions of the loops
(for example 50 SIGKILLs instead of 12).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from fault_support import FaultBroker  # noqa: E402

_live: list[FaultBroker] = []


def pytest_configure(config):
    config.addinivalue_line("filterwarnings", "ignore:read_text is deprecated:DeprecationWarning")
    config.addinivalue_line("filterwarnings", "ignore:open_text is deprecated:DeprecationWarning")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed and call.when == "call":
        for proc in _live:
            report.sections.append((f"logbroker log, port {proc.port} (last 60 lines)", proc.tail(60)))


@pytest.fixture
def fault_broker(tmp_path):
    made: list[FaultBroker] = []

    def make(*args: str, data_dir=None, preexec_fn=None, start: bool = True) -> FaultBroker:
        proc = FaultBroker(data_dir or tmp_path / f"data{len(made)}", *args, preexec_fn=preexec_fn)
        made.append(proc)
        _live.append(proc)
        return proc.start() if start else proc

    yield make
    for proc in made:
        proc.kill()
        _live.remove(proc)


def mount_tmpfs(path, size: str = "8m") -> str | None:
    """Mount a tmpfs of ``size`` at ``path``; None on success, else why not."""
    if os.geteuid() != 0:
        return "not root"
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True, text=True)
    if done.returncode:
        return (done.stderr or done.stdout).strip() or f"mount exited {done.returncode}"
    return None


@pytest.fixture
def small_disk(tmp_path):
    """``(path, how)``: a directory whose filesystem fills up. ``how`` is ``"tmpfs"``
    (an 8 MiB tmpfs) or ``"rlimit"`` when mounting is not possible; then the
    test must run the broker with :func:`fault_support.fsize_limit`."""
    path = tmp_path / "disk"
    path.mkdir()
    # LOGBROKER_FAULT_NO_MOUNT=1 exercises the fallback where mounting is allowed.
    why = "LOGBROKER_FAULT_NO_MOUNT is set" if os.environ.get("LOGBROKER_FAULT_NO_MOUNT") else mount_tmpfs(path)
    if why is None:
        yield path, "tmpfs"
        subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True)
    else:
        yield path, f"rlimit ({why})"
