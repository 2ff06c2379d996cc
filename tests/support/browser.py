"""A real headless Chromium for the dashboard's tests, driven by selenium: open a page, wait for what
a person would see (never a fixed sleep), click, type, take screenshots, read the console's errors.

The browser and its driver are Debian's chromium and chromium-driver (`hack/ensure-browser`, `make
browser` installs them), or the ones CONVEYOR_CHROMIUM and CONVEYOR_CHROMEDRIVER name. The driver's
path is always given to selenium, so Selenium Manager never runs and nothing is ever downloaded.

    with Browser() as b:                      # or the session-wide `browser` fixture (tests/conftest.py)
        b.open("http://127.0.0.1:8080/")
        b.click("button#approve")
        b.wait_for("#status", text="Approved", what="the approval shown as done")
        assert b.console_errors() == []

Screenshots land in $CONVEYOR_ARTIFACTS/screenshots/ (default: <repo>/.artifacts/screenshots/); a
test that fails while using the `browser` fixture gets one named after it.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import pytest
from selenium import webdriver
from selenium.common.exceptions import (
    NoAlertPresentException,
    NoSuchElementException,
    StaleElementReferenceException,
    TimeoutException,
    WebDriverException,
)
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

REPO = Path(__file__).resolve().parents[2]
DEFAULT_CHROMIUM = "/usr/bin/chromium"
DEFAULT_CHROMEDRIVER = "/usr/bin/chromedriver"
# The flags this machine's closed network needs: without the background-networking ones Chromium
# keeps trying (and failing) to reach Google's hosts. --no-sandbox: the tests run as root in CI.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
WINDOW = (1400, 900)
PAGE_TEXT_LIMIT = 2048  # how much of the page's visible text a timeout shows
HINT = "run hack/ensure-browser (or make browser) to install Debian's chromium and chromium-driver"

T = TypeVar("T")


class BrowserMissing(RuntimeError):
    """Chromium or ChromeDriver is not installed (or not where CONVEYOR_CHROMIUM/_CHROMEDRIVER say)."""


class BrowserWaitTimeout(AssertionError):
    """A wait ran out: names what was awaited, the page's URL and the start of its visible text."""


def artifacts_dir() -> Path:
    """Where test artifacts go: $CONVEYOR_ARTIFACTS, else <repo>/.artifacts/ (ignored by git)."""
    return Path(os.environ.get("CONVEYOR_ARTIFACTS") or REPO / ".artifacts")


def screenshots_dir() -> Path:
    """The screenshots folder inside the artifacts folder."""
    return artifacts_dir() / "screenshots"


def binaries() -> tuple[str, str]:
    """(chromium, chromedriver): CONVEYOR_CHROMIUM / CONVEYOR_CHROMEDRIVER, else Debian's paths.
    Raises BrowserMissing, with the install hint, when either is not an executable file."""
    chromium = os.environ.get("CONVEYOR_CHROMIUM") or DEFAULT_CHROMIUM
    driver = os.environ.get("CONVEYOR_CHROMEDRIVER") or DEFAULT_CHROMEDRIVER
    missing = [p for p in (chromium, driver) if not (os.path.isfile(p) and os.access(p, os.X_OK))]
    if missing:
        raise BrowserMissing(f"no executable {' or '.join(missing)}: {HINT}")
    return chromium, driver


