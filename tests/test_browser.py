"""The web page in Debian's headless Chromium, driven by Playwright, against a real ``audiodenoise serve``.

Skipped when Playwright or /usr/bin/chromium is missing (``apt-get install chromium`` brings it); the in-browser
denoising tests also when ONNX Runtime Web is not vendored (``make web``).
"""

from __future__ import annotations

import base64
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
from test_crunet import trained_looking
from test_server import running_server

from audiodenoise.checkpoint import save_checkpoint, set_inference_defaults
from audiodenoise.engine import Engine
from audiodenoise.framestream import FrameStream
from audiodenoise.media import MediaWriter
from audiodenoise.server import WEB_DIR
from audiodenoise.spectral import SpectralConfig, magnitude_to_features, plan_block, stft

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
RATE = 22050
MODEL = "unet-mask"  # the bundled model: gains that vary, unlike the zeroed-head test models
CRUNET = "random-crunet"  # a spectrum network (frame by frame in the browser), random weights, its folder's name
CRUNET_SPECTRAL = SpectralConfig(n_fft=255, hop_length=64, patch_frames=256, patch_hop=256)
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
def crunet_checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("crunet") / CRUNET
    save_checkpoint(folder, trained_looking(), CRUNET_SPECTRAL)
    set_inference_defaults(folder, strength=0.8, atten_lim_db=12)  # both act on the complex mask
    return folder


@pytest.fixture(scope="module")
def server(tmp_path_factory, identity_checkpoint, crunet_checkpoint):
    log = tmp_path_factory.mktemp("browser-server") / "serve.log"
    # The page runs the float32 ONNX export, so the server runs the same for a bit-level comparison.
    models = [str(identity_checkpoint), MODEL, str(crunet_checkpoint)]
    with running_server(log, "--model", *models, "--engine", "onnxruntime") as url:
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


def model_settings(server: str, model: str = MODEL) -> dict:
    with urllib.request.urlopen(server + "v1/models", timeout=60) as response:
        return next(entry for entry in json.load(response)["models"] if entry["name"] == model)


def start_in_page(page, source: Path, model: str = MODEL) -> None:
    """Pick the in-browser mode and ``model``, load ``source``."""
    page.wait_for_function(MODE_CHECKED)
    page.check("#where-browser")
    page.select_option("#model", model)
    page.set_input_files("#file", str(source))


def denoise_in_page(page, source: Path, folder: Path, model: str = MODEL) -> tuple[np.ndarray, int, str, str]:
    """Denoise ``source`` in the page with ``model``; the downloaded result (samples, channels), its rate, the
    status line and the download's name."""
    start_in_page(page, source, model)
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


