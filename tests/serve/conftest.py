"""A real `uno serve` (uvicorn in a thread, the embedded model) on a free localhost port."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass

import httpx2 as httpx
import pytest

from uno_local.app import App
from uno_local.serve.server import ServeOptions, make_server


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_healthy(base: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"uno serve did not come up at {base}")


@dataclass
class Served:
    app: App
    base: str  # http://127.0.0.1:PORT
    key: str | None

    @property
    def v1(self) -> str:
        return f"{self.base}/v1"

    def client(self, **kwargs):
        import openai

        return openai.OpenAI(base_url=self.v1, api_key=self.key or "unused", max_retries=0, **kwargs)


def _serve(home, key: str | None = None, max_body: int = 1_000_000):
    app = App.open(home=home)
    app.config.model.n_ctx = 2048
    app.config.model.n_threads = 2
    server = make_server(app, ServeOptions(port=free_port(), api_key=key, max_body_bytes=max_body))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    served = Served(app, f"http://127.0.0.1:{server.config.port}", key)
    wait_healthy(served.base)
    return served, server, thread


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """One server per test module, on its own data dir, with a 20 kB body limit."""
    served, server, thread = _serve(tmp_path_factory.mktemp("serve-home"), max_body=20_000)
    yield served
    server.should_exit = True
    thread.join(30)
    served.app.close()


@pytest.fixture(scope="module")
def served_with_key(tmp_path_factory):
    served, server, thread = _serve(tmp_path_factory.mktemp("serve-key-home"), key="s3cret")
    yield served
    server.should_exit = True
    thread.join(30)
    served.app.close()


@pytest.fixture
def port() -> int:
    """A free localhost port for a server the test starts itself."""
    return free_port()


@pytest.fixture
def wait_up():
    """wait_up(base_url): block until that server answers /health."""
    return wait_healthy
