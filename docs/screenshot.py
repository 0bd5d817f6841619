"""docs/demo-page.png: the local page over the shipped models, in headless Chromium (Selenium, the 'browser' extra).

    python docs/screenshot.py                     # writes docs/demo-page.png

The page (``pipelines.demo``) serves the pretrained ``mnist`` and ``fsdd`` models on a free port; the browser asks
for 8 samples of the digit 3 from ``mnist`` at guidance 1 (the MNIST commands' weight), seed 0, as a user would, and the page is saved as it then looks.
"""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from pipelines import demo
from vqvae_prior import VQPriorPipeline

OUT = Path(__file__).resolve().parent / "demo-page.png"


def main() -> None:
    models = {name: VQPriorPipeline.from_pretrained(name, "cpu") for name in ("mnist", "fsdd")}
    server = demo.make_server(models, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or shutil.which("chromium-browser")
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1100,700"):
        options.add_argument(argument)
    browser = webdriver.Chrome(options=options,
                               service=webdriver.ChromeService(executable_path=shutil.which("chromedriver")))
    try:
        browser.get(f"http://127.0.0.1:{server.server_address[1]}/?model=mnist")
        Select(browser.find_element(By.ID, "label")).select_by_visible_text("3")
        for name, value in {"count": "8", "guidance": "1", "seed": "0"}.items():
            box = browser.find_element(By.ID, name)
            box.clear()
            box.send_keys(value)
        browser.find_element(By.ID, "generate").click()
        WebDriverWait(browser, 120).until(lambda b: len(b.find_elements(By.CSS_SELECTOR, "#results img")) == 8)
        browser.save_screenshot(str(OUT))
    finally:
        browser.quit()
        server.shutdown()
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