def servers_result(server: str, source: Path, model: str) -> np.ndarray:
    request = urllib.request.Request(
        f"{server}v1/denoise?model={model}", data=source.read_bytes(), headers={"Content-Type": "audio/wav"}
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        return sf.read(io.BytesIO(response.read()), dtype="float32")[0]


def noisy_file(folder: Path) -> tuple[np.ndarray, Path]:
    """4 s of noisy speech-like sound, and a float WAV of it."""
    rng = np.random.default_rng(6)
    noisy = speech_like(4.0, RATE, seed=3) + 0.03 * rng.normal(size=4 * RATE).astype(np.float32)
    source = folder / "noisy.wav"
    sf.write(source, noisy, RATE, subtype="FLOAT")
    return noisy, source


@needs_runtime
def test_in_browser_result_matches_the_servers_without_uploading(fresh_page, server, tmp_path):
    noisy, source = noisy_file(tmp_path)
    posts = []
    fresh_page.on("request", lambda request: request.method != "GET" and posts.append(request.url))

    audio, rate, status, name = denoise_in_page(fresh_page, source, tmp_path)
    assert posts == []  # the audio never left the page
    assert name == "noisy_denoised.wav" and rate == RATE and audio.shape == (len(noisy), 1)
    assert "in this browser" in status and "32-bit float WAV at 22050 Hz" in status

    expected = servers_result(server, source, MODEL)
    error = audio[:, 0] - expected
    assert np.abs(expected - noisy).max() > 0.05  # the model changed the audio, so the comparison means something
    assert np.abs(error).max() <= 1e-5  # measured 6.4e-6 (5.5e-7 with the earlier 255-sample-window model)
    assert 10 * np.log10(np.sum(error**2) / np.sum(expected**2)) <= -100  # error-to-signal ratio; measured -106 dB


@needs_runtime
def test_in_browser_crunet_result_matches_the_servers(fresh_page, server, tmp_path):
    assert model_settings(server)["stream"] is None  # the U-Net runs by patches
    assert model_settings(server, CRUNET)["stream"]["lookahead_frames"] == 2
    noisy, source = noisy_file(tmp_path)

    audio, rate, status, _ = denoise_in_page(fresh_page, source, tmp_path, CRUNET)
    assert rate == RATE and audio.shape == (len(noisy), 1) and f"with {CRUNET}" in status

    expected = servers_result(server, source, CRUNET)  # at the checkpoint's strength and floor, as the page
    error = audio[:, 0] - expected
    assert np.abs(expected - noisy).max() > 0.05  # the model changed the audio
    assert np.abs(error).max() <= 1e-4  # measured 1.4e-7
    assert 10 * np.log10(np.sum(error**2) / np.sum(expected**2)) <= -80  # error-to-signal ratio; measured -136 dB


class FrameIndexMask(Engine):
    """A stand-in spectrum network: the mask of frame g at bin k is (k % 5) / 5 · exp(i (0.3 g + 0.1 k)); its
    state counts the frames fed, its outputs lag them by the look-ahead."""

    def __init__(self, bins: int, lookahead: int):
        self.bins = bins
        self.config = {"stream": {"lookahead_frames": lookahead, "state_shapes": [[1, 1]]}}

    def __call__(self, parts: torch.Tensor, fed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        count = parts.shape[-1]
        frames = fed.item() + np.arange(count) - self.lookahead_frames
        bins = np.arange(self.bins)[:, None]
        angle = 0.3 * frames + 0.1 * bins
        mask = (bins % 5) / 5 * np.stack([np.cos(angle), np.sin(angle)])
        return torch.from_numpy(mask[None].astype(np.float32)), fed + count


FRAMES = """async ([signal, spectral, lookahead, strength, gainFloor, blocks]) => {
  const dsp = await import(new URL("static/dsp.js", document.baseURI));
  const s = dsp.setup(spectral);
  const results = [];
  for (const blockFrames of blocks) {
    let fed = 0;
    const runFrames = async (parts, count) => {
      const mask = new Float32Array(2 * s.bins * count);
      for (let j = 0; j < count; j++) {
        for (let k = 0; k < s.bins; k++) {
          const angle = 0.3 * (fed + j - lookahead) + 0.1 * k;
          mask[k * count + j] = ((k % 5) / 5) * Math.cos(angle);
          mask[(s.bins + k) * count + j] = ((k % 5) / 5) * Math.sin(angle);
        }
      }
      fed += count;
      return mask;
    };
    const options = { strength, gainFloor, lookahead, runFrames, onProgress: () => {}, blockFrames };
    results.push(Array.from(await dsp.denoiseFrames(Float32Array.from(signal), s, options)));
  }
  return results;
}"""


@needs_runtime
def test_js_frame_streaming_matches_framestream_py_for_any_block_size(fresh_page):
    lookahead, strength, floor = 2, 0.7, 0.3  # some masks fall below the floor
    signal = speech_like(0.5, RATE, seed=2)[:-37]  # not a whole number of hops
    stream = FrameStream(FrameIndexMask(CRUNET_SPECTRAL.n_bins, lookahead), CRUNET_SPECTRAL, 1, strength, floor, 100)
    expected = np.concatenate([stream.feed(signal[:, None]), stream.flush()])[:, 0]
    blocks = [256, 1, 7]
    results = fresh_page.evaluate(
        FRAMES, [signal.tolist(), CRUNET_SPECTRAL.to_dict(), lookahead, strength, floor, blocks]
    )

    assert not np.allclose(expected, signal, atol=0.05)  # the masks changed the signal
    for result in results:
        assert len(result) == len(signal)
        assert np.abs(np.array(result) - expected).max() <= 1e-6  # Python computes in float32; measured 6.0e-8
        assert np.abs(np.array(result) - results[0]).max() <= 1e-12  # any block size; measured 0 (identical)


FULL_RATE = 48000


def band_filtered(signal: np.ndarray, rate: int, low: float, high: float) -> np.ndarray:
    """``signal`` (samples, ...) with only its [low, high) Hz band kept (FFT bins)."""
    spectrum = np.fft.rfft(signal, axis=0)
    frequencies = np.fft.rfftfreq(len(signal), 1 / rate)
    spectrum[(frequencies < low) | (frequencies >= high)] = 0
    return np.fft.irfft(spectrum, len(signal), axis=0)


def error_to_signal_db(error: np.ndarray, reference: np.ndarray) -> float:
    return float(
        10 * np.log10(np.sum(np.square(error, dtype=np.float64)) / np.sum(np.square(reference, dtype=np.float64)))
    )


def band_level_db(signal: np.ndarray, rate: int, low: float, high: float) -> float:
    return float(10 * np.log10(np.mean(band_filtered(signal, rate, low, high) ** 2)))


@needs_runtime
def test_in_browser_denoises_each_channel_and_keeps_a_16khz_files_rate(fresh_page, server, tmp_path):
    rate = 16000
    speech = speech_like(2.0, rate, seed=4)
    hiss = 0.02 * np.random.default_rng(7).normal(size=len(speech)).astype(np.float32)
    source = tmp_path / "stereo.wav"
    sf.write(source, np.stack([speech + hiss, hiss], axis=1), rate, subtype="PCM_16")

    audio, out_rate, status, _ = denoise_in_page(fresh_page, source, tmp_path)
    assert out_rate == rate and audio.shape == (2 * rate, 2)  # to the model's rate and back, as on the server
    assert "32-bit float WAV at 16000 Hz." in status
    left, right = np.sqrt(np.mean(audio**2, axis=0))
    assert left > 3 * right  # channels kept apart: speech on the left, hiss (reduced) on the right
    assert abs(np.corrcoef(audio[:, 0], audio[:, 1])[0, 1]) < 0.5
    expected = servers_result(server, source, MODEL)
    # soxr resamples there and resample.js here (a resampler 0.88 of Nyquist wide instead of 0.91 gives -49 dB)
    assert error_to_signal_db(audio - expected, expected) <= -55  # measured -69.9 dB


@needs_runtime
def test_in_browser_keeps_a_48khz_files_rate_and_top_band_as_the_server_does(fresh_page, server, tmp_path):
    rng = np.random.default_rng(9)
    seconds = 4
    t = np.arange(seconds * FULL_RATE) / FULL_RATE
    pitch = 15000 + 2000 * np.sin(2 * np.pi * 0.5 * t)
    whistle = 0.1 * np.sin(2 * np.pi * np.cumsum(pitch) / FULL_RATE)  # above the model's band
    bursts = 0.01 + 0.05 * (np.sin(2 * np.pi * 1.5 * t) > 0)  # noise that starts and stops: the gain follows
    noisy = speech_like(seconds, FULL_RATE, seed=6) + whistle + bursts * rng.normal(size=len(t))
    source = tmp_path / "wideband.wav"
    sf.write(source, noisy.astype(np.float32), FULL_RATE, subtype="FLOAT")

    audio, rate, status, _ = denoise_in_page(fresh_page, source, tmp_path)
    assert rate == FULL_RATE and audio.shape == (len(noisy), 1)
    assert "32-bit float WAV at 48000 Hz." in status

    expected = servers_result(server, source, MODEL)
    top = band_level_db(expected, rate, 12000, 20000) - band_level_db(noisy, rate, 12000, 20000)
    assert -30 < top < -3  # the server kept the top band, attenuated (-19.3 dB): the comparison means something
    # The resamplers differ (soxr there, resample.js here: -71 dB of error at 7-10 kHz, -57 dB at 10-11 kHz on white
    # noise), and the model carries that into its gains. Measured -79.5 dB, and -90.9 dB below 10 kHz (-75.3 to
    # -84.5 and -75.8 to -100.1 dB over 5 seeds); without the top band -19.6 dB, with its gain 10 % low -39.6 dB,
    # ramped a hop late -56.0 dB, with a resampler of 100 dB instead of 135 -52.9 dB.
    error = audio[:, 0] - expected
    assert error_to_signal_db(error, expected) <= -65
    below = [band_filtered(signal, rate, 0, 10000) for signal in (error, expected)]
    assert error_to_signal_db(*below) <= -65


@pytest.fixture(scope="module")
def identity_at_48khz(browser, server, identity_checkpoint, tmp_path_factory):
    """White noise and a tone at 48 kHz, and what the page returns for it with the identity model."""
    folder = tmp_path_factory.mktemp("identity-48k")
    rng = np.random.default_rng(10)
    t = np.arange(3 * FULL_RATE) / FULL_RATE
    noisy = (0.05 * rng.normal(size=len(t)) + 0.1 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    source = folder / "noise and tone.wav"
    sf.write(source, noisy, FULL_RATE, subtype="FLOAT")
    page = open_page(browser, server)
    try:
        audio, rate, _, _ = denoise_in_page(page, source, folder, identity_checkpoint.name)
    finally:
        page.close()
    return noisy, audio, rate


@needs_runtime
def test_in_browser_identity_model_returns_a_48khz_input(identity_at_48khz):
    noisy, audio, rate = identity_at_48khz
    assert rate == FULL_RATE and audio.shape == (len(noisy), 1)
    assert np.abs(audio[:, 0] - noisy).max() <= 1e-5  # the two bands add up to the input; measured 0 (identical)


@needs_runtime
def test_in_browser_keeps_the_band_above_the_models(identity_at_48khz):
    noisy, audio, rate = identity_at_48khz
    kept = band_level_db(audio[:, 0], rate, 12000, 20000) - band_level_db(noisy, rate, 12000, 20000)
    assert abs(kept) <= 0.5  # measured 0.0 dB


def syncsafe_id3(size: int, version: int = 4) -> bytes:
    """An empty ID3v2 tag of ``size`` bytes after its header (its size in 7 bits a byte)."""
    return b"ID3" + bytes([version, 0, 0]) + bytes((size >> shift) & 0x7F for shift in (21, 14, 7, 0)) + bytes(size)


def media_bytes(samples: np.ndarray, rate: int, container: str) -> bytes:
    """``samples`` encoded by FFmpeg in ``container`` (M4A: AAC, WEBM: Opus), as the server writes them."""
    buffer = io.BytesIO()
    writer = MediaWriter(buffer, rate, 1, container, None)
    writer.write(samples[:, None])
    writer.close()
    return buffer.getvalue()


def files_of_each_format() -> dict[str, tuple[bytes, int]]:
    """Short files of each format the page reads the rate of, and the rate libsndfile (so the server) reads."""
    samples = (0.1 * np.random.default_rng(11).normal(size=8000)).astype(np.float32)
    files = {}
    for name, rate, container, subtype in [
        ("pcm.wav", 44100, "WAV", "PCM_16"),
        ("extensible.wav", 96000, "WAVEX", "FLOAT"),
        ("rf64.wav", 48000, "RF64", "PCM_24"),
        ("lossless.flac", 32000, "FLAC", "PCM_16"),
        ("vorbis.ogg", 24000, "OGG", "VORBIS"),
        ("opus.ogg", 16000, "OGG", "OPUS"),
        ("mpeg1.mp3", 44100, "MP3", None),
        ("mpeg2.mp3", 22050, "MP3", None),
        ("mpeg25.mp3", 8000, "MP3", None),
    ]:
        buffer = io.BytesIO()
        sf.write(buffer, samples, rate, format=container, subtype=subtype)
        files[name] = buffer.getvalue()
    files["tagged.mp3"] = syncsafe_id3(300) + files["mpeg1.mp3"]
    files["tagged.flac"] = syncsafe_id3(50, version=3) + files["lossless.flac"]
    return {name: (data, sf.info(io.BytesIO(data)).samplerate) for name, data in files.items()}


DECODE_AT_ITS_RATE = """async (files) => {
  const { decodeAtItsRate } = await import(new URL("static/inbrowser.js", document.baseURI));
  const decoded = {};
  for (const [name, encoded] of Object.entries(files)) {
    const bytes = Uint8Array.from(atob(encoded), (char) => char.charCodeAt(0));
    const { audio, rateRead } = await decodeAtItsRate(new Blob([bytes]));
    decoded[name] = [rateRead, audio.sampleRate, audio.length];
  }
  return decoded;
}"""


def test_js_decodes_each_format_at_the_rate_its_header_states(fresh_page):
    files = files_of_each_format()
    samples = (0.1 * np.random.default_rng(12).normal(size=4410)).astype(np.float32)
    unread = {"aac.m4a": media_bytes(samples, 44100, "M4A"), "opus.webm": media_bytes(samples, 24000, "WEBM")}
    encoded = {name: base64.b64encode(data).decode() for name, (data, _) in files.items()}
    encoded |= {name: base64.b64encode(data).decode() for name, data in unread.items()}
    decoded = fresh_page.evaluate(DECODE_AT_ITS_RATE, encoded)

    for name, (data, rate) in files.items():
        assert decoded[name][:2] == [True, rate], name
        if name.endswith((".wav", ".flac")):
            assert decoded[name][2] == sf.info(io.BytesIO(data)).frames, name  # decoded as is: not resampled
    for name in unread:
        assert decoded[name][:2] == [False, 48000], name  # formats whose rate is not read: the browser resamples


@needs_runtime
def test_in_browser_a_file_whose_rate_is_not_read_comes_back_at_48khz_and_says_so(fresh_page, tmp_path):
    source = tmp_path / "voice.m4a"
    source.write_bytes(media_bytes(speech_like(1.0, 44100), 44100, "M4A"))
    audio, rate, status, name = denoise_in_page(fresh_page, source, tmp_path)
    assert name == "voice_denoised.wav" and rate == 48000 and len(audio) == pytest.approx(48000, abs=2048)
    assert "32-bit float WAV at 48000 Hz (this file's own rate could not be read" in status


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
