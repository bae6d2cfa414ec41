"""The status page in real headless Chromium against a real server."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import tritonclient.http as httpclient
from browser import chromium
from httputil import request
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from serverctl import RunningServer


def _wait(driver: WebDriver, condition: Callable[[WebDriver], object], what: str) -> object:
    deadline = time.monotonic() + 30
    while True:
        result = condition(driver)
        if result:
            return result
        assert time.monotonic() < deadline, f"page never showed {what}"
        time.sleep(0.1)


def _infer(server: RunningServer, rows: int) -> None:
    client = httpclient.InferenceServerClient(server.http_url)
    inputs = []
    for name in ("INPUT0", "INPUT1"):
        tensor = httpclient.InferInput(name, [rows, 16], "INT32")
        tensor.set_data_from_numpy(np.ones((rows, 16), dtype=np.int32))
        inputs.append(tensor)
    client.infer("simple", inputs)


def test_page_and_assets_are_bundled_and_served(server: RunningServer) -> None:
    for path, content_type in (
        ("/", "text/html"),
        ("/dashboard", "text/html"),
        ("/dashboard/dashboard.js", "text/javascript"),
        ("/dashboard/dashboard.css", "text/css"),
        ("/dashboard/data", "application/json"),
    ):
        status, headers, body = request(server.http_url, "GET", path)
        assert status == 200 and headers["content-type"].startswith(content_type), path
        assert b"http://" not in body and b"https://" not in body  # nothing from a CDN
    data = json.loads(request(server.http_url, "GET", "/dashboard/data")[2])
    assert {"simple", "versioned"} <= {m["name"] for m in data["models"]}


def test_page_shows_models_and_charts_move_with_requests(server: RunningServer, tmp_path: Path) -> None:
    with chromium() as driver:
        driver.get(f"http://{server.http_url}/dashboard?interval_ms=300")
        _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, 'tr[data-model="simple"]'), "the models")
        # The table is rebuilt on every poll: read it in one script call, not element by element.
        rows = dict(
            driver.execute_script(
                "return Array.from(document.querySelectorAll('#models tbody tr'))"
                ".map(r => [r.dataset.model, Array.from(r.cells).map(c => c.textContent).join(' ')])"
            )
        )
        assert "READY" in rows["simple"]
        assert "versioned 3 READY" in rows["versioned"]

        rate_chart = driver.find_element(By.ID, "rate-chart")
        batch_chart = driver.find_element(By.ID, "batch-chart")
        _wait(driver, lambda d: rate_chart.get_attribute("data-points"), "a first rate point")
        executions_before = int(batch_chart.get_attribute("data-total") or 0)

        # One script call reads everything a single poll drew, so a later poll cannot slip in between.
        snapshot = (
            "const c = id => document.getElementById(id);"
            "return [c('rate-chart').dataset.last || '[0]', c('latency-chart').dataset.last || '[]',"
            " c('p99').textContent];"
        )

        def saw_traffic(d: WebDriver) -> object:
            _infer(server, rows=3)  # keep traffic going until a poll interval sees it
            rate, latency, p99 = d.execute_script(snapshot)
            seen = json.loads(rate)[0]
            return (json.loads(latency), p99) if seen and seen > 0 else None

        latency, p99 = _wait(driver, saw_traffic, "a request rate above zero")  # type: ignore[misc]
        assert latency and all(v is not None and v > 0 for v in latency)
        assert p99.endswith("ms")
        assert int(batch_chart.get_attribute("data-total") or 0) > executions_before
        assert "3" in json.loads(batch_chart.get_attribute("data-sizes") or "{}")
        driver.save_screenshot(str(tmp_path / "dashboard.png"))
        errors = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
        assert not errors, errors  # no script error, no failed fetch, no missing asset
