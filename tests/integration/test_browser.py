"""A real browser on the launcher's URL: JupyterLab opens clean and offline, and a notebook runs.

Debian's chromium, headless, driven by selenium through Debian's /usr/bin/chromedriver (installed by
scripts/install-test-deps.sh; nothing is downloaded). The browser's network log shows every request the
page made: only the local Jupyter may be asked, and never for news or updates.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.parse

import pytest
from python_on_whales import docker

from tests.conftest import ROOT

pytestmark = [pytest.mark.docker]
DEFAULT_CPU_CELL = "tf2.21.0-py3.11-cpu"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
READY = re.compile(r"Jupyter is ready: (http://localhost:(\d+)/lab\?token=\w+)")
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,1000",
)
# What JupyterLab asks its server for when the news prompt or the update check is on.
PHONE_HOME = ("/lab/api/news", "/lab/api/update")
# The news prompt, when on, came as a toast within a few seconds of the Launcher: the page is watched for
# at least this long after it. An absence cannot be waited for, only watched; the notebook's own steps
# (kernel start, the cell) fill most of it, so it adds a second or two at most.
NOTIFICATION_WINDOW = 5.0


@pytest.fixture
def jupyter_url(cell_image, tmp_path):
    """The launcher's printed URL for the default CPU image, on an empty folder."""
    name = f"kerastack-browser-{os.getpid()}"
    folder = tmp_path / "work"
    folder.mkdir()
    os.chmod(folder, 0o777)  # the container's keras user writes the new notebook here
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "launch"), "--image", cell_image, "--pull", "never", "--detach", "--dir", str(folder), "--name", name],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=300,
    )
    try:
        assert result.returncode == 0, result.stderr
        ready = READY.search(result.stdout)
        assert ready, result.stdout + result.stderr
        yield ready.group(1)
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)
        assert not docker.container.exists(name)


@pytest.fixture
def browser(tmp_path):
    for program in (CHROMIUM, CHROMEDRIVER):
        if not shutil.which(program):
            pytest.skip(f"{program} is missing: run scripts/install-test-deps.sh as root (Debian's chromium and chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(120)
    try:
        yield driver
    finally:
        driver.quit()


def requested_urls(driver) -> list[str]:
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message.get("method") == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def visible(driver, css: str) -> list:
    from selenium.common.exceptions import StaleElementReferenceException

    shown = []
    for element in driver.find_elements("css selector", css):
        try:  # JupyterLab re-renders while it starts: an element found a moment ago may be gone
            if element.is_displayed():
                shown.append(element)
        except StaleElementReferenceException:
            continue
    return shown


def texts(elements: list) -> list[str]:
    from selenium.common.exceptions import StaleElementReferenceException

    found = []
    for element in elements:
        try:
            found.append(element.text)
        except StaleElementReferenceException:
            found.append("(gone)")
    return found


def nothing_covers_the_page(driver) -> None:
    """No dialog and no notification: JupyterLab asks nothing of someone who just opened it. The news
    prompt, when on, is a toast that stays until answered, so a check on every poll sees it whenever it comes."""
    dialogs = visible(driver, ".jp-Dialog")
    assert not dialogs, f"a dialog covers JupyterLab: {texts(dialogs)}"
    toasts = visible(driver, ".Toastify__toast")
    assert not toasts, f"a notification covers JupyterLab: {texts(toasts)}"


def wait_for(driver, css: str, timeout: float = 90, text: str | None = None):
    """The first visible `css` element (holding `text`), polled; every poll also checks that nothing covers the page."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        nothing_covers_the_page(driver)
        for element in visible(driver, css):
            if text is None or text in texts([element])[0]:
                return element
        time.sleep(0.2)
    page = driver.find_element("tag name", "body").text[:2000]
    raise AssertionError(f"no visible {css}{f' with {text!r}' if text else ''} after {timeout:.0f} s; page text:\n{page}")


def click(driver, css: str, timeout: float = 90) -> None:
    """Click `css` once it is there; an element JupyterLab re-rendered meanwhile is looked up again."""
    from selenium.common.exceptions import ElementClickInterceptedException, StaleElementReferenceException

    deadline = time.monotonic() + timeout
    while True:
        try:
            wait_for(driver, css, max(deadline - time.monotonic(), 1)).click()
            return
        except (StaleElementReferenceException, ElementClickInterceptedException):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def watch_until(driver, until: float) -> None:
    """Keep checking that nothing covers the page until the monotonic time `until` (no wait if it is past)."""
    while time.monotonic() < until:
        nothing_covers_the_page(driver)
        time.sleep(0.2)
    nothing_covers_the_page(driver)


# The kernel status in the status bar follows the notebook's session: "Initializing", "Connecting", then
# "Idle" only once a kernel is connected and waiting. (The execution indicator in the notebook's toolbar
# starts out "idle" before there is any kernel, and a cell run then is silently dropped.)
KERNEL_STATUS = ".jp-StatusBar-TextItem"
KERNEL_IDLE = "Python 3 (ipykernel) | Idle"


@pytest.mark.parametrize("cell_id", [DEFAULT_CPU_CELL], scope="session")
def test_jupyterlab_opens_clean_offline_and_runs_a_notebook(jupyter_url, browser):
    from selenium.webdriver.common.keys import Keys

    browser.get(jupyter_url)
    # Every wait below fails as soon as a dialog or a notification shows, from the Launcher's first
    # frame until the cell's output: the whole time a user would be looking at the page.
    wait_for(browser, ".jp-Launcher")
    launcher_shown = time.monotonic()
    click(browser, '.jp-LauncherCard[data-category="Notebook"]')
    # A cell run before the kernel is connected can be lost: type and run only once it is idle.
    wait_for(browser, KERNEL_STATUS, text=KERNEL_IDLE, timeout=120)
    editor = wait_for(browser, ".jp-Notebook .jp-Cell .cm-content")  # looked up now: the notebook may have re-rendered it meanwhile
    editor.click()
    editor.send_keys("print(6 * 7, 'from keras')")
    editor.send_keys(Keys.SHIFT, Keys.ENTER)
    wait_for(browser, ".jp-OutputArea-output", text="42 from keras", timeout=120)
    wait_for(browser, KERNEL_STATUS, text=KERNEL_IDLE)  # the kernel is done: JupyterLab has finished all it does on its own
    watch_until(browser, launcher_shown + NOTIFICATION_WINDOW)  # a toast slower than all that still counts

    local = {"localhost", "127.0.0.1"}
    urls = requested_urls(browser)
    assert urls, "the browser's network log is empty"
    remote = [u for u in urls if urllib.parse.urlsplit(u).scheme in ("http", "https", "ws", "wss") and urllib.parse.urlsplit(u).hostname not in local]
    assert not remote, f"JupyterLab reached beyond this machine: {remote}"
    phoned = [u for u in urls if any(path in u for path in PHONE_HOME)]
    assert not phoned, f"JupyterLab asked for news or updates: {phoned}"
