"""The local page (``pipelines.demo``) over the tiny image and audio fits of conftest.py: over plain HTTP it serves
the form, generates pictures (and WAVs for an audio model), completes uploads, answers every bad request with one
line on the page and keeps serving; in a real browser, headless Chromium driven by Selenium, the pictures decode,
the sounds have a duration and a bad value shows its line.

The browser tests (marked ``browser``, about 10 seconds) skip, saying what is missing, without ``chromium`` and
``chromedriver`` (Debian: ``apt-get install chromium chromium-driver``) or Selenium (``pip install -e .[browser]``).
"""

from __future__ import annotations

import base64
import html
import io
import re
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
import shutil

import pytest
import soundfile as sf
from PIL import Image

from pipelines import demo
from test_reliability import run_cli
from vqvae_prior import VQPriorPipeline

try:  # the browser tests' only dependency beyond the package's; they skip without it
    from selenium import webdriver
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait
except ImportError:
    webdriver = None


def start(models: dict[str, VQPriorPipeline]) -> tuple[str, demo.ThreadingHTTPServer]:
    """A server of the page on a free port, serving in a thread; its URL."""
    server = demo.make_server(models, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}/", server


@pytest.fixture(scope="module")
def served(digit_folder_fit, audio_fit) -> Iterator[str]:
    """The page over the tiny image model ("digits") and the tiny audio model ("tones")."""
    models = {"digits": VQPriorPipeline.from_checkpoints(digit_folder_fit.vqvae, digit_folder_fit.prior, "cpu"),
              "tones": VQPriorPipeline.from_checkpoints(audio_fit["vqvae"], audio_fit["prior"], "cpu")}
    url, server = start(models)
    yield url
    server.shutdown()
    server.server_close()


def post(url: str, fields: dict[str, str], upload: tuple[str, bytes] | None = None) -> tuple[int, str]:
    """The status and page of a submitted form: URL-encoded, or multipart with the file ``upload``."""
    if upload is None:
        body, kind = urllib.parse.urlencode(fields).encode(), "application/x-www-form-urlencoded"
    else:
        boundary = "----demo-test-boundary"
        parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
                 for k, v in fields.items()]
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{upload[0]}"\r\n'
                     "Content-Type: application/octet-stream\r\n\r\n".encode() + upload[1] + b"\r\n")
        body, kind = b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"
    request = urllib.request.Request(url, body, {"Content-Type": kind})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def error_line(page: str) -> str:
    found = re.findall(r'<p class="error" id="error">(.*?)</p>', page)
    assert len(found) == 1 and "\n" not in found[0], page[-500:]
    return html.unescape(found[0])


def pictures(page: str) -> list[Image.Image]:
    found = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    return [Image.open(io.BytesIO(base64.b64decode(b))) for b in found]


def sounds(page: str) -> list[tuple]:
    return [sf.read(io.BytesIO(base64.b64decode(b))) for b in re.findall(r'src="data:audio/wav;base64,([^"]+)"', page)]


def test_the_form_offers_the_models_and_their_classes(served):
    with urllib.request.urlopen(served, timeout=30) as response:
        page = response.read().decode()
    assert '<option value="digits" selected>digits (image)</option>' in page and "tones (audio)" in page
    assert "<option>1</option><option>4</option><option>7</option>" in page
    assert 'name="temperature" id="temperature" value="" placeholder="1"' in page  # blank: the model's default
    with urllib.request.urlopen(served + "?model=tones", timeout=30) as response:
        assert "<option>0</option><option>1</option><option>2</option>" in response.read().decode()


def test_generating_shows_the_pictures_and_the_same_seed_the_same_ones(served):
    fields = {"model": "digits", "label": "4", "count": "3", "temperature": "1", "guidance": "0", "seed": "5"}
    status, page = post(served, fields)
    shown = pictures(page)
    assert status == 200 and len(shown) == 3 and all(p.size == (28, 28) for p in shown) and "<audio" not in page
    assert pictures(post(served, fields)[1])[0].tobytes() == shown[0].tobytes()


def test_an_audio_model_gives_one_player_per_clip_beside_its_spectrogram(served, audio_fit):
    status, page = post(served, {"model": "tones", "label": "2", "count": "2", "seed": "0"})
    pipe = VQPriorPipeline.from_checkpoints(audio_fit["vqvae"], audio_fit["prior"], "cpu")
    heard = sounds(page)
    assert status == 200 and len(pictures(page)) == 2 and len(heard) == 2
    assert all(rate == pipe.modality.config.sample_rate and len(wave) > 0 and abs(wave).max() > 0
               for wave, rate in heard)
    assert pictures(page)[0].size == (24, 32)  # (W, H): time to the right, the 32 frequencies up


def test_completing_an_upload_keeps_its_top_rows(served, digit_folder):
    upload = next(digit_folder.glob("7/*.png"))
    status, page = post(served, {"model": "digits", "label": "7", "count": "2", "seed": "0", "keep_rows": "3",
                                 "action": "complete"}, (upload.name, upload.read_bytes()))
    shown = pictures(page)
    assert status == 200 and len(shown) == 4, page[-300:]  # the upload, the part kept, two completions
    assert shown[0].convert("L").tobytes() == Image.open(upload).convert("L").tobytes()
    assert ">kept: 3 code rows<" in page


def test_completing_a_recording_plays_it_and_its_completions(served, audio_fit):
    upload = next(audio_fit["recordings"].glob("1_*.wav"))
    status, page = post(served, {"model": "tones", "label": "1", "count": "1", "keep_rows": "2",
                                 "action": "complete"}, (upload.name, upload.read_bytes()))
    assert status == 200 and len(pictures(page)) == 3 and len(sounds(page)) == 2, page[-300:]


