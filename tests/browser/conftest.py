"""Real-browser tests: headless Debian chromium driven by Playwright (its own browser download fails offline)."""
import functools, http.server, os, shutil, threading
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("LMTRAIN_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "tests" / "browser" / "artifacts"


@pytest.fixture(scope="session")
def browser():
    if CHROMIUM is None: pytest.fail("chromium not found: `apt-get install -y chromium` (the browser tests need it)")
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args): pass


@pytest.fixture(scope="session")
def serve():
    "Serve a folder over HTTP on loopback; returns its base URL."
    servers = []
    def start(folder: Path) -> str:
        handler = functools.partial(_Quiet, directory=str(folder))
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        return f"http://127.0.0.1:{srv.server_address[1]}/"
    yield start
    for s in servers: s.shutdown()


@pytest.fixture(scope="session")
def artifacts():
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
