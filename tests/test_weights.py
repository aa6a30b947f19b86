"""Weights download/cache against a local HTTP server on 127.0.0.1 (no outside network)."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from painter_cli import weights as W
from painter_cli.errors import PainterError

PAYLOAD = bytes(range(256)) * 40 + b"tail"  # 10,244 bytes
PATH = "/BAAI/Painter/resolve/main/painter_vit_large.pth"


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):  # keep the test output clean
        pass

    def do_GET(self):
        server = self.server
        server.requests.append((self.path, self.headers.get("Range")))
        if self.path != PATH:
            self.send_error(404)
            return
        data, start = PAYLOAD, 0
        rng = self.headers.get("Range")
        if rng and server.mode != "no-range":
            start = int(rng.split("=")[1].split("-")[0])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if server.mode == "truncate":
            body = body[: len(body) // 2]  # announce everything, send half, hang up
        self.wfile.write(body)


@pytest.fixture
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.requests, srv.mode = [], "normal"
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    srv.base = f"http://127.0.0.1:{srv.server_address[1]}"
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def env(server, tmp_path, monkeypatch):
    monkeypatch.setenv("PAINTER_WEIGHTS_URL", server.base)
    monkeypatch.setenv("PAINTER_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "weights"


def test_url_and_cache_resolution(tmp_path, monkeypatch):
    monkeypatch.delenv("PAINTER_WEIGHTS_URL", raising=False)
    monkeypatch.delenv("PAINTER_CACHE", raising=False)
    url = W.weights_url("seggpt-vit-large")
    assert url == "https://huggingface.co/BAAI/SegGPT/resolve/main/seggpt_vit_large.pth"
    assert W.cache_dir() == Path.home() / ".cache" / "painter" / "weights"
    monkeypatch.setenv("PAINTER_WEIGHTS_URL", "http://mirror.local/hf/")
    assert W.weights_url("painter-vit-large") == (
        "http://mirror.local/hf/BAAI/Painter/resolve/main/painter_vit_large.pth"
    )
    monkeypatch.setenv("PAINTER_CACHE", str(tmp_path))
    assert W.cache_dir() == tmp_path / "weights"
    with pytest.raises(PainterError, match="unknown weights 'vit-huge'"):
        W.weights_url("vit-huge")


def test_download_then_cached(server, env):
    path = W.download_weights("painter-vit-large")
    assert path == env / "painter_vit_large.pth"
    assert path.read_bytes() == PAYLOAD
    assert not (env / "painter_vit_large.pth.part").exists()
    assert W.download_weights("painter-vit-large") == path
    assert len(server.requests) == 1  # the second call found the cached file
    assert W.download_weights("painter-vit-large", force=True).read_bytes() == PAYLOAD
    assert len(server.requests) == 2


def test_resume_from_partial(server, env):
    env.mkdir(parents=True)
    (env / "painter_vit_large.pth.part").write_bytes(PAYLOAD[:3000])
    path = W.download_weights("painter-vit-large")
    assert server.requests == [(PATH, "bytes=3000-")]
    assert path.read_bytes() == PAYLOAD


def test_resume_when_server_ignores_range(server, env):
    server.mode = "no-range"
    env.mkdir(parents=True)
    (env / "painter_vit_large.pth.part").write_bytes(b"x" * 100)  # junk: must be overwritten
    assert W.download_weights("painter-vit-large").read_bytes() == PAYLOAD


def test_complete_part_is_finished_on_416(server, env):
    env.mkdir(parents=True)
    (env / "painter_vit_large.pth.part").write_bytes(PAYLOAD)
    assert W.download_weights("painter-vit-large").read_bytes() == PAYLOAD


def test_truncated_transfer_keeps_part_then_resumes(server, env):
    server.mode = "truncate"
    with pytest.raises(
        PainterError, match=f"got {len(PAYLOAD) // 2} bytes, expected {len(PAYLOAD)}"
    ):
        W.download_weights("painter-vit-large")
    part = env / "painter_vit_large.pth.part"
    assert part.stat().st_size == len(PAYLOAD) // 2
    assert not (env / "painter_vit_large.pth").exists()
    server.mode = "normal"
    assert W.download_weights("painter-vit-large").read_bytes() == PAYLOAD
    assert server.requests[-1][1] == f"bytes={len(PAYLOAD) // 2}-"


def test_size_mismatch_with_expected_size(server, tmp_path):
    with pytest.raises(PainterError, match=f"announces {len(PAYLOAD)} bytes, expected 99"):
        W.fetch(server.base + PATH, tmp_path / "w.pth", expected_size=99)
    assert not (tmp_path / "w.pth").exists()
    assert W.fetch(server.base + PATH, tmp_path / "w.pth", len(PAYLOAD)).stat().st_size == len(
        PAYLOAD
    )


def test_network_failure_is_a_clear_error(server, tmp_path):
    with pytest.raises(PainterError, match="HTTP 404") as info:
        W.fetch(server.base + "/missing.pth", tmp_path / "w.pth")
    assert "--url" in info.value.hint
    dead = f"http://127.0.0.1:{_free_port()}/x.pth"
    with pytest.raises(PainterError, match="could not download"):
        W.fetch(dead, tmp_path / "w.pth", timeout=2)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_list_and_resolve(server, env, tmp_path):
    rows = {r.name: r for r in W.list_weights()}
    assert rows["painter-vit-large"].status == "missing"
    with pytest.raises(PainterError, match="not downloaded") as info:
        W.resolve_weights("painter-vit-large")
    assert info.value.hint == "run: painter weights download painter-vit-large"
    env.mkdir(parents=True)
    (env / "seggpt_vit_large.pth.part").write_bytes(b"abc")
    W.download_weights("painter-vit-large")
    rows = {r.name: r for r in W.list_weights()}
    assert (rows["painter-vit-large"].status, rows["painter-vit-large"].size) == (
        "complete",
        len(PAYLOAD),
    )
    assert (rows["seggpt-vit-large"].status, rows["seggpt-vit-large"].size) == ("partial", 3)
    assert W.resolve_weights("painter-vit-large") == env / "painter_vit_large.pth"
    own = tmp_path / "mine.pth"
    own.write_bytes(b"w")
    assert W.resolve_weights(own) == own
    with pytest.raises(PainterError, match="no such checkpoint file or known weights name"):
        W.resolve_weights(tmp_path / "absent.pth")


def test_cli_download_and_list(server, env, tmp_path, cli_runner):
    from painter_cli.cli import app

    result = cli_runner.invoke(app, ["weights", "list"])
    assert result.exit_code == 0, result.output
    assert "painter-vit-large" in result.output and "missing" in result.output
    result = cli_runner.invoke(app, ["weights", "download", "painter-vit-large"])
    assert result.exit_code == 0, result.output
    assert (env / "painter_vit_large.pth").read_bytes() == PAYLOAD
    result = cli_runner.invoke(app, ["weights", "list"])
    assert "complete" in result.output
    # --url points at the file itself; --cache overrides $PAINTER_CACHE
    other = tmp_path / "other"
    result = cli_runner.invoke(
        app,
        [
            "weights",
            "download",
            "painter-vit-large",
            "--url",
            server.base + PATH,
            "--cache",
            str(other),
        ],
    )
    assert result.exit_code == 0, result.output
    assert (other / "weights" / "painter_vit_large.pth").read_bytes() == PAYLOAD
    result = cli_runner.invoke(app, ["weights", "download", "nope"])
    assert result.exit_code == 1
    assert "unknown weights 'nope'" in result.output


def test_list_shows_wrong_files_as_invalid(env):
    env.mkdir(parents=True)
    (env / "painter_vit_large.pth").write_bytes(b"\x00" * 5000)  # not downloaded here
    (env / "seggpt_vit_large.pth").mkdir()
    rows = {r.name: r for r in W.list_weights()}
    assert rows["painter-vit-large"].status == "invalid"
    assert rows["seggpt-vit-large"].status == "invalid"


def test_download_refuses_bad_url_and_cache(env, tmp_path):
    with pytest.raises(PainterError, match="--url notaurl: not a URL"):
        W.download_weights("painter-vit-large", url="notaurl", force=True)
    afile = tmp_path / "x.pth"
    afile.write_bytes(b"x")
    with pytest.raises(PainterError, match="x.pth: exists and is not a folder"):
        W.download_weights("painter-vit-large", cache=afile)
    env.mkdir(parents=True)
    (env / "painter_vit_large.pth").mkdir()
    with pytest.raises(PainterError, match="painter_vit_large.pth: exists and is not a file"):
        W.download_weights("painter-vit-large", force=True)
