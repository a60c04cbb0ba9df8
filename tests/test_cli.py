"""The grip-asgi command line, run through main() with the proxy on an httpx.MockTransport."""

from __future__ import annotations

import io
import json
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from grip_asgi import _cli
from grip_asgi._config import GripSettings
from grip_asgi._publish import SyncPublisher

URL = "http://pushpin.test:5561"


class Proxy:
    """Answers every publish with ``status`` and ``text``; records requests and timeouts."""

    def __init__(self, status: int = 200, text: str = "Published\n") -> None:
        self.status = status
        self.text = text
        self.requests: list[httpx.Request] = []
        self.timeouts: list[float | None] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(self.status, text=self.text)

    def publisher(self, settings: GripSettings, timeout: float | None) -> SyncPublisher:
        self.timeouts.append(timeout)
        client = httpx.Client(transport=httpx.MockTransport(self))
        return SyncPublisher(settings, client=client, backoff=0)

    def item(self, index: int = 0) -> dict[str, Any]:
        [item] = json.loads(self.requests[index].content)["items"]
        assert isinstance(item, dict)
        return item


@pytest.fixture
def proxy(monkeypatch: pytest.MonkeyPatch) -> Proxy:
    for name in ("GRIP_URL", "GRIP_PREFIX"):
        monkeypatch.delenv(name, raising=False)
    proxy = Proxy()
    monkeypatch.setattr(_cli, "_publisher", proxy.publisher)
    return proxy


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = _cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    ("options", "formats"),
    [
        (
            [],
            {
                "ws-message": {"content": "hello"},
                "http-stream": {"content": "data: hello\n\n"},
                "http-response": {"body": "hello\n"},
            },
        ),
        (["--ws"], {"ws-message": {"content": "hello"}}),
        (["--stream"], {"http-stream": {"content": "hello\n"}}),
        (["--sse"], {"http-stream": {"content": "event: message\ndata: hello\n\n"}}),
        (
            ["--sse", "--event", "news"],
            {"http-stream": {"content": "event: news\ndata: hello\n\n"}},
        ),
        (["--response"], {"http-response": {"body": "hello\n"}}),
        (
            ["--ws", "--sse", "--response"],
            {
                "ws-message": {"content": "hello"},
                "http-stream": {"content": "event: message\ndata: hello\n\n"},
                "http-response": {"body": "hello\n"},
            },
        ),
    ],
)
def test_publish_formats(
    proxy: Proxy, capsys: pytest.CaptureFixture[str], options: list[str], formats: Any
) -> None:
    code, out, err = run(["publish", "--grip-url", URL, *options, "room", "hello"], capsys)
    assert (code, out, err) == (0, "", "")
    assert str(proxy.requests[0].url) == URL + "/publish/"
    assert proxy.item() == {"channel": "room", "formats": formats}


