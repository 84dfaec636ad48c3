"""Headless Chromium (Debian's chromium and chromium-driver) driven by
selenium, and the broker the console tests look at."""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path

import pytest

_CONSOLE_LINE = re.compile(r"console on http://\S+:(\d+)/")
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "images"


def console_port(proc, timeout: float = 15.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = _CONSOLE_LINE.search(proc.log)
        if found:
            return int(found.group(1))
        time.sleep(0.02)
    raise AssertionError(f"no console line in the broker log:\n{proc.log}")


def start_console(broker_factory, tmp_path, *lines: str, data_dir=None, name: str = "console.toml",
                  registry: bool = False):
    """A broker with the console (and, with ``registry``, the schema registry) on free ports;
    (process, console URL)."""
    config = tmp_path / name
    first = "console_port = 0\n" + ("schema_registry_port = 0\n" if registry else "")
    config.write_text(first + "".join(f"{line}\n" for line in lines))
    proc = broker_factory("--config", str(config), data_dir=data_dir)
    return proc, f"http://127.0.0.1:{console_port(proc)}"


def chrome():
    """A headless Chromium; fails (not skips) when the browser is not installed."""
    from selenium import webdriver

    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if binary is None or driver_path is None:
        pytest.fail("the console's browser tests need Debian's chromium and chromium-driver "
                    "(apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000",
                "--disable-gpu"):
        options.add_argument(arg)
    service = webdriver.ChromeService(executable_path=driver_path)
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(30)
    return driver


def screenshot(driver, name: str) -> None:
    """Keep a screenshot for docs/console.md (only when asked: LOGBROKER_SCREENSHOTS=1)."""
    if os.environ.get("LOGBROKER_SCREENSHOTS"):
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(SCREENSHOTS / f"console-{name}.png"))