def safe_name(name: str) -> str:
    """A file name from anything (a test id such as tests/e2e/test_x.py::test_y[case])."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_")[:150] or "screenshot"


class Browser:
    """One headless Chromium session (selenium's Chrome driver), 1400x900, with a fresh profile.

    Use it as a context manager, or call start() and close(). Every wait is a WebDriverWait with a
    deadline (`timeout`, default `default_timeout` seconds) that, on timeout, raises
    BrowserWaitTimeout naming what was awaited, the current URL and the page's visible text.
    """

    def __init__(self, *, default_timeout: float = 10.0, window: tuple[int, int] = WINDOW) -> None:
        self.default_timeout = default_timeout
        self.window = window
        self._driver: webdriver.Chrome | None = None
        self._profile: str | None = None
        self._console: list[dict[str, Any]] = []

    # -- life cycle -------------------------------------------------------------------------------

    def start(self) -> Browser:
        """Start Chromium. Raises BrowserMissing (with the install hint) when it is not installed."""
        chromium, driver = binaries()
        # Belt and braces: with the driver's path given Selenium Manager is never run; were it run
        # anyway, offline mode keeps it from downloading a browser or a driver.
        os.environ.setdefault("SE_OFFLINE", "true")
        self._profile = tempfile.mkdtemp(prefix="conveyor-chromium-")
        options = webdriver.ChromeOptions()
        options.binary_location = chromium
        width, height = self.window
        for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={self._profile}", f"--window-size={width},{height}"):
            options.add_argument(flag)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        try:
            self._driver = webdriver.Chrome(options=options, service=Service(executable_path=driver))
        except WebDriverException as e:
            shutil.rmtree(self._profile, ignore_errors=True)
            raise BrowserMissing(f"Chromium ({chromium}) did not start via {driver}: {e.msg}; {HINT}") from e
        self._driver.set_window_size(*self.window)
        self._driver.set_page_load_timeout(30)
        return self

    def close(self) -> None:
        """Quit Chromium and remove its profile; safe to call twice."""
        if self._driver is not None:
            try:
                self._driver.quit()
            finally:
                self._driver = None
        if self._profile is not None:
            shutil.rmtree(self._profile, ignore_errors=True)
            self._profile = None

    def __enter__(self) -> Browser:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def driver(self) -> webdriver.Chrome:
        """The selenium driver, for anything this helper does not wrap."""
        if self._driver is None:
            raise RuntimeError("the browser is not started (use `with Browser() as b:` or b.start())")
        return self._driver

    # -- pages and elements -----------------------------------------------------------------------

    def open(self, url: str) -> None:
        """Load `url` and wait for its load event. Console entries logged before are discarded, so
        console_errors() speaks of this page (and what it did since) only."""
        self.driver.get_log("browser")
        self._console = []
        self.driver.get(url)

    @property
    def url(self) -> str:
        """The current URL."""
        return self.driver.current_url

    def page_text(self, limit: int = PAGE_TEXT_LIMIT) -> str:
        """The page's visible text (document.body.innerText), cut to `limit` characters."""
        try:
            text = self.driver.execute_script("return document.body ? document.body.innerText : ''")
        except WebDriverException as e:
            return f"<page text unavailable: {e.msg}>"
        text = str(text or "")
        return text if len(text) <= limit else text[:limit] + f"... [{len(text) - limit} more characters]"

    def find(self, css: str) -> WebElement:
        """The first element matching `css` now (no waiting); raises NoSuchElementException."""
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def find_all(self, css: str) -> list[WebElement]:
        """Every element matching `css` now (no waiting); possibly none."""
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    # -- waiting ----------------------------------------------------------------------------------

    def wait_until(self, predicate: Callable[[], T], timeout: float | None = None, *, what: str) -> T:
        """Poll `predicate()` until it returns something truthy and return that. A predicate may
        raise NoSuchElementException, StaleElementReferenceException or NoAlertPresentException while
        the page changes: that counts as "not yet". Raises BrowserWaitTimeout naming `what` after
        `timeout` seconds."""
        timeout = self.default_timeout if timeout is None else timeout
        wait = WebDriverWait(
            self.driver,
            timeout,
            poll_frequency=0.05,
            ignored_exceptions=(
                NoSuchElementException,
                StaleElementReferenceException,
                NoAlertPresentException,
            ),
        )
        try:
            return wait.until(lambda _driver: predicate())
        except TimeoutException:
            raise BrowserWaitTimeout(
                f"timed out after {timeout:g}s waiting for {what}\n"
                f"  url: {self.url}\n"
                f"  page text (first {PAGE_TEXT_LIMIT} characters):\n{_indent(self.page_text())}"
            ) from None

    def wait_for(
        self,
        css: str,
        text: str | None = None,
        timeout: float | None = None,
        *,
        what: str | None = None,
        visible: bool = True,
    ) -> WebElement:
        """Wait for an element matching `css` — displayed unless `visible=False`, and containing
        `text` in its visible text when given — and return the first such element. `what` says in
        words what is awaited (the timeout message shows it beside the selector)."""
        selector = f"an element matching {css!r}" + (f" with text containing {text!r}" if text else "")
        described = f"{what} ({selector})" if what else selector

        def match() -> WebElement | None:
            for element in self.find_all(css):
                if visible and not element.is_displayed():
                    continue
                if text is not None and text not in element.text:
                    continue
                return element
            return None

        found = self.wait_until(match, timeout, what=described)
        assert found is not None
        return found

    # -- acting -----------------------------------------------------------------------------------

    def click(self, css: str, timeout: float | None = None) -> None:
        """Wait until an element matching `css` is displayed and enabled, then click it."""
        element = self.wait_until(
            lambda: next((e for e in self.find_all(css) if e.is_displayed() and e.is_enabled()), None),
            timeout,
            what=f"a displayed, enabled element matching {css!r} to click",
        )
        assert element is not None
        element.click()

    def type(self, css: str, text: str, *, clear: bool = True, timeout: float | None = None) -> None:
        """Wait for a displayed input matching `css`, clear it (unless `clear=False`), type `text`."""
        element = self.wait_for(css, timeout=timeout, what=f"an input to type {text!r} into")
        if clear:
            element.clear()
        element.send_keys(text)

    # -- evidence ---------------------------------------------------------------------------------

    def screenshot(self, name: str) -> Path:
        """Save a PNG of the window as <artifacts>/screenshots/<name>.png, print its path, return it."""
        folder = screenshots_dir()
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{safe_name(name)}.png"
        path.write_bytes(self.driver.get_screenshot_as_png())
        print(f"screenshot: {path}")
        return path

    def console_entries(self) -> list[dict[str, Any]]:
        """Every browser console entry (selenium's dicts: level, message, source, timestamp) since
        the last open()."""
        self._console.extend(self.driver.get_log("browser"))
        return list(self._console)

    def console_errors(self) -> list[str]:
        """The console's SEVERE entries since the last open(): uncaught exceptions, console.error,
        failed requests (a missing favicon.ico too). `assert b.console_errors() == []` checks a
        page logged no JavaScript errors."""
        return [e["message"] for e in self.console_entries() if e.get("level") == "SEVERE"]


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in (text.splitlines() or ["<empty>"]))


