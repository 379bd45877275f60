"""The console's browser tests: Debian's headless Chromium, driven through Debian's chromedriver by selenium
(the driver's path given, so selenium-manager never downloads anything), against a real gateway on 127.0.0.1.

Every test's screenshots go to `.koppel/artifacts/screenshots/<test>-<step>.png` (the repository's
`.koppel/` is gitignored): the steps a test names with `Browser.shot`, and `<test>-failed.png` when it fails.

Chromium missing: `./run.sh test` installs it (and sets KOPPEL_BROWSER_REQUIRED, so there a missing browser
fails the tests); pytest run by hand without it skips them, saying why.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.wait import WebDriverWait

from tests.conftest import PHASE_REPORTS

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
"""Debian's `chromium` and `chromium-driver` packages (`./run.sh test` installs them)."""
SCREENSHOTS = Path(__file__).resolve().parent.parent / ".koppel" / "artifacts" / "screenshots"
WINDOW = (1280, 900)
WAIT_SECONDS = 15
"""How long a step waits for the page it expects: a bound on a hang, not a speed requirement."""


def chromium_paths() -> tuple[str, str]:
    """Chromium and chromedriver; missing, the test is skipped (failed under `./run.sh test`), naming the fix."""
    chromium = CHROMIUM if os.access(CHROMIUM, os.X_OK) else shutil.which("chromium")
    driver = CHROMEDRIVER if os.access(CHROMEDRIVER, os.X_OK) else shutil.which("chromedriver")
    if chromium and driver:
        return chromium, driver
    missing = " and ".join(name for name, path in (("chromium", chromium), ("chromedriver", driver)) if not path)
    reason = f"{missing} not found: `./run.sh test` installs Debian's chromium and chromium-driver (apt-get)"
    if os.environ.get("KOPPEL_BROWSER_REQUIRED"):
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


def chrome(chromium: str, chromedriver: str) -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root, where Chromium's sandbox cannot start
        "--disable-dev-shm-usage",  # small /dev/shm in containers
        "--disable-gpu",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        "--lang=en-GB",
        "--no-first-run",
        "--disable-extensions",
    ):
        options.add_argument(argument)
    return webdriver.Chrome(options=options, service=Service(executable_path=chromedriver))


@pytest.fixture(scope="session")
def chromium_driver() -> Iterator[webdriver.Chrome]:
    """One headless Chromium for the session (a start costs a second); `browser` clears it between tests."""
    driver = chrome(*chromium_paths())
    try:
        yield driver
    finally:
        driver.quit()


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-")


@dataclass
class Browser:
    """The driver, at a base URL, with the steps a user takes and a screenshot per named step."""

    driver: webdriver.Chrome
    base_url: str
    test: str

    def open(self, path: str) -> None:
        self.driver.get(self.base_url + path)

    @property
    def path(self) -> str:
        url: str = self.driver.current_url
        return url.removeprefix(self.base_url)

    @property
    def text(self) -> str:
        body: str = self.driver.find_element(By.TAG_NAME, "body").text
        return body

    def shot(self, step: str) -> Path:
        """A screenshot of the whole window: `<test>-<step>.png` under SCREENSHOTS."""
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{self.test}-{_slug(step)}.png"
        self.driver.save_screenshot(str(path))
        return path

    def find(self, css: str) -> WebElement:
        """The element `css` names, once the page shows it."""
        return self.wait(expected_conditions.visibility_of_element_located((By.CSS_SELECTOR, css)), css)

    def all(self, css: str) -> list[WebElement]:
        found: list[WebElement] = self.driver.find_elements(By.CSS_SELECTOR, css)
        return found

    def absent(self, css: str) -> bool:
        return not self.driver.find_elements(By.CSS_SELECTOR, css)

    def wait(
        self, condition: Callable[[Any], Any], what: str, ignored: type[Exception] = StaleElementReferenceException
    ) -> Any:
        """`condition`'s first true value, tried until WAIT_SECONDS are up (exceptions of type `ignored`: not yet)."""
        try:
            return WebDriverWait(self.driver, WAIT_SECONDS, ignored_exceptions=[ignored]).until(condition)
        except TimeoutException:
            raise AssertionError(f"the page at {self.path} never showed {what}:\n{self.text[:2000]}") from None

    def wait_for_text(self, text: str, css: str = "body") -> WebElement:
        """The element `css` once its text contains `text`."""
        located = (By.CSS_SELECTOR, css)
        self.wait(expected_conditions.text_to_be_present_in_element(located, text), f"{text!r} in {css}")
        return self.find(css)

    def lines(self, css: str) -> int:
        """How many lines the text of the element `css` takes as laid out (1: it does not wrap)."""
        script = """
            const range = document.createRange(); range.selectNodeContents(arguments[0]);
            return new Set([...range.getClientRects()].filter(r => r.width > 0).map(r => Math.round(r.top))).size;
        """
        count: int = self.driver.execute_script(script, self.find(css))
        return count

    def width(self, css: str) -> int:
        return int(self.find(css).size["width"])

    def height(self, css: str) -> int:
        return int(self.find(css).size["height"])

    def fill(self, css: str, value: str) -> None:
        field = self.find(css)
        field.clear()
        field.send_keys(value)

    def click(self, css: str) -> None:
        """Click what stays on this page (a <details> summary)."""
        self.find(css).click()

    def follow(self, css: str) -> None:
        """Click a link or a form's button, and wait until the page it loads has replaced this one (a mark left
        on this page's window is gone, the new document loaded)."""
        element = self.find(css)
        self.driver.execute_script("window.koppelLeft = true")
        element.click()
        script = "return window.koppelLeft === undefined && document.readyState === 'complete'"
        # While the document is swapped, chromedriver may answer with errors of its own: try again.
        self.wait(lambda driver: driver.execute_script(script), f"a new page after clicking {css}", WebDriverException)


def browser_at(request: pytest.FixtureRequest, driver: webdriver.Chrome, base_url: str) -> Iterator[Browser]:
    """A `Browser` for the test asking, with no cookies, storage or extra headers left by earlier tests (every
    gateway is on 127.0.0.1, and cookies do not tell ports apart); its screenshot as `<test>-failed.png` when the
    test fails."""
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": {}})
    driver.execute_cdp_cmd("Network.clearBrowserCookies", {})
    driver.execute_cdp_cmd("Storage.clearDataForOrigin", {"origin": base_url, "storageTypes": "all"})
    test = _slug(request.node.name)
    for old in SCREENSHOTS.glob(f"{test}-*.png"):
        old.unlink()
    browser = Browser(driver, base_url, test)
    yield browser
    report = request.node.stash.get(PHASE_REPORTS, {}).get("call")
    if report is not None and report.failed:
        browser.shot("failed")
