"""``audiodenoise serve`` and ``denoise --server``: the API in-process (TestClient), then a real server process.

Models are the identity and halving checkpoints from conftest; audio is generated in code.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import denoise_cli
from fastapi.testclient import TestClient

from audiodenoise.cli import main
from audiodenoise.engine import CONFIG_KEY, TorchEngine
from audiodenoise.server import WEB_DIR, Limits, create_app, load_models
from audiodenoise.spectral import SpectralConfig

RATE = 22050


def tone(seconds: float = 0.5, sample_rate: int = RATE, channels: int = 1) -> np.ndarray:
    t = np.arange(int(round(seconds * sample_rate))) / sample_rate
    return np.stack([0.3 * np.sin(2 * np.pi * (300 + 120 * c) * t) for c in range(channels)], axis=1).astype(np.float32)


def encode(signal: np.ndarray, sample_rate: int = RATE, format: str = "WAV", subtype: str = "PCM_16") -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, signal, sample_rate, format=format, subtype=subtype)
    return buffer.getvalue()


def decode(data: bytes) -> tuple[np.ndarray, sf._SoundFileInfo]:
    return sf.read(io.BytesIO(data), dtype="float32", always_2d=True)[0], sf.info(io.BytesIO(data))


@pytest.fixture(scope="module")
def models(identity_checkpoint, halving_checkpoint):
    return load_models([str(identity_checkpoint), str(halving_checkpoint)], threads=1)


@pytest.fixture(scope="module")
def client(models):
    with local_client(create_app(models, Limits(max_upload_mb=1, max_seconds=5))) as client:
        yield client


def local_client(app, **options) -> TestClient:
    """A client whose requests name this machine as their Host, as a browser on it does."""
    return TestClient(app, base_url="http://127.0.0.1:8000", **options)


def post_raw(client, data: bytes, content_type: str = "audio/wav", **params):
    return client.post("/v1/denoise", params=params, content=data, headers={"Content-Type": content_type})


def assert_error(response, status: int, *words: str) -> None:
    assert response.status_code == status, response.text
    message = response.json()["error"]
    assert isinstance(message, str) and "\n" not in message
    for word in words:
        assert word in message


# --- the API in-process ------------------------------------------------------------------------


def test_multipart_wav_comes_back_identical_with_timing_headers(client):
    signal = tone(1.0, channels=2)
    response = client.post("/v1/denoise", files={"file": ("take one.wav", encode(signal), "audio/wav")})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "audio/wav"
    assert "take%20one_denoised.wav" in response.headers["content-disposition"]
    assert float(response.headers["x-processing-time"]) > 0
    assert float(response.headers["x-real-time-factor"]) > 0
    output, info = decode(response.content)
    assert (info.format, info.subtype, info.samplerate, info.channels) == ("WAV", "PCM_16", RATE, 2)
    assert output.shape == signal.shape
    np.testing.assert_allclose(output, signal, atol=2 / 32768)  # identity model: the input, to the last bit


@pytest.mark.parametrize(
    ("audio_format", "subtype", "rate", "channels"),
    [("FLAC", "PCM_24", 16000, 2), ("WAV", "FLOAT", 48000, 1), ("OGG", "VORBIS", RATE, 1), ("MP3", None, 44100, 1)],
)
def test_raw_body_keeps_container_length_rate_and_channels(client, audio_format, subtype, rate, channels):
    signal = tone(0.7, rate, channels)
    data = encode(signal, rate, audio_format, subtype or "MPEG_LAYER_III")
    response = post_raw(client, data, "application/octet-stream" if audio_format == "MP3" else "audio/x-anything")
    assert response.status_code == 200, response.text
    output, info = decode(response.content)
    original = sf.info(io.BytesIO(data))
    assert (info.format, info.subtype, info.samplerate, info.channels, info.frames) == (
        original.format,
        original.subtype,
        rate,
        channels,
        original.frames,
    )


def test_strength_and_model_by_name(client, models):
    identity, halving = models
    signal = tone(1.0)
    listing = client.get("/v1/models").json()
    assert listing["default"] == identity
    assert [m["name"] for m in listing["models"]] == [identity, halving]

    def level(**params) -> float:
        response = post_raw(client, encode(signal, subtype="FLOAT"), **params)
        assert response.status_code == 200, response.text
        assert response.headers["x-model"] == (halving if params.get("model") == halving else identity)
        return float(np.sqrt(np.mean(decode(response.content)[0][4000:-4000] ** 2)))

    loud = level()
    assert level(model=halving) == pytest.approx(loud / 2, rel=0.02)  # -6 dB
    assert level(model=halving, strength=0.5) == pytest.approx(loud * 0.75, rel=0.02)
    assert level(model=halving, strength=0) == pytest.approx(loud, rel=0.01)
    assert level(model="default") == pytest.approx(loud, rel=0.01)


@pytest.mark.parametrize("name", ["halving_checkpoint", "../identity-model0", "/etc/passwd"])
def test_model_can_only_name_the_servers_models(client, request, name):
    if name == "halving_checkpoint":
        name = str(request.getfixturevalue(name))  # the folder the server loaded, given as a path
    assert_error(post_raw(client, encode(tone()), model=name), 400, "unknown model", "this server offers")


def _nan_wav() -> bytes:
    signal = tone()
    signal[100, 0] = np.nan
    return encode(signal, subtype="FLOAT")


@pytest.mark.parametrize(
    ("data", "content_type", "status", "words"),
    [
        (b"Hello, this is not audio.\n" * 40, "audio/wav", 415, ["not a readable audio file"]),
        (encode(tone())[:30], "audio/wav", 415, ["not a readable audio file"]),
        (encode(tone()), "text/plain", 415, ["unsupported Content-Type", "multipart"]),
        (b"", "audio/wav", 422, ["empty upload"]),
        (_nan_wav(), "audio/wav", 422, ["NaN or Inf"]),
        (encode(tone(0.5, 2000), 2000), "audio/wav", 422, ["unsupported sample rate 2000 Hz"]),
        (encode(tone(6.0)), "audio/wav", 413, ["6.0 s of audio", "limit of 5 s"]),
        (bytes(2**20 + 1), "audio/wav", 413, ["upload over", "1 MB"]),
    ],
    ids=["text", "truncated", "text-content-type", "empty", "nan", "rate-2000", "too-long", "too-large"],
)
def test_bad_uploads_get_a_clear_json_error(client, data, content_type, status, words):
    assert_error(post_raw(client, data, content_type), status, *words)


def test_bad_parameters_and_forms_get_a_clear_json_error(client):
    assert_error(post_raw(client, encode(tone()), strength=1.5), 422, "strength", "less than or equal to 1")
    response = client.post("/v1/denoise", files={"audio": ("a.wav", encode(tone()), "audio/wav")})
    assert_error(response, 422, "no field 'file'")
    response = client.post("/v1/denoise", content=b"--x\r\nbroken", headers={"Content-Type": "multipart/form-data"})
    assert_error(response, 422, "malformed multipart body", "boundary")
    assert_error(client.get("/v1/nothing"), 404, "Not Found")


def test_uploads_are_never_written_to_disk(models, monkeypatch):
    """A 3 MiB multipart upload (past python-multipart's 1 MiB spill size) with every temporary file refused."""

    def refuse(*args, **kwargs):
        raise AssertionError("an upload was written to a temporary file")

    for name in ("TemporaryFile", "NamedTemporaryFile", "SpooledTemporaryFile", "mkstemp"):
        monkeypatch.setattr(tempfile, name, refuse)
    signal = tone(1.0, 384000)
    data = encode(signal, 384000, subtype="DOUBLE")
    assert len(data) > 2.9 * 2**20
    with local_client(create_app(models, Limits(max_upload_mb=4, max_seconds=60))) as big:
        response = big.post("/v1/denoise", files={"file": ("long.wav", data, "audio/wav")})
    assert response.status_code == 200, response.text
    assert decode(response.content)[0].shape == signal.shape


class BlockingDenoiser:
    """Holds its worker until released, so the queue can be filled on purpose."""

    name, sample_rate, strength = "blocking", RATE, 1.0

    def __init__(self):
        self.started, self.release = threading.Event(), threading.Event()

    def denoise_blocks(self, blocks, sample_rate, channels):
        self.started.set()
        assert self.release.wait(30)
        yield from blocks


class BrokenDenoiser:
    name, sample_rate, strength = "broken", RATE, 1.0

    def denoise_blocks(self, blocks, sample_rate, channels):
        raise RuntimeError("a bug")


def test_an_unexpected_failure_is_a_json_500_without_details():
    with local_client(create_app({"broken": BrokenDenoiser()}), raise_server_exceptions=False) as client:
        assert_error(post_raw(client, encode(tone())), 500, "internal server error")


def test_full_queue_gets_503_with_retry_after():
    blocking = BlockingDenoiser()
    app = create_app({"blocking": blocking}, Limits(workers=1, queue=0))
    with local_client(app) as client:
        first = {}
        worker = threading.Thread(target=lambda: first.update(response=post_raw(client, encode(tone()))))
        worker.start()
        try:
            assert blocking.started.wait(30)
            assert client.get("/healthz").json()["busy"] == 1
            busy = post_raw(client, encode(tone()))
            assert_error(busy, 503, "busy")
            assert int(busy.headers["retry-after"]) >= 1
        finally:
            blocking.release.set()
            worker.join(30)
        assert first["response"].status_code == 200
        assert post_raw(client, encode(tone())).status_code == 200  # the slot is free again


def test_health_docs_and_the_page(client):
    health = client.get("/healthz").json()
    assert health["status"] == "ok" and health["max_upload_mb"] == 1 and health["max_seconds"] == 5
    docs = client.get("/docs")
    assert docs.status_code == 200 and "/docs-assets/swagger-ui-bundle.js" in docs.text and "cdn" not in docs.text
    assert client.get("/docs-assets/swagger-ui-bundle.js").status_code == 200  # packaged: works offline
    spec = client.get("/openapi.json").json()
    assert "multipart/form-data" in spec["paths"]["/v1/denoise"]["post"]["requestBody"]["content"]
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for name in ("app.js", "dsp.js", "inbrowser.js", "style.css"):
        assert client.get(f"/static/{name}").status_code == 200
    for path in filter(Path.is_file, WEB_DIR.iterdir()):  # works offline: nothing is fetched from elsewhere
        assert "://" not in path.read_text(), path


@pytest.mark.parametrize("path", ["/", "/static/denoise-worker.js"])  # a worker follows its own script's headers
def test_the_page_may_run_webassembly_threads_and_nothing_else_evaluated(client, path):
    headers = client.get(path).headers
    assert headers["cross-origin-opener-policy"] == "same-origin"
    assert headers["cross-origin-embedder-policy"] == "require-corp"
    assert "script-src 'self' 'wasm-unsafe-eval';" in headers["content-security-policy"]


def test_models_list_what_the_browser_needs(client, models):
    identity, halving = models
    listing = client.get("/v1/models").json()["models"]
    assert [entry["name"] for entry in listing] == [identity, halving]
    for entry in listing:
        assert entry["spectral"] == SpectralConfig().to_dict()
        assert (entry["sample_rate"], entry["strength"], entry["gain_floor"]) == (RATE, 1.0, 0.0)


def onnx_gain(data: bytes, features: np.ndarray) -> np.ndarray:
    import onnxruntime

    session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    assert json.loads(session.get_modelmeta().custom_metadata_map[CONFIG_KEY])["spectral"] == SpectralConfig().to_dict()
    return session.run(["gain"], {"features": features})[0]


def test_model_onnx_is_the_graph_the_server_runs(client, models):
    features = np.random.default_rng(3).uniform(-1.25, 1, (2, 1, 128, 128)).astype(np.float32)
    for name, gain in zip(models, (1.0, 0.5)):  # identity (noise target: no noise) and halving
        response = client.get(f"/v1/models/{name}/onnx")
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/octet-stream"
        assert f"{name}.onnx" in response.headers["content-disposition"]
        assert response.content == client.get(f"/v1/models/{name}/onnx").content
        np.testing.assert_allclose(onnx_gain(response.content, features), gain, atol=1e-6)


@pytest.mark.parametrize("engine", ["torch", "torch-bf16"])
def test_model_onnx_of_a_pytorch_engine_is_exported_on_request(halving_checkpoint, engine):
    (denoiser,) = load_models([str(halving_checkpoint)], threads=1, engine=engine).values()
    assert isinstance(denoiser.engine, TorchEngine) and denoiser.engine.bf16 == (engine == "torch-bf16")
    with local_client(create_app({"halving": denoiser})) as client:
        response = client.get("/v1/models/halving/onnx")
    assert response.status_code == 200, response.text
    np.testing.assert_allclose(onnx_gain(response.content, np.zeros((1, 1, 128, 128), np.float32)), 0.5, atol=1e-6)


def test_model_onnx_of_an_unknown_model_is_a_json_404(client):
    assert_error(client.get("/v1/models/nonexistent/onnx"), 404, "unknown model 'nonexistent'", "this server offers")
    assert_error(client.get("/v1/models/..%2F..%2Fetc/onnx"), 404)  # a path is no name: no route matches


# --- a real server process ---------------------------------------------------------------------


@contextlib.contextmanager
def running_server(log: Path, *options: str):
    """``audiodenoise serve --port 0 OPTIONS`` in its own process; yields its base URL."""
    command = [sys.executable, "-m", "audiodenoise", "serve", "--port", "0", *options]
    with open(log, "w") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        while not (found := re.search(r"serving on (http://\S+)", log.read_text())):
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        url = found.group(1)
        with urllib.request.urlopen(url + "healthz", timeout=60) as response:
            assert json.load(response)["status"] == "ok"
        yield url
    finally:
        process.terminate()
        process.wait(30)


@pytest.fixture(scope="module")
def server(tmp_path_factory, identity_checkpoint, halving_checkpoint):
    log = tmp_path_factory.mktemp("server") / "serve.log"
    with running_server(
        log, "--model", str(identity_checkpoint), str(halving_checkpoint), "--max-upload-mb", "1", "--max-seconds", "20"
    ) as url:
        yield url


def write_wav(path: Path, signal=None, sample_rate: int = RATE, **options) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, tone() if signal is None else signal, sample_rate, **options)
    return path