# -- pytest -----------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """One headless Chromium for the whole session. Skipped only with CONVEYOR_SKIP_BROWSER=1; a
    missing browser fails the test (with the hint to run hack/ensure-browser), never skips it."""
    if os.environ.get("CONVEYOR_SKIP_BROWSER") == "1":
        pytest.skip("CONVEYOR_SKIP_BROWSER=1: the browser tests are switched off")
    try:
        b = Browser().start()
    except BrowserMissing as e:
        missing = str(e)
    else:
        missing = ""
    if missing:  # failed outside the `except`, so pytest shows this message alone
        pytest.fail(f"headless Chromium is needed for the browser tests: {missing}", pytrace=False)
    try:
        yield b
    finally:
        b.close()


def screenshot_on_failure(item: pytest.Item, report: pytest.TestReport) -> None:
    """Called from pytest_runtest_makereport (tests/conftest.py): when a test that uses the
    `browser` fixture fails, save a screenshot named after the test."""
    if report.when != "call" or not report.failed:
        return
    b = getattr(item, "funcargs", {}).get("browser")
    if not isinstance(b, Browser) or b._driver is None:
        return
    try:
        path = b.screenshot(f"FAILED-{item.nodeid}")
    except WebDriverException as e:
        report.sections.append(("browser", f"no screenshot of the failure: {e.msg}"))
        return
    report.sections.append(("browser", f"screenshot of the failure: {path}"))
