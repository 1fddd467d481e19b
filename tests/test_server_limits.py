"""The server against slow, compressed, truncated, concurrent and cross-site input (a real uvicorn in a thread)."""

from __future__ import annotations

import contextlib
import io
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import soundfile as sf
import uvicorn
from fastapi.testclient import TestClient
from starlette.applications import Starlette
from starlette.routing import Mount

from audiodenoise.audio import AudioError, inspect_audio
from audiodenoise.checkpoint import save_checkpoint
from audiodenoise.nets.unet import UNet, UNetConfig
from audiodenoise.server import IsolatedStaticFiles, Limits, create_app, load_models
from audiodenoise.spectral import SpectralConfig

RATE = 22050


def wav(seconds: float = 0.5, channels: int = 1, rate: int = RATE) -> bytes:
    buffer = io.BytesIO()
    t = np.arange(int(seconds * rate)) / rate
    sf.write(buffer, np.stack([0.3 * np.sin(2 * np.pi * 300 * t)] * channels, 1), rate, format="WAV")
    return buffer.getvalue()


def truncated(data: bytes) -> bytes:
    return data[: len(data) * 6 // 10]  # the header promises more samples than the file holds


@pytest.fixture(scope="module")
def models(identity_checkpoint):
    return load_models([str(identity_checkpoint)], threads=1)


@contextlib.contextmanager
def live(app):
    """``app`` served by uvicorn on a free loopback port in a thread; yields (host, port)."""
    sock = socket.create_server(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, limit_concurrency=64))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        yield sock.getsockname()[:2]
    finally:
        server.should_exit = True
        thread.join(10)


def post(address, data: bytes, timeout: float = 30) -> tuple[int, float]:
    host, port = address
    request = urllib.request.Request(
        f"http://{host}:{port}/v1/denoise", data=data, headers={"Content-Type": "audio/wav"}
    )
    started = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, time.monotonic() - started
    except urllib.error.HTTPError as error:
        return error.code, time.monotonic() - started


def open_upload(address, length: int, chunked: bool = False) -> socket.socket:
    sock = socket.create_connection(address, timeout=10)
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {length}"
    sock.sendall(
        f"POST /v1/denoise HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: audio/wav\r\n{framing}\r\n\r\n".encode()
    )
    return sock


def test_slow_uploads_hold_no_worker(models):
    with live(create_app(models)) as address:
        usual = post(address, wav())
        slow = [open_upload(address, 10_000) for _ in range(20)]
        stop = threading.Event()

        def trickle():
            while not stop.wait(0.5):
                for sock in slow:
                    with contextlib.suppress(OSError):
                        sock.send(b"R")

        trickler = threading.Thread(target=trickle)
        trickler.start()
        try:
            time.sleep(1.5)
            status, seconds = post(address, wav())
        finally:
            stop.set()
            trickler.join()
            for sock in slow:
                sock.close()
    assert usual[0] == 200 and status == 200
    assert seconds < usual[1] + 5


def read_answer(sock: socket.socket, timeout: float) -> bytes:
    sock.settimeout(timeout)
    answer = b""
    with contextlib.suppress(OSError):
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


@pytest.mark.parametrize("pace", [None, 0.2], ids=["stalled", "trickle"])
def test_a_stalled_or_trickling_upload_gets_408_and_is_closed(models, pace):
    with live(create_app(models, Limits(body_timeout=1.0))) as address:
        sock = open_upload(address, 10_000)
        sock.sendall(b"RIFF")
        started = time.monotonic()
        while pace and time.monotonic() - started < 4:
            with contextlib.suppress(OSError):
                sock.send(b"x")
            time.sleep(pace)
        answer = read_answer(sock, 10)
    assert answer.startswith(b"HTTP/1.1 408") and b'{"error":' in answer, answer[:200]
    assert time.monotonic() - started < 8


def test_a_body_over_the_limit_gets_413_and_the_connection_closes(models):
    with live(create_app(models, Limits(max_upload_mb=1))) as address:
        sock = open_upload(address, 0, chunked=True)
        chunk, sent = b"10000\r\n" + bytes(0x10000) + b"\r\n", 0
        with contextlib.suppress(OSError):
            while sent < 64 * 2**20:
                sock.sendall(chunk)
                sent += len(chunk)
        answer = read_answer(sock, 10)
    assert sent < 32 * 2**20, f"the server read {sent / 2**20:.0f} MB past its 1 MB limit"
    assert b" 413 " in answer.split(b"\r\n")[0]


def test_concurrent_onnx_downloads_are_exported_once(halving_checkpoint):
    models = load_models([str(halving_checkpoint)], threads=1, engine="torch")
    with live(create_app(models)) as (host, port):

        def download(_):
            with urllib.request.urlopen(f"http://{host}:{port}/v1/models/{next(iter(models))}/onnx", timeout=60) as r:
                return r.status, r.read()

        results = list(ThreadPoolExecutor(6).map(download, range(6)))
    assert [status for status, _ in results] == [200] * 6
    assert len({body for _, body in results}) == 1


def silence(channels: int, rate: int, seconds: float, format: str = "FLAC") -> bytes:
    buffer = io.BytesIO()
    with sf.SoundFile(buffer, "w", rate, channels, "PCM_16", format=format) as output:
        block = np.zeros((rate, channels), np.int16)
        for _ in range(int(seconds)):
            output.write(block)
    return buffer.getvalue()


