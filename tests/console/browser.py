"""Headless Chromium for the browser tests: Debian's ``chromium`` driven through ``chromedriver``
(the ``chromium-driver`` package) by Selenium, with Chrome's network log on, so a test can list
every request the page made. :func:`unavailable` says why a browser cannot be had here."""

from __future__ import annotations

import contextlib
import http.server
import importlib.util
import json
import shutil
import threading
from collections.abc import Iterator
from typing import Any

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")


def unavailable() -> str:
    """Why the browser tests cannot run here ('' when they can)."""
    if importlib.util.find_spec("selenium") is None:
        return "selenium is not installed (pip install -e '.[test]')"
    if CHROMIUM is None:
        return "no chromium on PATH (apt-get install chromium)"
    if DRIVER is None:
        return "no chromedriver on PATH (apt-get install chromium-driver)"
    return ""


@contextlib.contextmanager
def chromium(width: int = 1400, height: int = 900) -> Iterator[Any]:
    """A headless Chromium under WebDriver, closed on exit."""
    from selenium import webdriver  # lazy: selenium is a test extra, imported only where a browser runs
    from selenium.webdriver.chrome.service import Service  # lazy: as above

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        f"--window-size={width},{height}",
        "--lang=en-US",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=str(DRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def requested_urls(driver: Any) -> list[str]:
    """Every URL the browser asked for since the last call (Chrome's performance log)."""
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message.get("method") == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


class Gateway:
    """An SMS gateway on loopback that refuses every message with 400 (a permanent failure: the
    message goes dead at once); ``hits`` counts the requests it got."""

    def __init__(self) -> None:
        gateway = self
        self.hits = 0

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length") or 0))
                gateway.hits += 1
                body = b'{"error": "invalid phone number"}'
                self.send_response(400)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Gateway:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