def test_real_server_answers_over_http(server):
    data = encode(tone(1.0))
    request = urllib.request.Request(server + "v1/denoise", data=data, headers={"Content-Type": "audio/wav"})
    with urllib.request.urlopen(request, timeout=60) as response:
        assert response.headers["Content-Type"] == "audio/wav"
        assert float(response.headers["X-Real-Time-Factor"]) > 0
        body = response.read()
    np.testing.assert_allclose(decode(body)[0], decode(data)[0], atol=2 / 32768)


def test_client_writes_outputs_like_the_local_command(capsys, tmp_path, server):
    first = write_wav(tmp_path / "first.wav", subtype="PCM_16")
    bad = tmp_path / "bad.wav"
    bad.write_text("not audio at all\n" * 40)
    nested = write_wav(tmp_path / "sub" / "nested.flac", tone(0.4, 16000, 2), 16000, format="FLAC")
    code, out, err = denoise_cli(capsys, first, bad, nested, "--server", server)
    assert code == 1
    assert out.startswith("2 of 3 inputs denoised, 1 failed;")
    assert "Traceback" not in err
    [line] = err.strip().splitlines()
    assert line.startswith(f"audiodenoise: error: {bad}: not a readable audio file")
    for source in (first, nested):
        produced = source.with_name(f"{source.stem}_denoised{source.suffix}")
        assert (sf.info(str(produced)).frames, sf.info(str(produced)).format) == (
            sf.info(str(source)).frames,
            sf.info(str(source)).format,
        )
    assert not (tmp_path / "bad_denoised.wav").exists()
    assert not [p for p in tmp_path.rglob("*.part")]


