"""The live view in a real headless Chromium (Debian's, driven by Playwright): the page loads and
shows the run's numbers, it follows a product-launch run while it runs (the step counter and
the purchase-intent distributions change), and its screenshot is not blank."""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import numpy as np
import pytest

from personahub.analysis.live_view import ViewSource, start_view
from personahub.api import run_simulation
from personahub.core.store import connect
from personahub.pipelines.run import RunConfig
from personahub.sim.scenario import load_scenario
from tests.optional import CHROMIUM, CHROMIUM_ARGS, need_browser

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
LAUNCH = ROOT / "scenarios" / "product_launch.py"


@pytest.fixture(scope="module")
def browser():
    need_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def text(page, selector: str) -> str:
    return page.locator(selector).inner_text().strip()


def non_blank(png: bytes) -> float:
    """The screenshot's pixel standard deviation (0 for a blank page)."""
    from PIL import Image

    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=float)
    return float(pixels.std())


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A finished product-launch run (made before the browser starts: Playwright's sync API runs
    an event loop of its own in this thread)."""
    db = tmp_path_factory.mktemp("finished") / "done.duckdb"
    return db, run_simulation(RunConfig(scenario=load_scenario(LAUNCH), db=db)).run_id


def test_finished_run_shows_its_numbers(finished, browser, tmp_path):
    db, run_id = finished
    con = duckdb.connect(str(db), read_only=True)
    calls, intent = con.execute("select count(*) from llm_calls where run_id = ?", [run_id]).fetchone()[0], \
        dict(con.execute("select answer_choice, count(*) from survey_answers where step = 3 and "
                         "survey_id = 'purchase_intent' group by 1").fetchall())
    con.close()
    handle = start_view(ViewSource(lambda: connect(db, read_only=True)), port=0)
    page = browser.new_page(viewport={"width": 1200, "height": 1400})
    try:
        page.goto(handle.url)
        page.wait_for_function("document.body.dataset.stepsDone === '5'", timeout=30_000)
        assert text(page, "#m-step") == "5 / 5"
        assert text(page, "#m-status") == "finished"
        assert text(page, "#m-calls").replace(",", "") == str(calls)
        assert run_id in text(page, "#run-line") and "not a language model" in text(page, "#run-line")
        survey = page.locator("[data-survey=purchase_intent]")
        assert survey.get_attribute("data-steps") == "1,3,5"
        shown = survey.get_attribute("data-counts")
        assert all(f'"{choice}":{n}' in shown for choice, n in intent.items())
        assert page.locator("[data-survey=purchase_intent] rect.share").count() >= 3 * 3
        assert page.locator(".event-mark").count() >= 3  # events at steps 2, 4 and 5, per survey
        page.wait_for_function("document.querySelectorAll('#graph circle.node').length > 0")
        assert page.locator("#graph circle.node").count() == 120
        assert "npc_dialogue" in text(page, "#graph-legend")
        assert page.locator("#stream li").count() > 0
        png = page.screenshot(full_page=True)
        (tmp_path / "view.png").write_bytes(png)
        assert non_blank(png) > 10
    finally:
        page.close()
        handle.stop()


def wait_for_url(log: Path, proc: subprocess.Popen, timeout: float = 120) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = re.search(r"view: (http://127\.0\.0\.1:\d+/)", log.read_text(errors="replace"))
        if found:
            return found.group(1)
        assert proc.poll() is None, log.read_text(errors="replace")
        time.sleep(0.1)
    raise AssertionError(f"no view URL in time: {log.read_text(errors='replace')}")


def test_follows_a_running_run(browser, tmp_path):
    db, log = tmp_path / "live.duckdb", tmp_path / "run.err"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    with log.open("w") as err:  # slowed down so the page sees the run step by step
        proc = subprocess.Popen([sys.executable, "-m", "personahub", "run", str(LAUNCH), "--db", str(db),
                                 "--view", "--view-port", "0", "--offline-latency", "0.3"],
                                stdout=subprocess.DEVNULL, stderr=err, env=env, cwd=tmp_path)
    page = browser.new_page(viewport={"width": 1200, "height": 1400})
    try:
        page.goto(wait_for_url(log, proc))
        steps_seen, intents_seen = [], []
        deadline = time.monotonic() + 240
        finished = False
        while time.monotonic() < deadline:
            # the page may show "finished" one poll before the last step's counts (its state is
            # read in several queries while the run commits), so wait for both
            finished = page.evaluate("document.body.dataset.status") == "finished"
            done = page.evaluate("document.body.dataset.stepsDone")
            intent = page.evaluate("(document.querySelector('[data-survey=purchase_intent]') || "
                                   "{dataset: {}}).dataset.steps")
            if done is not None and (not steps_seen or steps_seen[-1] != done):
                steps_seen.append(done)
            if intent is not None and (not intents_seen or intents_seen[-1] != intent):
                intents_seen.append(intent)
            if finished and done == "5":
                break
            time.sleep(0.2)
        assert steps_seen[-1] == "5" and page.evaluate("document.body.dataset.status") == "finished"
        assert len(steps_seen) >= 2, steps_seen  # the counter moved while the page watched
        assert len(intents_seen) >= 2 and intents_seen[-1] == "1,3,5", intents_seen
        assert steps_seen[0] != "5" and intents_seen[0] != "1,3,5"
        assert proc.poll() is None  # the view stays up after the run
        assert non_blank(page.screenshot()) > 10
    finally:
        page.close()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, log.read_text(errors="replace")


def test_a_judged_run_shows_its_validity_rate(finished, browser, tmp_path):
    """Hidden until the run is judged; then the latest judge's rate and interval, labelled offline.
    (Judged through the Python API: it moves the job to a worker thread, as Playwright's sync API
    runs an event loop in this one.)"""
    import personahub

    db = tmp_path / "judged.duckdb"
    db.write_bytes(finished[0].read_bytes())
    handle = start_view(ViewSource(lambda: connect(db, read_only=True)), port=0)
    page = browser.new_page()
    try:
        page.goto(handle.url)
        page.wait_for_function("document.body.dataset.stepsDone === '5'", timeout=30_000)
        assert page.locator("#m-validity-box").is_hidden()
    finally:
        page.close()
        handle.stop()
    assert personahub.judge(run=finished[1], db=db, sample=10).judged == 10
    handle = start_view(ViewSource(lambda: connect(db, read_only=True)), port=0)
    page = browser.new_page()
    try:
        page.goto(handle.url)
        page.wait_for_function("!document.getElementById('m-validity-box').hidden", timeout=30_000)
        assert re.fullmatch(r"\d+\.\d% of 10 \(\d+\.\d%–\d+\.\d%\)", text(page, "#m-validity"))
        assert "not a judge of quality" in text(page, "#m-validity-k")
    finally:
        page.close()
        handle.stop()
