"""Live control in a real headless Chromium (Debian's, driven by Playwright): a paused run is stepped
twice with the page's Step button, an event typed into the page is injected and the run resumed;
the event shows in the stream and the Events card, marked as injected, and is in ``events``."""

from __future__ import annotations

import re
import threading
from typing import Any

import duckdb
import pytest

from personahub.analysis.live_view import RunView, ViewSource, start_view
from personahub.api import run_simulation
from personahub.core.store import connect
from personahub.pipelines.run import RunConfig
from personahub.sim.scenario import load_scenario
from tests.analysis.test_live_control import EVENT, INJECT_AT, STEPS, scenario_path  # noqa: F401
from tests.optional import CHROMIUM, CHROMIUM_ARGS, need_browser


def re_full(pattern: str, text: str) -> bool:
    return re.fullmatch(pattern, text.strip()) is not None


def re_search(pattern: str, text: str) -> bool:
    return re.search(pattern, text) is not None


@pytest.mark.slow
def test_inject_an_event_from_the_page(scenario_path, tmp_path):  # noqa: F811  # a fixture
    need_browser()
    from playwright.sync_api import sync_playwright

    db = tmp_path / "browser.duckdb"
    watcher = RunView(db, 0, lambda line: None, paused=True)
    started = threading.Event()
    result: dict[str, Any] = {}

    def on_start(run_id: str, resumed: bool) -> None:
        watcher.start(run_id)
        result["run_id"] = run_id
        started.set()

    def work() -> None:  # the run goes in a worker: Playwright's sync API owns this thread's loop
        try:
            config = RunConfig(scenario=load_scenario(scenario_path), db=db,
                               live_control=watcher.live_control)
            run_simulation(config, on_start=on_start)
        except BaseException as exc:  # noqa: BLE001  # handed to the test thread
            result["error"] = exc
        finally:
            watcher.live_control.finish()
            started.set()

    worker = threading.Thread(target=work)
    worker.start()
    try:
        assert started.wait(timeout=120) and watcher.handle is not None, result
        with sync_playwright() as pw:
            chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = chromium.new_page(viewport={"width": 1200, "height": 1500})
            page.goto(watcher.handle.url)
            for step in range(1, INJECT_AT):
                page.wait_for_function(f"document.body.dataset.waitingBefore === '{step}'",
                                       timeout=120_000)
                assert "paused before step" in page.locator("#steer-state").inner_text()
                page.click("#steer-step")
            page.wait_for_function(f"document.body.dataset.waitingBefore === '{INJECT_AT}'",
                                   timeout=120_000)
            page.fill("#steer-text", EVENT)
            page.click("#steer-inject")
            page.wait_for_function("document.getElementById('steer-state').textContent"
                                   ".includes('queued')", timeout=30_000)
            assert page.input_value("#steer-text") == ""
            page.click("#steer-resume")
            page.wait_for_function(f"document.body.dataset.status === 'finished' && "
                                   f"document.body.dataset.stepsDone === '{STEPS}' && "
                                   "document.body.dataset.steer === 'over'", timeout=120_000)
            injected = page.locator("#events li.injected")
            assert injected.count() == 1 and EVENT in injected.inner_text()
            assert "injected from the view" in injected.inner_text()
            streamed = page.locator("#stream li.injected")
            assert streamed.count() == 1 and f"step {INJECT_AT}" in streamed.inner_text()
            assert page.locator("#steer-step").is_disabled()
            # the numbers read as numbers: calls/s to one decimal, times to the second,
            # whole-number count ticks, and a finished run's graph legend says no "yet"
            assert re_full(r"\d+\.\d · \d+\.\d", page.locator("#m-rate").inner_text())
            line = page.locator("#run-line").inner_text()
            assert re_search(r"started \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", line), line
            ticks = page.locator("#activity text.count-tick").all_text_contents()
            assert ticks and all(t.replace(",", "").isdigit() for t in ticks), ticks
            assert "yet" not in page.locator("#graph-legend").inner_text()
            page.screenshot(path=str(tmp_path / "steered.png"), full_page=True)
            chromium.close()
    finally:
        if not watcher.live_control.status()["over"]:
            watcher.live_control.resume()
        worker.join(timeout=300)
        watcher.stop()
    assert "error" not in result, result.get("error")
    con = duckdb.connect(str(db), read_only=True)
    rows = con.execute("SELECT step, text, source FROM events WHERE source = 'view'").fetchall()
    con.close()
    assert rows == [(INJECT_AT, EVENT, "view")]



@pytest.mark.slow
def test_a_database_without_runs_says_so(tmp_path):
    need_browser()
    from playwright.sync_api import sync_playwright

    db = tmp_path / "empty.duckdb"
    connect(db).close()
    handle = start_view(ViewSource(lambda: connect(db, read_only=True)), port=0)
    try:
        with sync_playwright() as pw:
            chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = chromium.new_page()
            page.goto(handle.url)
            page.wait_for_function("document.body.dataset.status === 'no run'", timeout=30_000)
            assert "no run in this database yet" in page.locator("#run-line").inner_text()
            assert page.locator("#steer").is_hidden()  # a view of a file only watches
            assert "no event delivered yet" in page.locator("#events").inner_text()
            chromium.close()
    finally:
        handle.stop()