def test_client_folder_output_strength_and_model(capsys, tmp_path, server, halving_checkpoint):
    write_wav(tmp_path / "in" / "a" / "one.wav", subtype="FLOAT")
    code, out, err = denoise_cli(
        capsys, tmp_path / "in", "-o", tmp_path / "out", "--server", server, "--model", halving_checkpoint.name
    )
    assert code == 0, err
    assert "1 of 1 inputs denoised, 0 failed" in out
    halved, _ = sf.read(tmp_path / "out" / "a" / "one.wav", dtype="float32")
    options = ["--server", server, "--model", halving_checkpoint.name, "--strength", "0"]
    code, _, err = denoise_cli(capsys, tmp_path / "in" / "a" / "one.wav", "-o", tmp_path / "kept.wav", *options)
    assert code == 0, err
    kept, _ = sf.read(tmp_path / "kept.wav", dtype="float32")
    rms = [np.sqrt(np.mean(signal[4000:-4000] ** 2)) for signal in (halved, kept)]
    assert rms[0] == pytest.approx(rms[1] / 2, rel=0.02)


def test_client_file_over_the_servers_upload_limit_fails_alone(capsys, tmp_path, server):
    big = write_wav(tmp_path / "big.wav", tone(30.0), subtype="PCM_16")  # 1.3 MB; the server takes 1 MB
    small = write_wav(tmp_path / "small.wav", subtype="PCM_16")
    code, out, err = denoise_cli(capsys, big, small, "--server", server)
    assert code == 1
    assert "1 of 2 inputs denoised, 1 failed" in out
    assert err.strip().splitlines() == [f"audiodenoise: error: {big}: 1.3 MB is over the server's upload limit of 1 MB"]
    assert (tmp_path / "small_denoised.wav").is_file()


