"""The web page in Debian's headless Chromium, driven by Playwright, against a real ``audiodenoise serve``.

Skipped when Playwright or /usr/bin/chromium is missing (``apt-get install chromium`` brings it).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import speech_like
from test_server import running_server

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
RATE = 22050

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
if not Path(CHROMIUM).is_file():
    pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)", allow_module_level=True)

AUDIO_DURATION = """() => new Promise((resolve) => {
  const audio = document.querySelector("#after");
  if (audio.duration > 0) resolve(audio.duration);
  else audio.addEventListener("loadedmetadata", () => resolve(audio.duration), { once: true });
})"""

# Distinct colours in the middle of a canvas: a drawn spectrogram, not a blank or flat one.
CANVAS_COLOURS = """(id) => {
  const canvas = document.getElementById(id);
  const pixels = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  const colours = new Set();
  for (let i = 0; i < pixels.length; i += 4 * 97) colours.add(pixels.slice(i, i + 3).join());
  return colours.size;
}"""


@pytest.fixture(scope="module")
def server(tmp_path_factory, identity_checkpoint):
    log = tmp_path_factory.mktemp("browser-server") / "serve.log"
    with running_server(log, "--model", str(identity_checkpoint)) as url:
        yield url


@pytest.fixture(scope="module")
def page(server):
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1200, "height": 900}, accept_downloads=True)
        page.goto(server)
        yield page
        browser.close()


def test_upload_listen_see_and_download(page, tmp_path):
    noisy = speech_like(3.0, RATE) + 0.02 * np.random.default_rng(1).normal(size=3 * RATE).astype(np.float32)
    source = tmp_path / "noisy talk.wav"
    sf.write(source, noisy, RATE, subtype="PCM_16")

    page.set_input_files("#file", str(source))
    page.wait_for_selector("#after-spectrogram[data-drawn]", timeout=60_000)
    assert page.is_hidden("#error")
    assert "real-time factor" in page.inner_text("#status")
    assert page.evaluate(AUDIO_DURATION) == pytest.approx(3.0, abs=0.01)
    for canvas in ("before-spectrogram", "after-spectrogram"):
        assert page.is_visible(f"#{canvas}")
        assert page.evaluate(CANVAS_COLOURS, canvas) > 20

    with page.expect_download() as download:
        page.click("#download")
    assert download.value.suggested_filename == "noisy talk_denoised.wav"
    saved = tmp_path / download.value.suggested_filename
    download.value.save_as(saved)
    info = sf.info(str(saved))
    assert (info.frames, info.samplerate, info.channels) == (3 * RATE, RATE, 1)

    screenshot = tmp_path / "page.png"
    page.screenshot(path=str(screenshot), full_page=True)
    assert screenshot.stat().st_size > 10_000


def test_a_file_that_is_not_audio_shows_the_servers_message(page, tmp_path):
    source = tmp_path / "notes.wav"
    source.write_text("Shopping list: bread, milk.\n" * 20)
    page.set_input_files("#file", str(source))
    page.wait_for_selector("#error:not([hidden])", timeout=30_000)
    message = page.inner_text("#error")
    assert "not a readable audio file" in message and "415" in message
    assert page.is_hidden("#download")