def test_too_many_channels_or_channel_seconds_get_413(models):
    app = create_app(models, Limits(max_channels=8, max_channel_seconds=20))
    with TestClient(app, base_url="http://127.0.0.1") as client:
        many = client.post("/v1/denoise", content=silence(64, 8000, 1, "WAV"), headers={"Content-Type": "audio/wav"})
        costly = client.post("/v1/denoise", content=silence(8, 8000, 3), headers={"Content-Type": "audio/flac"})
        health = client.get("/healthz").json()
    assert many.status_code == 413 and "64 channels" in many.json()["error"]
    assert costly.status_code == 413 and "channel-seconds" in costly.json()["error"]
    assert health["max_channels"] == 8 and health["max_channel_seconds"] == 20


def test_truncated_audio_and_two_files_get_422(models, tmp_path):
    with TestClient(create_app(models), base_url="http://127.0.0.1") as client:
        cut = client.post("/v1/denoise", content=truncated(wav(2.0)), headers={"Content-Type": "audio/wav"})
        files = [("file", ("a.wav", wav(), "audio/wav")), ("file", ("b.wav", wav(), "audio/wav"))]
        two = client.post("/v1/denoise", files=files)
    assert cut.status_code == 422 and "truncated audio" in cut.json()["error"]
    assert two.status_code == 422 and "more than one field 'file'" in two.json()["error"]
    path = tmp_path / "cut.wav"
    path.write_bytes(truncated(wav(2.0)))
    with pytest.raises(AudioError, match="truncated audio .the header promises 2.00 s"):
        inspect_audio(path)


def test_host_names_and_origins(models):
    app = create_app(models)
    with TestClient(app, base_url="http://127.0.0.1:8000") as client:
        rebound = client.get("/healthz", headers={"Host": "attacker.example:8000"})
        cross = client.post(
            "/v1/denoise", content=wav(), headers={"Content-Type": "audio/wav", "Origin": "https://attacker.example"}
        )
        same = client.post(
            "/v1/denoise", content=wav(), headers={"Content-Type": "audio/wav", "Origin": "http://127.0.0.1:8000"}
        )
        local = [client.get("/healthz", headers={"Host": host}).status_code for host in ("localhost:8000", "[::1]")]
    assert rebound.status_code == 421 and "attacker.example" in rebound.json()["error"]
    assert cross.status_code == 403 and "cross-origin" in cross.json()["error"]
    assert same.status_code == 200 and local == [200, 200]


def test_an_allowed_origin_and_host(models):
    from audiodenoise.http_guard import Access

    app = create_app(models, access=Access("127.0.0.1", ("box.lan",), ("https://app.example",)))
    with TestClient(app, base_url="http://box.lan") as client:
        response = client.post(
            "/v1/denoise", content=wav(), headers={"Content-Type": "audio/wav", "Origin": "https://app.example"}
        )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "https://app.example"


def test_every_answer_forbids_sniffing_and_framing(models):
    with TestClient(create_app(models), base_url="http://127.0.0.1") as client:
        for path in ("/", "/healthz", "/v1/models", "/static/app.js", "/docs", "/nothing"):
            response = client.get(path)
            assert response.headers["x-content-type-options"] == "nosniff", path
            assert "frame-ancestors 'none'" in response.headers["content-security-policy"], path
        docs = client.get("/docs").headers["content-security-policy"]
    script_policy = docs.split("script-src", 1)[1].split(";")[0]
    assert "'sha256-" in script_policy and "unsafe-inline" not in script_policy


def test_dotfiles_are_not_served(tmp_path):
    (tmp_path / ".stamp").write_text("x")
    (tmp_path / "shown.txt").write_text("x")
    app = Starlette(routes=[Mount("/static", IsolatedStaticFiles(directory=tmp_path))])
    with TestClient(app) as client:
        assert client.get("/static/shown.txt").status_code == 200
        assert client.get("/static/.stamp").status_code == 404


def test_a_client_gone_mid_upload_is_one_log_line(models, caplog):
    with live(create_app(models)) as address:
        sock = open_upload(address, 100_000)
        sock.sendall(b"RIFF....")
        sock.close()
        time.sleep(1.0)
    assert not [record for record in caplog.records if record.exc_info], caplog.text
    assert "went away during its upload" in caplog.text


PEAK_GROWTH_SCRIPT = """
import sys
from pathlib import Path
from audiodenoise.server import Limits, denoise_bytes, load_models
from audiodenoise.uploads import Upload

def peak_mib():
    return int(Path("/proc/self/status").read_text().split("VmHWM:")[1].split()[0]) / 1024

(denoiser,) = load_models([sys.argv[1]], threads=1).values()
upload = Upload(Path(sys.argv[2]).read_bytes(), "silence.flac")
denoise_bytes(denoiser, Upload(Path(sys.argv[3]).read_bytes(), "warm.wav"), Limits())
Path("/proc/self/clear_refs").write_text("5")  # the peak from here on
before = peak_mib()
result = denoise_bytes(denoiser, upload, Limits())
print(peak_mib() - before, len(result.data))
"""


def test_a_compressed_many_channel_upload_is_denoised_in_bounded_memory(tmp_path):
    """8 channels x 384 kHz of silent FLAC (a few hundred KB) decodes to 100s of MB: it is processed in blocks
    whose memory does not grow with the channel count (it grew to over 1 GiB at 60 s before)."""
    small = UNet(UNetConfig(base_filters=4, depth=2))
    save_checkpoint(tmp_path / "small", small.eval(), SpectralConfig())
    (tmp_path / "silence.flac").write_bytes(silence(8, 384000, 12))
    (tmp_path / "warm.wav").write_bytes(wav())
    files = [str(tmp_path / name) for name in ("small", "silence.flac", "warm.wav")]
    done = subprocess.run(
        [sys.executable, "-c", PEAK_GROWTH_SCRIPT, *files], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    growth_mib, output_bytes = done.stdout.split()
    assert int(output_bytes) > 0
    assert float(growth_mib) < 450, f"peak memory grew by {growth_mib} MiB"  # 376 measured (290 before the top band)