def test_publish_id_prev_id_and_prefix(proxy: Proxy, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["publish", "--grip-url", URL, "--prefix", "p-", "--id", "2", "--prev-id", "1"]
    assert run([*argv, "--ws", "c", "m"], capsys)[0] == 0
    assert proxy.item() == {
        "channel": "p-c",
        "id": "2",
        "prev-id": "1",
        "formats": {"ws-message": {"content": "m"}},
    }


def test_grip_url_and_prefix_come_from_the_environment(
    proxy: Proxy, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GRIP_URL", URL + "/?key=token")
    monkeypatch.setenv("GRIP_PREFIX", "env-")
    assert run(["publish", "--ws", "c", "m"], capsys)[0] == 0
    assert proxy.requests[0].headers["Authorization"] == "Bearer token"
    assert proxy.item()["channel"] == "env-c"
    # An explicit --prefix (even an empty one) wins over the environment.
    assert run(["publish", "--prefix", "", "--ws", "c", "m"], capsys)[0] == 0
    assert proxy.item(1)["channel"] == "c"


def test_several_grip_urls(proxy: Proxy, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["publish", "--grip-url", "http://a", "--grip-url", "http://b", "-v", "--ws", "c", "m"]
    code, out, err = run(argv, capsys)
    assert (code, out, err) == (0, "", "published to 2 proxy(ies)\n")
    assert [r.url.host for r in proxy.requests] == ["a", "b"]


@pytest.mark.parametrize(("stdin", "content"), [("from stdin\n", "from stdin"), ("a\n\n", "a\n")])
def test_message_from_stdin(
    proxy: Proxy,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    stdin: str,
    content: str,
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    assert run(["publish", "--grip-url", URL, "--ws", "c", "-"], capsys)[0] == 0
    assert proxy.item()["formats"] == {"ws-message": {"content": content}}


@pytest.mark.parametrize(("given", "timeout"), [([], None), (["--timeout", "2.5"], 2.5)])
def test_timeout(
    proxy: Proxy, capsys: pytest.CaptureFixture[str], given: list[str], timeout: float | None
) -> None:
    assert run(["publish", "--grip-url", URL, *given, "c", "m"], capsys)[0] == 0
    assert proxy.timeouts == [timeout]


@pytest.mark.parametrize(
    ("status", "text", "error"),
    [
        (
            400,
            "Invalid format: no formats specified\n",
            f"grip-asgi: error: {URL} answered 400: Invalid format: no formats specified\n",
        ),
        (
            503,
            "Service\nUnavailable",
            f"grip-asgi: error: {URL} answered 503: Service Unavailable\n",
        ),
    ],
)
def test_http_errors_print_one_line(
    proxy: Proxy, capsys: pytest.CaptureFixture[str], status: int, text: str, error: str
) -> None:
    proxy.status, proxy.text = status, text
    assert run(["publish", "--grip-url", URL, "c", "m"], capsys) == (1, "", error)


def test_several_proxies_failing_print_one_line(
    proxy: Proxy, capsys: pytest.CaptureFixture[str]
) -> None:
    proxy.status, proxy.text = 500, "down"
    code, _, err = run(
        ["publish", "--grip-url", "http://a", "--grip-url", "http://b", "c", "m"], capsys
    )
    assert code == 1
    assert err.count("\n") == 1
    assert err.startswith(
        "grip-asgi: error: publish failed on 2 of 2 proxies (http://a answered 500"
    )
    assert "; http://b answered 500" in err


@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("ftp://example.com/?key=s3cret", "GRIP URL must start with http:// or https://"),
        ("http://", "GRIP URL has no host"),
        ("http://example.com:99999", "GRIP URL has an invalid port"),
    ],
)
def test_bad_url(proxy: Proxy, capsys: pytest.CaptureFixture[str], url: str, error: str) -> None:
    code, out, err = run(["publish", "--grip-url", url, "c", "m"], capsys)
    assert (code, out) == (1, "")
    assert err.startswith(f"grip-asgi: error: {error}")
    assert err.count("\n") == 1
    assert "s3cret" not in err
    assert proxy.requests == []


def test_a_bad_channel_is_an_error(proxy: Proxy, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["publish", "--grip-url", URL, "", "m"], capsys)
    assert code == 1
    assert err == "grip-asgi: error: a channel must be a non-empty str, got ''\n"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "the following arguments are required: COMMAND"),
        (["publish", "--grip-url", URL, "c"], "the following arguments are required: MESSAGE"),
        (["publish", "c", "m"], "no GRIP URL: pass --grip-url or set GRIP_URL"),
        (["publish", "--grip-url", " ", "c", "m"], "no GRIP URL"),
        (["publish", "--grip-url", URL, "--event", "x", "c", "m"], "--event needs --sse"),
        (["publish", "--grip-url", URL, "--stream", "--sse", "c", "m"], "not allowed with"),
        (["publish", "--grip-url", URL, "--timeout", "0", "c", "m"], "must be more than 0"),
        (["publish", "--grip-url", URL, "--timeout", "soon", "c", "m"], "not a number: 'soon'"),
    ],
)
def test_usage_errors_exit_2(
    proxy: Proxy, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, out, err = run(argv, capsys)
    assert (code, out) == (2, "")
    assert message in err.splitlines()[-1]
    assert proxy.requests == []


def test_help_exits_0(proxy: Proxy, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["publish", "--help"], capsys)
    assert code == 0
    assert "none means all" in out


@pytest.mark.parametrize("timeout", [[], ["--timeout", "2"]])
def test_unreachable_proxy(capsys: pytest.CaptureFixture[str], timeout: list[str]) -> None:
    # A real connection to a port nothing listens on (the socket is closed before use).
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    code, out, err = run(["publish", "--grip-url", url, *timeout, "c", "m"], capsys)
    assert (code, out) == (1, "")
    assert err.startswith(f"grip-asgi: error: could not reach {url}: ")
    assert err.count("\n") == 1


def test_python_dash_m() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "grip_asgi", "publish", "c", "m"],
        capture_output=True,
        text=True,
        env={"PATH": ""},
        cwd=Path(__file__).parents[1],
        check=False,
    )
    assert result.returncode == 2
    assert "no GRIP URL" in result.stderr