def test_client_file_over_the_servers_duration_limit_fails_alone_before_upload(capsys, tmp_path, server):
    long = write_wav(tmp_path / "long.wav", tone(25.0, 8000), 8000, subtype="PCM_16")  # 0.4 MB, 25 s; limit 20 s
    small = write_wav(tmp_path / "small.wav", subtype="PCM_16")
    code, out, err = denoise_cli(capsys, long, small, "--server", server)
    assert code == 1
    assert "1 of 2 inputs denoised, 1 failed" in out
    assert err.strip().splitlines() == [
        f"audiodenoise: error: {long}: 25.0 s of audio is over the server's limit of 20 s"
    ]
    assert (tmp_path / "small_denoised.wav").is_file() and not (tmp_path / "long_denoised.wav").exists()


@pytest.mark.parametrize(
    ("options", "words"),
    [
        (["--model", "nonexistent"], ["unknown model 'nonexistent'", "offers"]),
        (["--threads", "2"], ["--threads", "not to --server"]),
    ],
    ids=["unknown-model", "local-only-option"],
)
def test_client_usage_errors_exit_2(capsys, tmp_path, server, options, words):
    source = write_wav(tmp_path / "a.wav")
    code, _, err = denoise_cli(capsys, source, "--server", server, *options)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    for word in words:
        assert word in err
    assert not (tmp_path / "a_denoised.wav").exists()


