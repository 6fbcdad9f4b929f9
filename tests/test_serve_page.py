"""The page in a real headless Chromium (Debian's chromium and chromium-driver, driven by selenium):
type a prompt, see the answer and the waterfall's rows, approve a tool call. With
``TRACEDAGENT_UPDATE_SCREENSHOT=1`` the screenshot is written to ``docs/serve.png`` (the README's)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from serve_server import uvicorn_server

from tracedagent._demo import build_demo_agent
from tracedagent.serve import asgi_app

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as ec  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
if not (os.path.exists(CHROMIUM) and os.path.exists(DRIVER)):
    pytest.skip("needs Debian's chromium and chromium-driver", allow_module_level=True)

DOCS = Path(__file__).resolve().parents[1] / "docs"


@pytest.fixture
def browser() -> Iterator[Any]:
    profile = tempfile.mkdtemp(prefix="tracedagent-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1400,860",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=DRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def rows(driver: Any) -> list[tuple[str, str, str]]:
    """The waterfall's rows (kind, label, status), read in one go: the page redraws them as events come."""
    found = driver.execute_script(
        "return [...document.querySelectorAll('.wf-row')].map((r) => "
        "[r.dataset.kind, r.querySelector('.wf-label').textContent, r.dataset.status]);"
    )
    return [(kind, label.removeprefix(kind), status) for kind, label, status in found]


def test_the_page_talks_to_the_agent_draws_the_waterfall_and_approves_a_call(browser: Any, tmp_path: Path) -> None:
    with uvicorn_server(asgi_app(build_demo_agent(), token="page-token")) as running:
        wait = WebDriverWait(browser, 30)
        browser.get(running.url + "/?token=page-token")
        wait.until(ec.text_to_be_present_in_element((By.ID, "agent"), "trip-desk"))

        prompt = browser.find_element(By.ID, "prompt")
        prompt.send_keys("I fly from Lisbon to Oslo on TA404. What should I expect?\n")
        wait.until(ec.text_to_be_present_in_element((By.CSS_SELECTOR, ".msg.assistant"), "Weather in Lisbon and Oslo"))
        wait.until(lambda d: any(k == "run" and s == "completed" for k, _, s in rows(d)))
        drawn = rows(browser)
        kinds = [k for k, _, _ in drawn]
        assert kinds.count("run") == 1
        assert kinds.count("model") == 3
        assert kinds.count("tool") == 3
        assert ("tool", "flight_status f0", "error") in drawn
        meta = browser.execute_script("return document.querySelector('.wf-row[data-kind=model] .wf-meta').textContent")
        assert "tok" in meta
        assert "ok" in meta
        assert browser.find_element(By.ID, "status").text == "completed"

        prompt.send_keys("Book me a window seat on TA555, please.\n")
        approve = wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, ".approval button.approve")))
        assert "book_seat" in browser.find_element(By.ID, "approvals").text
        assert browser.find_element(By.CSS_SELECTOR, ".approval button.deny").is_displayed()
        assert browser.find_element(By.ID, "status").text == "interrupted"
        assert "paused: book_seat b0" in browser.find_element(By.ID, "waterfall").text  # the pause is marked
        shot = tmp_path / "serve.png"
        browser.save_screenshot(str(shot))
        assert shot.stat().st_size > 10_000

        approve.click()
        wait.until(ec.text_to_be_present_in_element((By.ID, "messages"), "Done: seat 14A booked on TA555."))
        wait.until(lambda d: any(k == "resume" and s == "completed" for k, _, s in rows(d)))
        labels = [label for k, label, _ in rows(browser) if k == "tool"]
        assert any("book_seat" in label for label in labels)
        assert browser.find_element(By.ID, "status").text == "completed"
        browser.save_screenshot(str(tmp_path / "serve-approved.png"))

        # Deny: the run resumes with the call refused, and the page says so.
        prompt.send_keys("Book me a window seat on TA555 again.\n")
        deny = wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, ".approval button.deny")))
        deny.click()
        wait.until(ec.text_to_be_present_in_element((By.ID, "messages"), "The booking was not made."))
        wait.until(lambda d: browser.find_element(By.ID, "status").text == "completed")
        assert not browser.find_element(By.ID, "approvals").is_displayed()
        assert "decided" in browser.find_element(By.ID, "messages").text
        assert ("tool", "book_seat b0", "denied") in rows(browser)  # the refused call, drawn as denied
        if os.environ.get("TRACEDAGENT_UPDATE_SCREENSHOT") == "1":
            DOCS.mkdir(exist_ok=True)
            shutil.copy(shot, DOCS / "serve.png")
