"""Starts `python -m ggmlpy serve` on a free localhost port for the server tests and stops it.
The subprocess gets this process's environment (GGMLPY_BUILD_DIR, PYTHONPATH, ...) so it loads
the same ggmlpy; its log goes to a file that a failed start prints."""
import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time

import httpx

START_TIMEOUT = 60.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, proc, port, log_path):
        self.proc, self.port, self.log_path = proc, port, log_path
        self.url = f"http://127.0.0.1:{port}"
        self.base_url = self.url + "/v1"

    def log(self) -> str:
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def metrics(self) -> dict:
        """{(name, labels tuple): value} from /metrics, parsed by prometheus_client's parser."""
        from prometheus_client.parser import text_string_to_metric_families
        text = httpx.get(self.url + "/metrics", timeout=10).text
        out = {}
        for fam in text_string_to_metric_families(text):
            for s in fam.samples:
                out[(s.name, tuple(sorted(s.labels.items())))] = s.value
        return out


@contextlib.contextmanager
def run_server(model_path, *args, env=None):
    port = free_port()
    log = tempfile.NamedTemporaryFile("w", prefix="ggmlpy-serve-", suffix=".log", delete=False)
    cmd = [sys.executable, "-m", "ggmlpy", "serve", "-m", str(model_path), "--host", "127.0.0.1",
           "--port", str(port), "-c", "1024", "-t", "1", *args]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
    server = Server(proc, port, log.name)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"ggmlpy serve exited with {proc.returncode}:\n{server.log()}")
            try:
                if httpx.get(server.url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"ggmlpy serve did not answer /health in {START_TIMEOUT} s:\n{server.log()}")
            time.sleep(0.2)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        os.unlink(log.name)