@pytest.mark.parametrize("url", ["http://127.0.0.1:9", "localhost:8000"], ids=["unreachable", "no-scheme"])
def test_client_without_a_usable_server_exits_2(capsys, tmp_path, url):
    code, _, err = denoise_cli(capsys, write_wav(tmp_path / "a.wav"), "--server", url)
    assert code == 2
    assert err.startswith("audiodenoise: error: ") and len(err.strip().splitlines()) == 1


# --- serve: usage errors ---------------------------------------------------------------------------


def test_serve_on_a_port_in_use_is_a_one_line_error(capsys, identity_checkpoint):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        code = main(["serve", "--port", str(port), "--model", str(identity_checkpoint)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip() == f"audiodenoise: error: cannot listen on 127.0.0.1:{port} (Address already in use)"


def test_serve_with_an_unknown_model_is_a_one_line_error(capsys):
    assert main(["serve", "--port", "0", "--model", "nonexistent-model"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("audiodenoise: error: unknown model 'nonexistent-model'") and len(err.splitlines()) == 1


@pytest.mark.parametrize("option", [["--port", "70000"], ["--workers", "0"], ["--max-upload-mb", "-1"]])
def test_serve_bad_options_exit_2(capsys, option):
    with pytest.raises(SystemExit) as caught:
        main(["serve", *option])
    assert caught.value.code == 2
    assert option[0] in capsys.readouterr().err.strip().splitlines()[-1]
