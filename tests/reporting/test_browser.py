"""The HTML reports in a real browser: headless Chromium (Debian's ``chromium``) driven over the
Chrome DevTools Protocol with ``websockets``. Every figure must load, no console error may occur,
the table sorter and hover boxes must work; a screenshot of each page is saved under the test's
temporary directory and, when ``EMONEURON_SCREENSHOT_DIR`` is set, there too.

Without Chromium the tests are skipped, unless ``EMONEURON_REQUIRE_BROWSER`` is set (``make
test`` and CI set it, after installing Chromium), in which case they fail.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from run_fixtures import make_run
from websockets.sync.client import ClientConnection, connect

from emoneuron.app.run import run
from emoneuron.config import preset_config
from emoneuron.reporting.comparison_page import write_comparison
from emoneuron.reporting.html import Section, page, table

START_TIMEOUT_S = 30
PAGE_TIMEOUT_S = 30
# Figures: every <img> decoded to a real size, every inline <svg> laid out with a size.
FIGURES_JS = """(() => {
  const images = Array.from(document.images).map(i => ({
    what: "img " + (i.alt || i.src.slice(0, 40)), ok: i.complete && i.naturalWidth > 0}));
  const svgs = Array.from(document.querySelectorAll("svg")).map((s, k) => ({
    what: "svg #" + k, ok: s.getBoundingClientRect().width > 0}));
  return images.concat(svgs);
})()"""
# Sorting a table by one column, ascending then descending: that column's cells each time.
SORT_JS = """((selector, column) => {
  const table = document.querySelector(selector);
  const read = () => Array.from(table.tBodies[0].rows).map(r => r.cells[column].textContent);
  table.querySelectorAll("th")[column].click();
  const up = read();
  table.querySelectorAll("th")[column].click();
  return {up: up, down: read()};
})"""
# Hover boxes: each titled box lies inside its figure's image.
HOVER_JS = """Array.from(document.querySelectorAll(".fig span[title]")).map(s => {
  const box = s.getBoundingClientRect(), img = s.parentElement.querySelector("img")
    .getBoundingClientRect();
  return box.width > 0 && box.left >= img.left - 1 && box.right <= img.right + 1
    && box.top >= img.top - 1 && box.bottom <= img.bottom + 1;
})"""


def _chromium() -> str:
    found = os.environ.get("EMONEURON_CHROMIUM") or next(
        filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
    if found is None:
        message = "no Chromium found: apt-get install chromium (or set EMONEURON_CHROMIUM)"
        if os.environ.get("EMONEURON_REQUIRE_BROWSER"):
            pytest.fail(message)
        pytest.skip(message)
    return found


class DevTools:
    """A minimal Chrome DevTools Protocol client for one page target."""

    def __init__(self, connection: ClientConnection) -> None:
        self.connection = connection
        self.ids = itertools.count(1)
        self.events: list[dict[str, Any]] = []

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        message_id = next(self.ids)
        self.connection.send(json.dumps({"id": message_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.connection.recv(timeout=PAGE_TIMEOUT_S))
            if message.get("id") == message_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return dict(message["result"])
            self.events.append(message)

    def wait_for(self, method: str) -> None:
        deadline = time.monotonic() + PAGE_TIMEOUT_S
        while not any(e.get("method") == method for e in self.events):
            self.events.append(json.loads(self.connection.recv(
                timeout=max(0.1, deadline - time.monotonic()))))

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression[:40]}...: {result['exceptionDetails']}")
        return result["result"]["value"]

    def errors(self) -> list[str]:
        """Uncaught exceptions, console.error/assert calls and browser log errors so far."""
        found = []
        for event in self.events:
            params = event.get("params", {})
            if event.get("method") == "Runtime.exceptionThrown":
                details = params["exceptionDetails"]
                found.append(details.get("exception", {}).get("description", details["text"]))
            elif (event.get("method") == "Runtime.consoleAPICalled"
                  and params["type"] in ("error", "assert")):
                found.append(" ".join(str(a.get("value", a.get("description")))
                                      for a in params["args"]))
            elif event.get("method") == "Log.entryAdded" and params["entry"]["level"] == "error":
                found.append(params["entry"]["text"])
        return found


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevTools]:
    profile = tmp_path_factory.mktemp("chromium-profile")
    process = subprocess.Popen(
        [_chromium(), "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--no-default-browser-check", "--remote-debugging-port=0", "--window-size=1280,900",
         f"--user-data-dir={profile}", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port_file, deadline = profile / "DevToolsActivePort", time.monotonic() + START_TIMEOUT_S
        while not (port_file.exists() and port_file.read_text().count("\n") >= 1):
            assert process.poll() is None, f"Chromium exited with code {process.returncode}"
            assert time.monotonic() < deadline, "Chromium did not open its DevTools port"
            time.sleep(0.1)
        port = int(port_file.read_text().splitlines()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list") as response:
            page = next(t for t in json.load(response) if t["type"] == "page")
        with connect(page["webSocketDebuggerUrl"], max_size=None) as connection:
            yield DevTools(connection)
    finally:
        process.terminate()
        process.wait(timeout=10)


@dataclass
class Rendered:
    figures: list[dict[str, Any]]
    errors: list[str]
    screenshot: Path


def render(browser: DevTools, page: Path, screenshot: Path) -> Rendered:
    """Open ``page``, wait for it to load, check figures and errors, save a full-page PNG."""
    browser.events.clear()
    for domain in ("Page", "Runtime", "Log"):
        browser.call(f"{domain}.enable")
    browser.call("Page.navigate", url=page.resolve().as_uri())
    browser.wait_for("Page.loadEventFired")
    figures = browser.evaluate(FIGURES_JS)
    size = browser.call("Page.getLayoutMetrics")["cssContentSize"]
    shot = browser.call("Page.captureScreenshot", format="png", captureBeyondViewport=True,
                        clip={"x": 0, "y": 0, "width": size["width"],
                              "height": min(size["height"], 16000), "scale": 1})
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    screenshot.write_bytes(base64.b64decode(shot["data"]))
    if os.environ.get("EMONEURON_SCREENSHOT_DIR"):
        shutil.copy(screenshot, Path(os.environ["EMONEURON_SCREENSHOT_DIR"]) / screenshot.name)
    return Rendered(figures, browser.errors(), screenshot)


def assert_renders_cleanly(result: Rendered) -> None:
    broken = [f["what"] for f in result.figures if not f["ok"]]
    assert result.figures and not broken, f"figures that did not load: {broken}"
    assert not result.errors, f"console errors: {result.errors}"
    assert result.screenshot.read_bytes().startswith(b"\x89PNG")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    """The whole pipeline on a tiny random model, kept small: a report, not a result."""
    out = tmp_path_factory.mktemp("tiny-run")
    run(preset_config(model=str(tiny_model_dir), per_emotion=6, max_turns=2, share=0.05,
                      control_seeds=(0,), proportions=(1.0,), batch_size=8, null_sets=2,
                      cross_per_emotion=1), out,
        progress=False)
    return out


def test_run_report_renders_in_chromium(browser: DevTools, tiny_run: Path,
                                        tmp_path: Path) -> None:
    result = render(browser, tiny_run / "report.html", tmp_path / "report.png")
    assert_renders_cleanly(result)
    assert len(result.figures) == len(list((tiny_run / "figures").glob("*.png")))
    hovers = browser.evaluate(HOVER_JS)
    assert hovers and all(hovers)
    sorted_by_n = browser.evaluate(SORT_JS + '("#tables table.sortable", 1)')  # self effect, n
    numbers = [int(v) for v in sorted_by_n["up"]]
    assert numbers == sorted(numbers) and sorted_by_n["down"] == sorted_by_n["up"][::-1]


def test_comparison_renders_in_chromium(browser: DevTools, tiny_run: Path,
                                        tmp_path: Path) -> None:
    make_run(tmp_path / "fake", model_name="fake-lm")
    page = write_comparison([tiny_run, tmp_path / "fake"], tmp_path / "cmp")
    result = render(browser, page, tmp_path / "compare.png")
    assert_renders_cleanly(result)
    assert len(result.figures) == 4
    layers = browser.evaluate(SORT_JS + '("#runs", 4)')["up"]  # column layers
    assert [int(v) for v in layers] == sorted(int(v) for v in layers)


def test_check_fails_on_a_broken_figure_and_a_script_error(browser: DevTools, tiny_run: Path,
                                                           tmp_path: Path) -> None:
    """The checks above can fail: the same report with one image corrupted and a script that
    throws, and one whose image file is missing."""
    page = (tiny_run / "report.html").read_text(encoding="utf-8")
    broken = page.replace('src="data:image/png;base64,', 'src="data:image/png;base64,AAAA', 1)
    broken = broken.replace("</body>", "<script>undefinedFunction();</script></body>")
    (tmp_path / "broken.html").write_text(broken, encoding="utf-8")
    result = render(browser, tmp_path / "broken.html", tmp_path / "broken.png")
    assert sum(not f["ok"] for f in result.figures) == 1
    assert any("undefinedFunction is not defined" in e for e in result.errors)
    with pytest.raises(AssertionError, match="figures that did not load"):
        assert_renders_cleanly(result)

    (tmp_path / "missing.html").write_text('<img src="missing.png" alt="gone">')
    result = render(browser, tmp_path / "missing.html", tmp_path / "missing.png")
    assert result.figures == [{"what": "img gone", "ok": False}]
    assert any("ERR_FILE_NOT_FOUND" in e for e in result.errors)


def test_table_sorter_orders_numbers_by_value(browser: DevTools, tmp_path: Path) -> None:
    cells = ["100.0% [90.0%, 100.0%]", "9.5%", "-3", "n/a", "1,250", "+0.4"]
    html = page("sorter", "", [Section("t", "T", table(["value"], [[c] for c in cells]))])
    (tmp_path / "sorter.html").write_text(html, encoding="utf-8")
    result = render(browser, tmp_path / "sorter.html", tmp_path / "sorter.png")
    assert not result.errors
    order = browser.evaluate(SORT_JS + '("table.sortable", 0)')
    assert order["up"] == ["-3", "+0.4", "9.5%", "100.0% [90.0%, 100.0%]", "1,250", "n/a"]
    assert order["down"] == order["up"][::-1]
