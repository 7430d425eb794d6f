"""The documentation site: `mkdocs build --strict` (no broken link or reference; the tutorials executed on quick
sizes, so a tutorial that no longer runs fails the build), the generated reference pages, and the built site in a
real headless browser (Debian's chromium): the home page, the API reference and a tutorial load with no console
errors. A screenshot of the home page is saved to runs/screenshots/docs-home.png (runs/ is not committed).
"""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOT = ROOT / "runs" / "screenshots" / "docs-home.png"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")

pytestmark = [
    pytest.mark.embedded,  # the tutorials load the default model
    pytest.mark.skipif(shutil.which("mkdocs", path=str(Path(sys.executable).parent)) is None, reason="needs mkdocs"),
]


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "STEERSCOPE_QUICK": "1", "OMP_NUM_THREADS": "1", "NO_MKDOCS_2_WARNING": "1"}
    mkdocs = Path(sys.executable).parent / "mkdocs"
    done = subprocess.run(
        [str(mkdocs), "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    return out


def test_the_site_builds_strictly_with_every_page(site):
    for page in ("index.html", "reference/python/index.html", "reference/cli/index.html", "results/index.html",
                 "guide/steering/index.html", "contributing/index.html"):  # fmt: skip
        assert (site / page).is_file(), page
    tutorials = sorted((site / "tutorials").glob("*/index.html"))
    assert len(tutorials) >= 4
    for page in tutorials:
        text = page.read_text(encoding="utf-8")
        assert "jp-OutputArea" in text or "output_area" in text, f"{page}: no executed output"


def test_generated_reference_pages_hold_the_code(site):
    cli = (site / "reference/cli/index.html").read_text(encoding="utf-8")
    for name in ("steerscope extract", "steerscope serve", "--api-key", "steerscope vectors inspect"):
        assert name in cli, name
    api = (site / "reference/python/index.html").read_text(encoding="utf-8")
    assert "load_model" in api and "SteeringVector" in api and "check_steering" in api
    architectures = (site / "reference/architectures/index.html").read_text(encoding="utf-8")
    assert "gemma3_text" in architectures and "sandwich norms" in architectures
    contributing = (site / "contributing/index.html").read_text(encoding="utf-8")
    assert "steerscope.core.commands" in contributing  # the module map is generated, so it misses no module


@pytest.mark.skipif(not (CHROMIUM and DRIVER), reason="needs Debian's chromium and chromium-driver (.ci/run)")
def test_pages_load_in_a_browser_without_console_errors(site):
    webdriver = pytest.importorskip("selenium.webdriver")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    flags = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1300,1000"]
    for flag in [*flags, "--disable-background-networking", "--disable-component-update"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=DRIVER))
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}/"
        tutorial = sorted((site / "tutorials").glob("*/index.html"))[0].parent.name
        for path in ("", "reference/python/", f"tutorials/{tutorial}/"):
            driver.get(base + path)
            assert driver.find_element("css selector", "h1").text, path
            errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
            assert errors == [], (path, errors)
            if path == "":
                SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
                driver.save_screenshot(str(SCREENSHOT))
    finally:
        driver.quit()
        server.shutdown()
