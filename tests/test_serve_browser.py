"""The playground in a real headless browser (Debian's chromium + chromium-driver, through Selenium) on the
embedded default model: type a prompt, move the slider, wait for both streams, open the results browser.

A screenshot of the page at 1300 px width is saved to runs/screenshots/playground.png (runs/ is not committed).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from steerscope import load_model
from steerscope.serve import Background, Playground, create_app

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
SCREENSHOT = Path(__file__).resolve().parents[1] / "runs" / "screenshots" / "playground.png"
PROMPT = "I went to the park today and"

pytestmark = [
    pytest.mark.embedded,
    pytest.mark.skipif(not (CHROMIUM and DRIVER), reason="needs Debian's chromium and chromium-driver (.ci/run)"),
]


@pytest.fixture
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    options.add_argument("--window-size=1300,1100")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=DRIVER))
    yield driver
    driver.quit()


@pytest.fixture
def runs(tmp_path):
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "demo.json").write_text("{}")
    (tmp_path / "demo" / "index.html").write_text("<!doctype html><title>demo</title><h1>the demo report</h1>")
    return tmp_path


def test_type_move_the_slider_and_read_both_streams(one_thread, browser, runs):
    started = time.perf_counter()
    lm = load_model("default")
    with Background(create_app(Playground(lm, "default", runs=runs))) as url:
        browser.get(url)
        wait = WebDriverWait(browser, 120)  # generous: the cores may be shared with other work
        wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "true")
        browser.find_element(By.ID, "prompt").send_keys(PROMPT)
        for field, value in (("max-new", "16"), ("a-n", "8")):
            browser.find_element(By.ID, field).clear()
            browser.find_element(By.ID, field).send_keys(value)
        slider = browser.find_element(By.ID, "coef")
        assert slider.get_attribute("value") == "4"
        slider.click()  # a click on the track's middle sets 0; the keys then move it as a user would
        for _ in range(16):
            slider.send_keys(Keys.ARROW_RIGHT)
        assert slider.get_attribute("value") == "8"
        assert browser.find_element(By.ID, "coef-value").text == "8"

        def both_streams_done(d):
            columns = d.find_elements(By.CSS_SELECTOR, "#steer-columns .column")
            states = [(c.get_attribute("data-state"), c.get_attribute("data-coefficient")) for c in columns]
            return states == [("done", ""), ("done", "8")] and d.find_element(By.ID, "download").is_enabled()

        wait.until(both_streams_done)
        unsteered, steered = (
            c.find_element(By.CLASS_NAME, "completion").text
            for c in browser.find_elements(By.CSS_SELECTOR, "#steer-columns .column")
        )
        assert unsteered.strip() and steered.strip() and steered != unsteered
        numbers = browser.find_element(By.CSS_SELECTOR, '#steer-columns .column[data-column="1"] .numbers').text
        assert "nats/token under the unsteered model" in numbers and "concept scores: positive" in numbers
        assert browser.find_element(By.ID, "error").text == ""
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        assert browser.get_window_size()["width"] == 1300
        browser.save_screenshot(str(SCREENSHOT))

        browser.find_element(By.CSS_SELECTOR, '.tab[data-view="results"]').click()
        item = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#runs li"))[0]
        assert item.text.startswith("demo")
        item.click()
        wait.until(lambda d: d.find_element(By.ID, "report").get_attribute("src").endswith("/runs/demo/index.html"))
        browser.switch_to.frame("report")
        assert browser.find_element(By.TAG_NAME, "h1").text == "the demo report"
        browser.switch_to.default_content()

        errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert errors == [], errors
    print(f"\nbrowser test: {time.perf_counter() - started:.1f} s; screenshot {SCREENSHOT}")
