"""The web page in Debian's headless Chromium, driven by Playwright, against a real ``audiodenoise serve``.

Skipped when Playwright or /usr/bin/chromium is missing (``apt-get install chromium`` brings it); the in-browser
denoising tests also when ONNX Runtime Web is not vendored (``make web``).
"""

from __future__ import annotations

import io
import json
import re
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import speech_like
from test_server import running_server

from audiodenoise.server import WEB_DIR
from audiodenoise.spectral import SpectralConfig, magnitude_to_features, plan_block, stft

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
RATE = 22050
MODEL = "unet-mask"  # the bundled model: gains that vary, unlike the zeroed-head test models
needs_runtime = pytest.mark.skipif(
    not (WEB_DIR / "vendor" / ".stamp").is_file(), reason="ONNX Runtime Web is not vendored (make web)"
)

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


# The page's note once it knows whether this browser can denoise.
MODE_CHECKED = "() => !document.getElementById('browser-note').textContent.startsWith('Checking')"


@pytest.fixture(scope="module")
def server(tmp_path_factory, identity_checkpoint):
    log = tmp_path_factory.mktemp("browser-server") / "serve.log"
    # The page runs the float32 ONNX export, so the server runs the same for a bit-level comparison.
    with running_server(log, "--model", str(identity_checkpoint), MODEL, "--engine", "onnxruntime") as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def open_page(browser, url: str, route_away: str | None = None):
    """A page of its own; requests matching ``route_away`` get a 404, as if those files did not exist."""
    page = browser.new_page(viewport={"width": 1200, "height": 900}, accept_downloads=True)
    if route_away:
        page.route(route_away, lambda route: route.fulfill(status=404, body="Not Found"))
    page.goto(url)
    return page


@pytest.fixture(scope="module")
def page(browser, server):
    page = open_page(browser, server)
    yield page
    page.close()


@pytest.fixture
def fresh_page(browser, server):
    page = open_page(browser, server)
    yield page
    page.close()


def model_settings(server: str) -> dict:
    with urllib.request.urlopen(server + "v1/models", timeout=60) as response:
        return next(entry for entry in json.load(response)["models"] if entry["name"] == MODEL)


def start_in_page(page, source: Path) -> None:
    """Pick the in-browser mode and the bundled model, load ``source``."""
    page.wait_for_function(MODE_CHECKED)
    page.check("#where-browser")
    page.select_option("#model", MODEL)
    page.set_input_files("#file", str(source))


def denoise_in_page(page, source: Path, folder: Path) -> tuple[np.ndarray, int, str, str]:
    """Denoise ``source`` in the page; the downloaded result (samples, channels), its rate, the status line and
    the download's name."""
    start_in_page(page, source)
    page.wait_for_selector("#after-spectrogram[data-drawn], #error:not([hidden])", timeout=180_000)
    assert page.is_hidden("#error"), page.inner_text("#error")
    with page.expect_download() as download:
        page.click("#download")
    saved = folder / f"downloaded-{download.value.suggested_filename}"
    download.value.save_as(saved)
    audio, rate = sf.read(saved, dtype="float32", always_2d=True)
    return audio, rate, page.inner_text("#status"), download.value.suggested_filename


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


# --- denoising in the browser ------------------------------------------------------------------

DSP = """async ([signal, spectral, blocks]) => {
  const dsp = await import(new URL("static/dsp.js", document.baseURI));
  const s = dsp.setup(spectral);
  const spec = dsp.stft(Float64Array.from(signal), s);
  const { signal: folded, envelope } = dsp.istft(spec, s);
  return {
    frames: spec.frames,
    features: Array.from(dsp.features(spec, s)),
    restored: Array.from(folded, (value, i) => value / envelope[i]),
    plans: blocks.map(([first, last]) => dsp.planBlock(first, last, s)),
  };
}"""


@needs_runtime
def test_js_stft_features_inverse_and_block_plans_match_spectral_py(fresh_page, server):
    settings = model_settings(server)["spectral"]
    config = SpectralConfig.from_dict(settings)
    rng = np.random.default_rng(5)
    signal = (rng.normal(size=RATE) * np.geomspace(1e-3, 1, RATE)).astype(np.float32)  # 60 dB of levels
    blocks = [(0, 4096), (4096, 8192), (128, 192)]
    js = fresh_page.evaluate(DSP, [signal.tolist(), settings, blocks])

    expected = magnitude_to_features(stft(torch.from_numpy(signal), config).abs(), config).T.numpy()
    features = np.array(js["features"]).reshape(js["frames"], config.n_bins)
    assert features.shape == expected.shape
    assert np.abs(features - expected).max() <= 2e-5  # measured 3.8e-6 (3.7e-6 to 6.6e-6 over 5 seeds)

    restored = np.array(js["restored"])[config.n_fft : -config.n_fft]  # where frames overlap fully
    assert np.abs(restored - signal[config.n_fft : len(restored) + config.n_fft]).max() <= 1e-10  # measured 1.8e-15

    for (first, last), plan in zip(blocks, js["plans"]):
        reference = plan_block(first, last, config)
        assert (plan["inputStart"], plan["inputStop"]) == reference.input_span(config)
        assert (plan["outputStart"], plan["outputStop"]) == reference.output_span(config)


