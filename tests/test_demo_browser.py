"""The local page in a real browser: headless Chromium, driven by Selenium, generates from the tiny image and audio
models of test_demo.py and shows decoded pictures and playable sounds; a bad value gets its one line on the page.

Skips, saying what is missing, without ``chromium`` and ``chromedriver`` (Debian: ``apt-get install chromium
chromium-driver``) or Selenium (``pip install -e .[browser]``). About 10 seconds.
"""

from __future__ import annotations

import shutil

import pytest
from PIL import Image

from test_audio_pipeline import fitted, recordings  # noqa: F401: fixtures of the served page
from test_demo import post, served  # noqa: F401: the page over the tiny models

pytestmark = pytest.mark.browser
webdriver = pytest.importorskip("selenium.webdriver", reason="Selenium is not installed (pip install -e .[browser])")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

WAIT_S = 60  # a request's models' work, on a loaded machine


@pytest.fixture(scope="module")
def browser():
    chromium, driver = shutil.which("chromium") or shutil.which("chromium-browser"), shutil.which("chromedriver")
    if chromium is None or driver is None:
        pytest.skip("chromium and chromedriver are not installed (Debian: apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1100,900",
                     "--autoplay-policy=no-user-gesture-required"):
        options.add_argument(argument)
    browser = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=driver))
    yield browser
    browser.quit()


def fill(browser, **fields: str) -> None:
    for name, value in fields.items():
        box = browser.find_element(By.ID, name)
        box.clear()
        box.send_keys(value)


def test_the_page_shows_decoded_pictures_and_playable_sounds(browser, served, tmp_path):  # noqa: F811
    browser.get(served)
    Select(browser.find_element(By.ID, "label")).select_by_visible_text("4")
    fill(browser, count="3", seed="0")
    browser.find_element(By.ID, "generate").click()
    WebDriverWait(browser, WAIT_S).until(lambda b: b.find_elements(By.CSS_SELECTOR, "#results img"))
    widths = browser.execute_script(
        "return [...document.querySelectorAll('#results img')].map(i => i.complete ? i.naturalWidth : 0)")
    assert widths == [28, 28, 28]
    assert browser.find_element(By.ID, "count").get_attribute("value") == "3"  # the form keeps what was asked

    browser.get(served + "?model=tones")
    fill(browser, count="2", seed="0")
    browser.find_element(By.ID, "generate").click()
    WebDriverWait(browser, WAIT_S).until(lambda b: len(b.find_elements(By.CSS_SELECTOR, "#results audio")) == 2)
    durations = WebDriverWait(browser, WAIT_S).until(lambda b: b.execute_script(
        "const a = [...document.querySelectorAll('#results audio')];"
        "return a.every(x => x.readyState >= 1 && x.duration > 0) && a.map(x => x.duration)"))
    assert all(0 < d < 1 for d in durations), durations  # the tiny clips: 368 samples at 8 kHz, 46 ms
    assert browser.execute_script("return [...document.querySelectorAll('#results img')].every(i => i.naturalWidth)")
    browser.save_screenshot(str(tmp_path / "page.png"))
    assert Image.open(tmp_path / "page.png").size[0] > 0


def test_a_bad_value_gets_one_line_and_the_server_goes_on(browser, served):  # noqa: F811
    browser.get(served)
    fill(browser, count="abc")
    browser.find_element(By.ID, "generate").click()
    line = WebDriverWait(browser, WAIT_S).until(lambda b: b.find_elements(By.ID, "error"))[0].text
    assert line == "count: expected a whole number, got 'abc'"
    assert not browser.find_elements(By.CSS_SELECTOR, "#results img")
    for i in range(20):
        assert post(served, {"model": "digits", "label": "1", "count": str(100 + i)})[0] == 400
    browser.get(served)
    assert browser.find_element(By.ID, "generate").is_displayed()
    assert post(served, {"model": "digits", "label": "1", "count": "1"})[0] == 200
