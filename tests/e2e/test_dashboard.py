"""The status page in real headless Chromium against a real server; a generative model's token figures
on the page and in the statistics extension."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import modelfactory as mf
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from browser import chromium
from httputil import request
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from serverctl import RunningServer, start_server


def _wait(driver: WebDriver, condition: Callable[[WebDriver], object], what: str) -> object:
    deadline = time.monotonic() + 30
    while True:
        result = condition(driver)
        if result:
            return result
        assert time.monotonic() < deadline, f"page never showed {what}"
        time.sleep(0.1)


def _infer(
    server: RunningServer,
    rows: int,
    model: str = "simple",
    client: httpclient.InferenceServerClient | None = None,
) -> None:
    client = client or httpclient.InferenceServerClient(server.http_url)
    inputs = []
    for name in ("INPUT0", "INPUT1"):
        tensor = httpclient.InferInput(name, [rows, 16], "INT32")
        tensor.set_data_from_numpy(np.ones((rows, 16), dtype=np.int32))
        inputs.append(tensor)
    client.infer(model, inputs)


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


# Records every text a canvas draws with its box, reset when the canvas is cleared: the page's own
# drawing code runs unchanged and the test reads where its labels landed.
_RECORD_TEXT = """
window.__texts = {};
const fillText = CanvasRenderingContext2D.prototype.fillText;
const clearRect = CanvasRenderingContext2D.prototype.clearRect;
CanvasRenderingContext2D.prototype.clearRect = function (x, y, w, h) {
  window.__texts[this.canvas.id] = [];
  return clearRect.call(this, x, y, w, h);
};
CanvasRenderingContext2D.prototype.fillText = function (text, x, y, ...rest) {
  const m = this.measureText(text);
  const shift = { center: m.width / 2, right: m.width, end: m.width }[this.textAlign] || 0;
  const box = [String(text), x - shift, x - shift + m.width, y - m.actualBoundingBoxAscent,
               y + m.actualBoundingBoxDescent];
  (window.__texts[this.canvas.id] = window.__texts[this.canvas.id] || []).push(box);
  return fillText.call(this, text, x, y, ...rest);
};
"""


@pytest.mark.parametrize(
    ("batches", "labels"),
    [
        # Every batch size from 1 to 128 executed, with counts of very different widths.
        ([*range(1, 129), *[1] * 150, *[2] * 20], {"1", "128", "151"}),
        ([3], {"3", "0", "1"}),
    ],
    ids=["128 sizes", "one size"],
)
def test_batch_size_labels_are_readable(tmp_path: Path, batches: list[int], labels: set[str]) -> None:
    repository = tmp_path / "models"
    mf.write_model(repository, "wide", mf.add_sub, config="max_batch_size: 128\n")
    server = start_server(repository, tmp_path)
    try:
        client = httpclient.InferenceServerClient(server.http_url)
        for rows in batches:
            _infer(server, rows, "wide", client)
        with chromium() as driver:
            driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": _RECORD_TEXT})
            driver.get(f"http://{server.http_url}/dashboard?interval_ms=300")
            chart = driver.find_element(By.ID, "batch-chart")
            _wait(driver, lambda d: chart.get_attribute("data-total") == str(len(batches)), "the batches")
            width = int(chart.get_attribute("width") or 0)
            texts = driver.execute_script("return window.__texts['batch-chart']")
            driver.save_screenshot(str(tmp_path / "dashboard.png"))
    finally:
        assert server.stop() == 0, server.log()
    assert labels <= {text for text, *_ in texts}  # e.g. the extreme sizes and the tallest count
    for text, left, right, _top, _bottom in texts:
        assert left >= 0 and right <= width, f"{text!r} is cut off"
    for i, (a, a_left, a_right, a_top, a_bottom) in enumerate(texts):
        for b, b_left, b_right, b_top, b_bottom in texts[i + 1 :]:
            apart = a_right <= b_left or b_right <= a_left or a_bottom <= b_top or b_bottom <= a_top
            assert apart, f"labels {a!r} and {b!r} overlap"


@pytest.fixture(scope="module")
def generative_server(
    tmp_path_factory: pytest.TempPathFactory, tiny_version: Path
) -> Iterator[RunningServer]:
    """The tiny decoder served as ``tiny``, with a KV budget the page must show."""
    root = tmp_path_factory.mktemp("dashboard-generative")
    shutil.copytree(tiny_version, root / "models" / "tiny" / "1")
    (root / "models" / "tiny" / "config.yaml").write_text(
        "platform: generative\ngenerative:\n  max_tokens_in_flight: 4096\n"
    )
    server = start_server(root / "models", root)
    try:
        yield server
    finally:
        assert server.stop() == 0, server.log()


def _generate(server: RunningServer) -> None:
    body = json.dumps({"text_input": "Paris is", "parameters": {"max_tokens": 6}}).encode()
    status, _, answer = request(server.http_url, "POST", "/v2/models/tiny/generate", body)
    assert status == 200, answer


def test_page_shows_the_token_figures_of_generative_models(
    generative_server: RunningServer, tmp_path: Path
) -> None:
    server = generative_server
    read = (
        "const r = document.querySelector('#generation tbody tr[data-model=\"tiny\"]');"
        "return r && !document.getElementById('generative').hidden"
        " ? Array.from(r.cells).map(c => c.textContent) : null;"
    )
    with chromium() as driver:
        driver.get(f"http://{server.http_url}/dashboard?interval_ms=300")

        def tokens_flowing(d: WebDriver) -> object:
            _generate(server)  # keep tokens coming until a poll interval sees them
            cells = d.execute_script(read)
            return cells if cells and cells[6] not in ("–", "0.0") else None

        cells = _wait(driver, tokens_flowing, "tokens per second above zero")
        driver.execute_script("document.getElementById('generative').scrollIntoView()")
        driver.save_screenshot(str(tmp_path / "dashboard-generative.png"))
        errors = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
    assert isinstance(cells, list)
    name, version, ttft50, ttft99, itl50, itl99, rate, active, waiting, kv_bytes, kv_budget = cells
    assert (name, version) == ("tiny", "1")
    assert all(value.endswith(" ms") for value in (ttft50, ttft99, itl50, itl99))
    assert float(ttft50.split()[0]) <= float(ttft99.split()[0])
    assert float(rate) > 0 and active.isdigit() and waiting.isdigit()
    assert kv_bytes.endswith("B") and kv_budget.endswith(" / 4096 tokens")
    assert not errors, errors


def test_statistics_carry_the_generation_figures_and_triton_clients_still_parse_them(
    generative_server: RunningServer,
) -> None:
    server = generative_server
    _generate(server)
    stats = httpclient.InferenceServerClient(server.http_url).get_inference_statistics("tiny")
    figures = stats["model_stats"][0]["generation"]
    assert figures["generated_tokens"] > 0 and figures["prompt_tokens"] > 0
    ttft = figures["time_to_first_token"]
    assert ttft["count"] == sum(ttft["counts"]) > 0 and len(ttft["counts"]) == len(ttft["bounds_ns"]) + 1
    assert figures["kv_budget_tokens"] == 4096 and figures["sequences_waiting"] == 0
    rpc = grpcclient.InferenceServerClient(server.grpc_url).get_inference_statistics("tiny")
    assert rpc.model_stats[0].name == "tiny" and rpc.model_stats[0].inference_stats.success.count > 0