@needs_runtime
def test_in_browser_result_matches_the_servers_without_uploading(fresh_page, server, tmp_path):
    rng = np.random.default_rng(6)
    noisy = speech_like(4.0, RATE, seed=3) + 0.03 * rng.normal(size=4 * RATE).astype(np.float32)
    source = tmp_path / "noisy.wav"
    sf.write(source, noisy, RATE, subtype="FLOAT")
    posts = []
    fresh_page.on("request", lambda request: request.method != "GET" and posts.append(request.url))

    audio, rate, status, name = denoise_in_page(fresh_page, source, tmp_path)
    assert posts == []  # the audio never left the page
    assert name == "noisy_denoised.wav" and rate == RATE and audio.shape == (len(noisy), 1)
    assert "in this browser" in status and "32-bit float WAV at 22050 Hz" in status

    request = urllib.request.Request(
        f"{server}v1/denoise?model={MODEL}", data=source.read_bytes(), headers={"Content-Type": "audio/wav"}
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        expected = sf.read(io.BytesIO(response.read()), dtype="float32")[0]
    error = audio[:, 0] - expected
    assert np.abs(expected - noisy).max() > 0.05  # the model changed the audio, so the comparison means something
    assert np.abs(error).max() <= 1e-5  # measured 5.5e-7
    assert 10 * np.log10(np.sum(error**2) / np.sum(expected**2)) <= -100  # error-to-signal ratio; measured -128 dB


@needs_runtime
def test_in_browser_denoises_each_channel_at_the_models_rate(fresh_page, tmp_path):
    rate = 16000
    speech = speech_like(2.0, rate, seed=4)
    hiss = 0.02 * np.random.default_rng(7).normal(size=len(speech)).astype(np.float32)
    source = tmp_path / "stereo.wav"
    sf.write(source, np.stack([speech + hiss, hiss], axis=1), rate, subtype="PCM_16")

    audio, out_rate, status, _ = denoise_in_page(fresh_page, source, tmp_path)
    assert out_rate == RATE and audio.shape == (2 * RATE, 2)  # resampled by the browser to the model's rate
    assert "at 22050 Hz" in status
    left, right = np.sqrt(np.mean(audio**2, axis=0))
    assert left > 3 * right  # channels kept apart: speech on the left, hiss (reduced) on the right
    assert abs(np.corrcoef(audio[:, 0], audio[:, 1])[0, 1]) < 0.5


# Records every status line the page shows, in window.statuses.
RECORD_STATUS = """() => {
  const status = document.getElementById("status");
  window.statuses = [];
  new MutationObserver(() => window.statuses.push(status.textContent)).observe(status, { childList: true });
}"""
PROGRESS = re.compile(r"^Denoising long\.wav in this browser… (\d+) %$")

# Over `ms` milliseconds: the longest gap between ticks of a 10 ms timer, and the status line at the end.
TIMER_GAPS = """(ms) => new Promise((resolve) => {
  let last = performance.now();
  let longest = 0;
  const timer = setInterval(() => {
    longest = Math.max(longest, performance.now() - last);
    last = performance.now();
  }, 10);
  setTimeout(() => {
    clearInterval(timer);
    resolve({ longest, status: document.getElementById("status").textContent });
  }, ms);
})"""


@needs_runtime
def test_in_browser_denoising_reports_progress_and_leaves_the_page_responsive(fresh_page, tmp_path):
    noisy = speech_like(20.0, RATE, seed=5) + 0.03 * np.random.default_rng(8).normal(size=20 * RATE).astype(np.float32)
    source = tmp_path / "long.wav"
    sf.write(source, noisy, RATE, subtype="FLOAT")
    fresh_page.evaluate(RECORD_STATUS)
    start_in_page(fresh_page, source)
    fresh_page.wait_for_function("() => / %$/.test(document.getElementById('status').textContent)", timeout=120_000)

    during = fresh_page.evaluate(TIMER_GAPS, 2000)
    assert PROGRESS.match(during["status"]), during  # the window ended while the worker was still denoising
    assert during["longest"] < 500, during  # the main thread kept running its timers (measured 18 ms)

    fresh_page.wait_for_selector("#after-spectrogram[data-drawn], #error:not([hidden])", timeout=180_000)
    assert fresh_page.is_hidden("#error"), fresh_page.inner_text("#error")
    percents = [int(match[1]) for match in map(PROGRESS.match, fresh_page.evaluate("window.statuses")) if match]
    assert percents == sorted(percents) and len(set(percents)) >= 5 and percents[-1] == 100, percents
    assert "Done in" in fresh_page.inner_text("#status")


@needs_runtime
@pytest.mark.parametrize(
    ("route_away", "content", "message"),
    [
        (None, b"Shopping list: bread, milk.\n" * 20, "this browser cannot decode the file"),  # on the main thread
        ("**/onnx", None, "the server did not send the model (HTTP 404)"),  # in the worker
    ],
)
def test_in_browser_error_is_one_line(browser, server, tmp_path, route_away, content, message):
    source = tmp_path / "input.wav"
    if content:
        source.write_bytes(content)
    else:
        sf.write(source, speech_like(1.0, RATE), RATE)
    page = open_page(browser, server, route_away)
    try:
        start_in_page(page, source)
        page.wait_for_selector("#error:not([hidden])", timeout=60_000)
        assert page.inner_text("#error") == f"In-browser denoising failed: {message}."
        assert page.is_hidden("#download")
    finally:
        page.close()


def test_without_the_runtime_files_the_toggle_is_off_and_the_server_still_denoises(browser, server, tmp_path):
    page = open_page(browser, server, route_away="**/static/vendor/**")
    try:
        page.wait_for_function(MODE_CHECKED)
        assert page.is_disabled("#where-browser") and page.is_checked("#where-server")
        assert page.inner_text("#browser-note") == (
            "In-browser denoising is unavailable: ONNX Runtime Web was not built into this installation (run make web)."
        )
        source = tmp_path / "tone.wav"
        sf.write(source, speech_like(1.0, RATE), RATE)
        page.set_input_files("#file", str(source))
        page.wait_for_selector("#after-spectrogram[data-drawn]", timeout=60_000)
        assert "real-time factor" in page.inner_text("#status") and page.is_hidden("#error")
    finally:
        page.close()