@pytest.mark.parametrize("fields, upload, named", [
    ({"count": "abc"}, None, "count: expected a whole number, got 'abc'"),
    ({"count": "17"}, None, "count: expected a whole number in 1 .. 16, got 17"),
    ({"count": "0"}, None, "count: expected a whole number in 1 .. 16, got 0"),
    ({"temperature": "nan"}, None, "temperature: expected a number >= 0.001, got nan"),
    ({"guidance": "-1"}, None, "guidance: expected a number >= 0, got -1"),
    ({"seed": "-3"}, None, "seed: expected a whole number in 0 .. 18446744073709551615, got -3"),
    ({"label": "zebra"}, None, "class: 'zebra' is not a class of digits (1, 4, 7)"),
    ({"model": "nope"}, None, "model: 'nope' is not one of digits, tones"),
    ({"action": "complete", "keep_rows": "3"}, None, "file: completing needs an uploaded image"),
    ({"action": "complete", "keep_rows": "3"}, ("notes.txt", b"hello"), "file 'notes.txt': expected an "
                                                                         "image file (.png, .jpg, .jpeg)"),
    ({"action": "complete", "keep_rows": "3"}, ("bad.png", b"not a png"), "file 'bad.png': cannot decode"),
    ({"action": "complete", "keep_rows": "3"}, ("wide.png", b"30x30"), "file 'wide.png': it is 30x30, expected 28x28"),
    ({"action": "complete", "keep_rows": "9"}, None, "keep rows: expected a whole number in 0 .. 7, got 9"),
])
def test_bad_requests_are_answered_in_one_line_on_the_page(served, fields, upload, named):
    if upload is not None and upload[1] == b"30x30":  # a real PNG of another size than the model's
        picture = io.BytesIO()
        Image.new("L", (30, 30)).save(picture, format="PNG")
        upload = (upload[0], picture.getvalue())
    status, page = post(served, {"model": "digits", "label": "1", "count": "2", **fields}, upload)
    assert status == 400 and named in error_line(page) and "<img" not in page


def test_an_upload_over_the_limit_is_refused_unread_and_the_server_goes_on(served, monkeypatch):
    monkeypatch.setattr(demo, "MAX_UPLOAD", 1000)
    status, page = post(served, {"model": "digits", "label": "1", "action": "complete", "keep_rows": "3"},
                        ("big.png", bytes(2000)))
    assert status == 413 and "file: the upload is" in error_line(page) and "at most 1,000" in error_line(page)
    monkeypatch.undo()
    for length in ("-5", "many"):  # read as they are, such lengths would hold the request's thread
        request = urllib.request.Request(served, b"count=1", {"Content-Length": length}, method="POST")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=30)
        assert refused.value.code == 411 and "Content-Length &gt;= 0" in refused.value.read().decode()
    for i in range(20):
        assert post(served, {"model": "digits", "label": "1", "count": f"x{i}"})[0] == 400
    assert post(served, {"model": "digits", "label": "1", "count": "1"})[0] == 200


def test_the_command_refuses_bad_options_before_serving(digit_folder_fit, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(demo, "serve", lambda server: pytest.fail("served despite a bad option"))
    monkeypatch.setenv("VQVAE_PRIOR_PRETRAINED", str(tmp_path / "none"))
    pair = ["--vqvae", str(digit_folder_fit.vqvae), "--prior", str(digit_folder_fit.prior)]
    assert "no models to offer" in run_cli(demo, [], capsys)
    assert "--vqvae and --prior go in pairs" in run_cli(demo, [*pair, "--vqvae", str(digit_folder_fit.vqvae)],
                                                        capsys)
    assert "--port must be in 0 .. 65535, got 70000" in run_cli(demo, [*pair, "--port", "70000"], capsys)
    assert "--host no.such.host.invalid: not an address" in run_cli(demo, [*pair, "--host", "no.such.host.invalid"],
                                                                    capsys)
    assert "--pretrained zebra: no pretrained model is named" in run_cli(demo, ["--pretrained", "zebra"], capsys)
    url, server = start({})
    try:
        port = server.server_address[1]
        assert f"--port {port}: cannot serve on 127.0.0.1:{port}" in run_cli(demo, [*pair, "--port", str(port)],
                                                                             capsys)
    finally:
        server.server_close()


def test_the_command_prints_where_it_serves(digit_folder_fit, capsys, monkeypatch):
    served_on = []
    monkeypatch.setattr(demo, "serve", lambda server: served_on.append(server.server_address) or server.server_close())
    demo.main(demo.get_args_parser().parse_args(["--vqvae", str(digit_folder_fit.vqvae), "--prior",
                                                 str(digit_folder_fit.prior), "--port", "0", "--device", "cpu"]))
    out = capsys.readouterr().out
    assert f"at http://127.0.0.1:{served_on[0][1]}/ (bound to 127.0.0.1: this machine only)" in out


# ---------------------------------------------------------------------------------------------- in Chromium

WAIT_S = 60  # a request's models' work, on a loaded machine


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium under Selenium, or a skip saying what is missing."""
    if webdriver is None:
        pytest.skip("Selenium is not installed (pip install -e .[browser])")
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


@pytest.mark.browser
def test_the_page_shows_decoded_pictures_and_playable_sounds(browser, served, tmp_path):
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


@pytest.mark.browser
def test_a_bad_value_gets_one_line_and_the_server_goes_on(browser, served):
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
