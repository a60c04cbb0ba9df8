"""Every code block in README.md and docs/*.md is run or checked, so the docs cannot rot.

The conventions (docs/contributing.md says the same, for writers):

- A fenced block's language is its first info word. An HTML comment on the line(s) right
  above a block says how it is tested:

  - ``<!-- test: setup=NAME check=NAME continue -->`` for a ``python`` block, any of:
    ``setup=NAME`` runs it with a setup from ``SETUPS`` (a Django project, a Pushpin, ...;
    several are entered in order);
    ``check=NAME`` runs a hidden check from ``CHECKS`` against its app right after it;
    ``continue`` runs it after the previous ``python`` block of the page, in the same chain.
  - ``<!-- test: pushpin-routes -->`` or ``<!-- test: pushpin-conf -->``: a Pushpin routes or
    ``pushpin.conf`` snippet, checked against what ``grip_asgi.pushpin.Pushpin`` writes.
  - ``<!-- excerpt: PATH -->``: every non-blank line of the block appears, in order, in PATH
    (whitespace-normalised; a ``...`` line skips any lines). PATH is tested on its own.

- ``python`` blocks run; ``continue`` chains them. A chain runs in the repository root with
  ``GRIP_URL`` set to :data:`DOCS_GRIP_URL` (the URL the docs tell readers to export) and
  every other ``GRIP_*`` variable unset. Publishers reach a fake proxy that checks and
  records each publish request (except with ``setup=pushpin``: the block runs a real one).
  A block whose first line is ``# NAME.py`` (``# pkg/NAME.py``) runs as the module ``NAME``
  (``pkg.NAME``), importable by later blocks of its chain; any other block runs in the module
  of the block before it. Top-level ``await`` is allowed. Once the chain ran, every
  ``test_*`` function it defined is called (as pytest would call it).
- ``sh`` (``shell``, ``bash``) and ``console`` blocks (``console``: only the ``$ `` lines) are
  checked, never run: each command must be one :func:`check_command` knows, with options its
  program accepts and, for URLs and app modules, targets that exist.
- ``yaml`` blocks must be excerpts; ``examples/docker-compose.yml`` is checked structurally.
- ``<!-- test: diagram -->`` marks a plain or ``text`` block that is a picture: not checked.
- Any other block, or one of these without its treatment, fails: docs cannot rot silently.
"""

from __future__ import annotations

import ast
import asyncio
import configparser
import contextlib
import inspect
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, TypeGuard
from urllib.parse import urlsplit

import httpx
import pytest
import yaml

import grip_asgi
import grip_asgi._transport
import grip_asgi.client
import grip_asgi.events
import grip_asgi.fastapi
import grip_asgi.history
import grip_asgi.metrics
import grip_asgi.presence
import grip_asgi.pushpin
import grip_asgi.testing
import grip_asgi.zmq
import grip_django.metrics  # noqa: F401 (PUBLIC_MODULES finds it in sys.modules)
from grip_asgi import (
    GripConfig,
    GripContext,
    GripInstruct,
    GripSettings,
    Publisher,
    WebSocketContext,
)
from grip_asgi._cli import _parser as publish_command_parser
from grip_asgi._cli import main as grip_asgi_main
from grip_asgi._publish import SyncPublisher
from grip_asgi.pushpin import Pushpin
from grip_asgi.testing import (
    GripTestProxy,
    open_event,
    read_instruct,
    read_websocket_reply,
    text_event,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
DOC_FILES = sorted([REPO_ROOT / "README.md", *(REPO_ROOT / "docs").glob("*.md")])
#: What the docs tell readers to export: a local Pushpin with its stock ``sig_key``.
DOCS_GRIP_URL = "http://127.0.0.1:5561/?verify-iss=pushpin&verify-key=changeme"
DOCS_SIG_KEY = "changeme"
GRIP_ENVIRONMENT = (
    "GRIP_URL",
    "GRIP_PROXIES",
    "GRIP_VERIFY_KEY",
    "GRIP_PREFIX",
    "GRIP_PROXY_REQUIRED",
)
COMPOSE_FILE = REPO_ROOT / "examples" / "docker-compose.yml"
COMPOSE_PUSHPIN_CONF = REPO_ROOT / "examples" / "pushpin" / "pushpin.conf"
COMPOSE_ROUTES = REPO_ROOT / "examples" / "pushpin" / "routes"


# --- Reading the docs ------------------------------------------------------------------------


@dataclass
class Block:
    """One fenced code block of a Markdown file."""

    path: Path
    line: int  # of the opening fence, 1-based
    lang: str
    text: str
    test: list[str] = field(default_factory=list)  # the words of <!-- test: ... -->
    excerpt: str | None = None

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(REPO_ROOT)}:{self.line}"

    def option(self, name: str) -> list[str]:
        """The values of ``name=VALUE`` words in the test directive."""
        return [w.partition("=")[2] for w in self.test if w.startswith(name + "=")]

    @property
    def module_label(self) -> str | None:
        """``pkg.name`` when the block starts with a ``# pkg/name.py`` line."""
        first = self.text.split("\n", 1)[0].strip()
        match = re.fullmatch(r"#\s*([\w/]+)\.py", first)
        return match.group(1).replace("/", ".") if match else None


_FENCE = re.compile(r"^( {0,3})(`{3,}|~{3,})(.*)$")
_DIRECTIVE = re.compile(r"^<!--\s*(test|excerpt):\s*(.*?)\s*-->$")


def read_blocks(path: Path) -> list[Block]:
    lines = path.read_text(encoding="utf-8").split("\n")
    blocks = []
    index = 0
    while index < len(lines):
        match = _FENCE.match(lines[index])
        if match is None:
            index += 1
            continue
        indent, fence, info = match.groups()
        start = index
        body: list[str] = []
        index += 1
        while index < len(lines):
            closing = lines[index].strip()
            if closing.startswith(fence[0] * len(fence)) and not closing.strip(fence[0]):
                break
            line = lines[index]
            body.append(line[len(indent) :] if line.startswith(indent) else line)
            index += 1
        else:
            raise AssertionError(f"{path}:{start + 1}: unclosed code block")
        index += 1
        block = Block(path, start + 1, (info.split() or [""])[0], "\n".join(body) + "\n")
        above = start - 1
        while above >= 0 and (directive := _DIRECTIVE.match(lines[above].strip())):
            kind, value = directive.groups()
            if kind == "test":
                block.test = value.split() + block.test
            else:
                block.excerpt = value
            above -= 1
        blocks.append(block)
    return blocks


ALL_BLOCKS = [block for path in DOC_FILES for block in read_blocks(path)]


@dataclass
class Chain:
    """Python blocks that run one after the other, in one setup."""

    blocks: list[Block]
    modules: list[types.ModuleType] = field(default_factory=list)
    proxy: FakeProxy | None = None

    @property
    def where(self) -> str:
        return self.blocks[0].where

    @property
    def page(self) -> Path:
        return self.blocks[0].path

    def find(self, name: str) -> Any:
        """The last value the chain's modules give ``name``."""
        for module in reversed(self.modules):
            if name in vars(module):
                return vars(module)[name]
        raise AssertionError(f"{self.where}: the chain defines no {name!r}")


def python_chains() -> list[Chain]:
    chains: list[Chain] = []
    for block in ALL_BLOCKS:
        if block.lang != "python" or block.excerpt is not None:
            continue
        if "continue" in block.test:
            previous = [c for c in chains if c.page == block.path]
            assert previous, f"{block.where}: 'continue' needs a python block before it"
            previous[-1].blocks.append(block)
        else:
            chains.append(Chain([block]))
    return chains


# --- The fake proxy every publisher reaches ---------------------------------------------------


class FakeProxy:
    """Answers publishes like Pushpin's control API, after checking each one; records items."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.method != "POST" or not request.url.path.endswith("/publish/"):
            return httpx.Response(404, text="Not Found\n")
        try:
            items = json.loads(request.content)["items"]
        except (ValueError, KeyError, TypeError):
            return httpx.Response(400, text="Invalid JSON\n")
        for item in items:
            if not isinstance(item.get("channel"), str) or not item.get("formats"):
                return httpx.Response(400, text="Invalid item\n")
            unknown = set(item["formats"]) - {"http-response", "http-stream", "ws-message"}
            if unknown:
                return httpx.Response(400, text=f"Unknown formats {unknown}\n")
        self.items.extend(items)
        return httpx.Response(200, text="Published\n")

    def channels(self) -> list[str]:
        return [item["channel"] for item in self.items]


@contextlib.contextmanager
def base_context(
    chain: Chain, monkeypatch: pytest.MonkeyPatch, *, fake_proxy: bool
) -> Iterator[None]:
    monkeypatch.chdir(REPO_ROOT)
    for name in GRIP_ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GRIP_URL", DOCS_GRIP_URL)
    if fake_proxy:
        proxy = chain.proxy = FakeProxy()
        transport = httpx.MockTransport(proxy)
        monkeypatch.setattr(
            Publisher, "_new_client", lambda self: httpx.AsyncClient(transport=transport)
        )
        monkeypatch.setattr(
            SyncPublisher, "_new_client", lambda self: httpx.Client(transport=transport)
        )
        fake_client = httpx.AsyncClient(transport=transport)
        fake_sync_client = httpx.Client(transport=transport)

        async def post(url: str, headers: Any, body: bytes, timeout: httpx.Timeout) -> Any:
            return await fake_client.post(url, content=body, headers=headers)

        def post_blocking(url: str, headers: Any, body: bytes, timeout: httpx.Timeout) -> Any:
            return fake_sync_client.post(url, content=body, headers=headers)

        # Publishers without a client post to http:// proxies on their own connections.
        monkeypatch.setattr(grip_asgi._transport, "post", post)
        monkeypatch.setattr(grip_asgi._transport, "post_blocking", post_blocking)
    modules = dict(sys.modules)
    try:
        yield
    finally:
        # Forget the blocks' modules, and restore any module a labelled block replaced.
        for name, module in list(sys.modules.items()):
            if getattr(module, "__docs_block__", False):
                if name in modules:
                    sys.modules[name] = modules[name]
                else:
                    del sys.modules[name]


# --- Setups: what a chain needs around it -----------------------------------------------------

Setup = Callable[[Chain, pytest.MonkeyPatch], contextlib.AbstractContextManager[None]]


@contextlib.contextmanager
def django_project(chain: Chain, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Django configured as tests/djangoapp does, with the chain's urls module as ROOT_URLCONF.

    The urls module is the block labelled ``# .../urls.py``, else the chain's first module.
    """
    from django.test import override_settings
    from django.urls import clear_url_caches

    from tests.djangoapp import isolate_grip, setup_django

    setup_django()
    isolate_grip(monkeypatch)
    monkeypatch.setenv("GRIP_URL", DOCS_GRIP_URL)
    labels = [block.module_label for block in chain.blocks]
    urls = next((label for label in labels if label and label.endswith("urls")), None)
    urlconf = urls or module_name(chain, 0)
    clear_url_caches()
    try:
        with override_settings(ROOT_URLCONF=urlconf, GRIP_URL=DOCS_GRIP_URL):
            yield
    finally:
        clear_url_caches()
        isolate_grip(monkeypatch)


@contextlib.contextmanager
def django_settings(chain: Chain, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The chain is a settings module: after it, its GRIP settings must pass grip_django's
    system checks, and the apps and middleware it names must exist."""
    from django.core.checks import Error
    from django.test import override_settings
    from django.utils.module_loading import import_string

    from grip_django.checks import check_grip_settings
    from tests.djangoapp import isolate_grip, setup_django

    setup_django()
    isolate_grip(monkeypatch)
    yield
    settings = {name: value for module in chain.modules for name, value in vars(module).items()}
    if "INSTALLED_APPS" in settings:
        apps = [app for app in settings["INSTALLED_APPS"] if app is not Ellipsis]
        assert "grip_django" in apps, "INSTALLED_APPS must name grip_django"
    middleware = [name for name in settings.get("MIDDLEWARE", ()) if name is not Ellipsis]
    for name in middleware:
        import_string(name)
    grip = {name: value for name, value in settings.items() if name.startswith("GRIP_")}
    assert grip or "INSTALLED_APPS" in settings, "a settings block with nothing to check"
    with override_settings(**grip, **({"MIDDLEWARE": middleware} if middleware else {})):
        try:
            errors = [m for m in check_grip_settings() if isinstance(m, Error)]
        finally:
            isolate_grip(monkeypatch)
    assert not errors, errors


@contextlib.contextmanager
def fastly_environment(chain: Chain, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The environment a Fastly deployment has (made-up service id and token)."""
    monkeypatch.setenv("FASTLY_SERVICE_ID", "SU1Z0isxPaozGVKXdv0eY")
    monkeypatch.setenv("FASTLY_API_TOKEN", "made-up-token")
    yield


@contextlib.contextmanager
def real_pushpin(chain: Chain, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A block that starts its own Pushpin: the same rules as tests/e2e."""
    if os.environ.get("GRIP_SKIP_E2E") == "1":
        pytest.skip("GRIP_SKIP_E2E=1: end-to-end tests skipped")
    if shutil.which("pushpin") is None:
        pytest.fail("pushpin is not installed: run scripts/install-pushpin", pytrace=False)
    yield


SETUPS: dict[str, Setup] = {
    "django": django_project,
    "django-settings": django_settings,
    "fastly": fastly_environment,
    "pushpin": real_pushpin,
}
SETUP_MARKS = {"pushpin": [pytest.mark.e2e]}


# --- Checks: what a chain's app must do, beyond what the page shows ---------------------------

proxy = GripTestProxy(key=DOCS_SIG_KEY)


class AppClient:
    """Requests to the chain's app: its ASGI ``app`` if it defines one, else Django."""

    def __init__(self, chain: Chain) -> None:
        try:
            app = chain.find("app")
        except AssertionError:
            from django.test import Client

            self.client: Any = Client()
            self.django = True
        else:
            from starlette.testclient import TestClient

            self.client = TestClient(app)
            self.django = False

    def get(self, path: str) -> Any:
        return self.client.get(path, headers=proxy.headers())

    def websocket(self, path: str, *events: Any) -> Any:
        request = proxy.websocket(*events)
        if self.django:
            return self.client.generic("POST", path, request.content, headers=request.headers)
        return self.client.post(path, **request.kwargs())


def check_stream(chain: Chain) -> None:
    instruct = read_instruct(AppClient(chain).get("/stream/news"))
    assert (instruct.status, instruct.hold, instruct.channel_names) == (200, "stream", ["news"])


def check_sse(chain: Chain) -> None:
    response = AppClient(chain).get("/sse/news")
    instruct = read_instruct(response)
    assert (instruct.hold, instruct.channel_names) == ("stream", ["news"])
    assert instruct.keep_alive is not None
    assert response.headers["content-type"].startswith("text/event-stream")


def check_longpoll(chain: Chain) -> None:
    instruct = read_instruct(AppClient(chain).get("/poll/news"))
    assert (instruct.hold, instruct.channel_names) == ("response", ["news"])
    assert instruct.timeout is not None


def check_echo(chain: Chain) -> None:
    reply = read_websocket_reply(
        AppClient(chain).websocket("/echo", open_event(), text_event("hi"))
    )
    assert reply.accepted and reply.messages == ["hi"]


def check_chat(chain: Chain) -> None:
    client = AppClient(chain)
    opened = read_websocket_reply(client.websocket("/chat/lobby", open_event()))
    assert opened.accepted and opened.subscriptions == ["lobby"]
    read_websocket_reply(client.websocket("/chat/lobby", text_event("hi all")))
    assert chain.proxy is not None
    assert chain.proxy.channels() == ["lobby"], "a chat message is published to its room"


CHECKS: dict[str, Callable[[Chain], None]] = {
    "stream": check_stream,
    "sse": check_sse,
    "longpoll": check_longpoll,
    "echo": check_echo,
    "chat": check_chat,
}


# --- Running python blocks --------------------------------------------------------------------


def module_name(chain: Chain, index: int) -> str:
    block = chain.blocks[index]
    return block.module_label or f"docs_{block.path.stem.replace('-', '_')}_{block.line}"


def new_module(name: str) -> types.ModuleType:
    """A fresh module registered as ``name``, its packages created as needed."""
    module = types.ModuleType(name)
    module.__docs_block__ = True  # type: ignore[attr-defined]
    package, _, leaf = name.rpartition(".")
    if package:
        parent = sys.modules.get(package) or new_module(package)
        assert getattr(parent, "__docs_block__", False), f"# {name}: {package} is a real package"
        parent.__path__ = []
        setattr(parent, leaf, module)
        module.__package__ = package
    sys.modules[name] = module
    return module


def run_block(block: Block, module: types.ModuleType) -> None:
    # Blank lines in front, so tracebacks give the line numbers of the Markdown file.
    source = "\n" * block.line + block.text
    code = compile(source, str(block.path), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    result = eval(code, vars(module))
    if inspect.iscoroutine(result):
        asyncio.run(result)


def run_chain(chain: Chain) -> None:
    for index, block in enumerate(chain.blocks):
        if index == 0 or block.module_label:
            chain.modules.append(new_module(module_name(chain, index)))
        run_block(block, chain.modules[-1])
        for name in block.option("check"):
            CHECKS[name](chain)
    for module in chain.modules:
        for name, value in list(vars(module).items()):
            if name.startswith("test_") and inspect.isfunction(value):
                if value.__module__ != module.__name__:
                    continue  # imported from another block
                result = value()
                if inspect.iscoroutine(result):
                    asyncio.run(result)


def chain_param(chain: Chain) -> Any:
    words = [word for block in chain.blocks for word in block.test]
    setups = [w.partition("=")[2] for w in words if w.startswith("setup=")]
    marks = [mark for name in setups for mark in SETUP_MARKS.get(name, [])]
    return pytest.param(chain, id=chain.where, marks=marks)


@pytest.mark.parametrize("chain", [chain_param(chain) for chain in python_chains()])
def test_python_chain(chain: Chain, monkeypatch: pytest.MonkeyPatch) -> None:
    first = chain.blocks[0]
    for block in chain.blocks:
        unknown = [
            w
            for w in block.test
            if w != "continue" and w.partition("=")[0] not in ("setup", "check")
        ]
        assert not unknown, f"{block.where}: unknown test directive words {unknown}"
        if block is not first:
            assert not block.option("setup"), f"{block.where}: setup= belongs on the first block"
    setups = first.option("setup")
    for name in setups:
        assert name in SETUPS, f"{first.where}: no setup {name!r}; known: {sorted(SETUPS)}"
    checks = [name for block in chain.blocks for name in block.option("check")]
    for name in checks:
        assert name in CHECKS, f"{first.where}: no check {name!r}; known: {sorted(CHECKS)}"
    # A chain that runs its own Pushpin publishes to it; every other one to a fake.
    fake_proxy = "pushpin" not in setups
    with base_context(chain, monkeypatch, fake_proxy=fake_proxy), contextlib.ExitStack() as stack:
        for name in setups:
            stack.enter_context(SETUPS[name](chain, monkeypatch))
        run_chain(chain)


# --- Excerpts ---------------------------------------------------------------------------------


def _normalised(line: str) -> str:
    return " ".join(line.split())


def check_excerpt(block: Block) -> None:
    assert block.excerpt is not None
    source = REPO_ROOT / block.excerpt
    assert source.is_file(), f"{block.where}: excerpt of {block.excerpt}, which does not exist"
    lines = [_normalised(line) for line in source.read_text(encoding="utf-8").splitlines()]
    position = 0
    for wanted in filter(None, map(_normalised, block.text.splitlines())):
        if wanted == "...":
            continue
        try:
            position = lines.index(wanted, position) + 1
        except ValueError:
            raise AssertionError(
                f"{block.where}: {wanted!r} is not in {block.excerpt} (after line {position})"
            ) from None


# --- Pushpin configuration snippets -----------------------------------------------------------

_PLACEHOLDER = re.compile(r"<[^<>]+>")


def rendered_pushpin_config(**options: Any) -> configparser.ConfigParser:
    """The pushpin.conf ``Pushpin(**options)`` writes, parsed."""
    config = configparser.ConfigParser(interpolation=None)
    config.read_string(Pushpin(**options)._render_config("/tmp/run"))
    return config


def pushpin_ini(text: str) -> configparser.ConfigParser:
    config = configparser.ConfigParser(interpolation=None)
    config.read_string(text)
    for section in config.sections():
        for key, value in config.items(section):
            # Pushpin's ini reader (QSettings) has no end-of-line comments: they would end up
            # in the value, e.g. in a key.
            assert " #" not in value and ";" not in value, f"[{section}] {key}: a comment?"
    return config


def ini_value(config: configparser.ConfigParser, section: str, key: str) -> str:
    value = config.get(section, key)
    # Pushpin (QSettings) reads "..." as a quoted string.
    return value[1:-1] if len(value) >= 2 and value[0] == value[-1] == '"' else value


#: The ``Pushpin()`` arguments that are ``[proxy]`` keys of the same name.
PUSHPIN_KEY_OPTIONS = ("sig_iss", "sig_key", "upstream_key")


def check_pushpin_conf(block: Block) -> None:
    """Each key is one Pushpin reads (one that Pushpin() writes, or one of the complete example
    config); a value that is not a <placeholder> is what Pushpin() writes for that option."""
    snippet = pushpin_ini(block.text)
    written = rendered_pushpin_config()
    complete = pushpin_ini(COMPOSE_PUSHPIN_CONF.read_text())
    for section in snippet.sections():
        for key in snippet.options(section):
            known = written.has_option(section, key) or complete.has_option(section, key)
            assert known, f"{block.where}: Pushpin has no [{section}] {key}"
            value = ini_value(snippet, section, key)
            if key in PUSHPIN_KEY_OPTIONS and not _PLACEHOLDER.fullmatch(value):
                same = rendered_pushpin_config(**{key: value})
                assert ini_value(same, section, key) == value, f"{block.where}: {key}"


ROUTE_OPTIONS = {"over_http", "ssl", "insecure", "sockjs", "no_grip", "session", "as_host"}


def check_pushpin_routes(block: Block) -> None:
    """Each route's targets are ``host:port`` with known options, the same for all; the
    catch-all route is what ``Pushpin(backends=..., route_options=...)`` writes."""
    for line in block.text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        condition, *targets = line.split()
        assert targets, f"{block.where}: a route needs a target: {line!r}"
        hosts = [target.partition(",")[0] for target in targets]
        [options] = {target.partition(",")[2] for target in targets}
        for host in hosts:
            name, _, port = host.rpartition(":")
            assert name and port.isdigit(), f"{block.where}: {host!r} is not host:port"
        for option in filter(None, options.split(",")):
            assert option.partition("=")[0] in ROUTE_OPTIONS, f"unknown option {option!r}"
        if condition == "*":
            routes = Pushpin(backends=hosts, route_options=options)._render_routes()
            assert routes.splitlines()[-1] == line, f"{block.where}: {line!r}"


# --- Shell commands ---------------------------------------------------------------------------


def commands(block: Block) -> list[str]:
    """The commands of a shell block, or the ``$ `` lines of a ``console`` block.

    A command goes on over a line ending in ``\\`` or inside an open quote.
    """
    found: list[str] = []
    pending = ""
    for raw in block.text.splitlines():
        line = raw.rstrip()
        if block.lang == "console" and not pending:
            if not line.startswith("$ "):
                continue  # output
            line = line[2:]
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        pending += line
        try:
            shlex.split(pending, comments=True)
        except ValueError:  # an open quote
            pending += "\n"
            continue
        found.append(pending)
        pending = ""
    assert not pending, f"{block.where}: unfinished command {pending!r}"
    return [command for command in found if shlex.split(command, comments=True)]


@cache
def project_extras() -> dict[str, list[str]]:
    """``[project.optional-dependencies]`` of pyproject.toml: extra → requirement names."""
    with (REPO_ROOT / "pyproject.toml").open("rb") as file:
        optional = tomllib.load(file)["project"]["optional-dependencies"]
    return {
        extra: [re.split(r"[<>=\[ ]", req, maxsplit=1)[0] for req in requirements]
        for extra, requirements in optional.items()
    }


def check_pip(args: list[str], where: str) -> None:
    assert args[:1] == ["install"], f"{where}: only 'pip install' is documented"
    for spec in (arg for arg in args[1:] if not arg.startswith("-")):
        name, _, extras = spec.partition("[")
        if name in ("grip-asgi", "."):
            for extra in filter(None, extras.rstrip("]").split(",")):
                assert extra in project_extras(), f"{where}: no extra [{extra}] in pyproject"
        else:
            dev = project_extras()["dev"]
            assert name in dev, f"{where}: {name} is not one of the project's dev requirements"


@cache
def importable(target: str) -> str | None:
    """Import ``module:attribute`` in a fresh interpreter as a server would; None, or why not."""
    module, _, attribute = target.partition(":")
    code = "import importlib, sys; getattr(importlib.import_module(sys.argv[1]), sys.argv[2])"
    env = {k: v for k, v in os.environ.items() if k not in GRIP_ENVIRONMENT}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    env["GRIP_URL"] = DOCS_GRIP_URL
    done = subprocess.run(
        [sys.executable, "-c", code, module, attribute or "app"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return None if done.returncode == 0 else (done.stderr.strip().splitlines() or ["?"])[-1]


def check_app_target(target: str, block: Block) -> None:
    """An ASGI/WSGI app given to a server: an example module, or one the page defines."""
    module, _, attribute = target.partition(":")
    if not module.startswith("examples."):
        pages = [b for b in read_blocks(block.path) if b.lang == "python"]
        labelled = [b for b in pages if b.module_label == module]
        assert labelled, f"{block.where}: no block of this page is labelled '# {module}.py'"
        assert re.search(rf"^{attribute} = ", labelled[0].text, re.MULTILINE), attribute
        return
    problem = importable(target)
    assert problem is None, f"{block.where}: {target} does not import: {problem}"


@cache
def example_app() -> Any:
    from examples.fastapi_app import app

    return app


def check_route(url: str, method: str, where: str) -> None:
    """A URL the docs send requests to: a route of the example app (through Pushpin on 7999),
    or a GRIP publish endpoint."""
    from starlette.routing import Match

    parts = urlsplit(url)
    if parts.path.endswith("/publish/"):
        return
    assert parts.port == 7999, f"{where}: {url} is neither the proxy (port 7999) nor /publish/"
    scope = {"type": "http", "path": parts.path, "method": method, "root_path": ""}
    matches = [route.matches(scope)[0] for route in example_app().routes]
    assert Match.FULL in matches, f"{where}: {method} {parts.path} is no route of the example app"


class _ArgumentsAccepted(Exception):
    """Raised where a command would start working: its arguments parsed."""


def _accepted(*args: Any, **kwargs: Any) -> Any:
    raise _ArgumentsAccepted


def check_demo(args: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import examples.demo

    monkeypatch.setattr(examples.demo, "Pushpin", _accepted)
    with pytest.raises(_ArgumentsAccepted):
        examples.demo.main(args)


def check_pushpin_command(args: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(grip_asgi.pushpin, "Pushpin", _accepted)
    with pytest.raises(_ArgumentsAccepted):
        grip_asgi.pushpin.main(args)


def check_grip_asgi_command(args: list[str], where: str) -> None:
    """``grip-asgi publish|check ...``: the options parse, and a check of files that exist
    runs (what it finds is the reader's business; a usage error, exit 2, is the page's)."""
    parsed = publish_command_parser().parse_args(args)
    if parsed.command == "check" and Path(parsed.config).is_file():
        code = grip_asgi_main(args)
        assert code in (0, 1), f"{where}: grip-asgi {' '.join(args)} exited {code}"


def check_python(args: list[str], block: Block, monkeypatch: pytest.MonkeyPatch) -> None:
    where = block.where
    if args[:1] == ["-c"]:
        done = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, f"{where}: {done.stderr}"
        return
    assert args[:1] == ["-m"], f"{where}: run Python with -m MODULE or -c CODE"
    module, rest = args[1], args[2:]
    if module == "grip_asgi":
        check_grip_asgi_command(rest, where)
    elif module == "grip_asgi.pushpin":
        check_pushpin_command(rest, monkeypatch)
    elif module == "examples.demo":
        check_demo(rest, monkeypatch)
    elif module in ("uvicorn", "gunicorn"):
        check_command([module, *rest], block, monkeypatch)
    elif module == "pip":
        check_pip(rest, where)
    elif module == "websockets":
        check_route(rest[-1], "POST", where)
    elif module == "pytest":
        pass
    else:
        raise AssertionError(f"{where}: no check for 'python -m {module}'")


def check_command(argv: list[str], block: Block, monkeypatch: pytest.MonkeyPatch) -> None:
    where = block.where
    while argv and re.fullmatch(r"[A-Z_]+=.*", argv[0], re.DOTALL):
        name, _, value = argv.pop(0).partition("=")
        if name in GRIP_ENVIRONMENT:
            GripSettings.from_env({name: value})
    if argv[:1] == ["sudo"]:
        argv = argv[1:]
    assert argv, f"{where}: an empty command"
    program, args = argv[0], argv[1:]
    if program.startswith("./scripts/"):
        script = REPO_ROOT / program
        assert script.is_file() and os.access(script, os.X_OK), f"{where}: {program}"
        if program == "./scripts/demo":
            check_demo(args, monkeypatch)
    elif program in ("python", "python3", ".venv/bin/python"):
        check_python(args, block, monkeypatch)
    elif program == "grip-asgi":
        assert 'grip-asgi = "grip_asgi._cli:main"' in (REPO_ROOT / "pyproject.toml").read_text()
        check_grip_asgi_command(args, where)
    elif program == "pip":
        check_pip(args, where)
    elif program == "uvicorn":
        from uvicorn.main import main as uvicorn_command

        context = uvicorn_command.make_context("uvicorn", list(args))
        check_app_target(context.params["app"], block)
    elif program == "gunicorn":
        from gunicorn.config import Config  # type: ignore[import-untyped]

        [target] = Config().parser().parse_args(args).args
        check_app_target(target, block)
    elif program == "curl":
        urls = [arg for arg in args if arg.startswith(("http://", "https://"))]
        assert len(urls) == 1, f"{where}: curl one URL"
        posts = {"-d", "--data", "--data-binary"} & set(args) or "POST" in args
        check_route(urls[0], "POST" if posts else "GET", where)
    elif program == "export":
        for assignment in args:
            name, _, value = assignment.partition("=")
            assert re.fullmatch(r"[A-Z_]+", name) and value, f"{where}: {assignment!r}"
            if name in GRIP_ENVIRONMENT:
                GripSettings.from_env({name: value})
    elif program == "docker":
        assert args[:1] == ["compose"] and "-f" in args, f"{where}: docker compose -f FILE ..."
        compose_file = REPO_ROOT / args[args.index("-f") + 1]
        assert compose_file == COMPOSE_FILE, f"{where}: use {COMPOSE_FILE.name}"
        assert set(args[args.index("-f") + 2 :]) <= {"up", "down", "logs", "-d", "--build"}
    elif program == "apt-get":
        assert args == ["install", "pushpin"], f"{where}: only 'apt-get install pushpin'"
    elif program == "systemctl":
        assert args[1:] == ["pushpin"] and args[0] in ("restart", "reload", "status"), where
    else:
        raise AssertionError(f"{where}: no check for the command {program!r}")


def check_shell(block: Block, monkeypatch: pytest.MonkeyPatch) -> None:
    found = commands(block)
    assert found, f"{block.where}: no command in the block"
    monkeypatch.chdir(REPO_ROOT)
    for command in found:
        words = shlex.split(command, comments=True)
        # A pipeline: each command on its own (``echo`` only feeds the next one).
        while "|" in words:
            head, words = words[: words.index("|")], words[words.index("|") + 1 :]
            assert head[:1] == ["echo"], f"{block.where}: only echo may feed a pipe"
        check_command(words, block, monkeypatch)


SHELLS = ("sh", "shell", "bash", "console")


# --- Every other block ------------------------------------------------------------------------


def other_blocks() -> list[Block]:
    return [block for block in ALL_BLOCKS if block.lang != "python" or block.excerpt is not None]


@pytest.mark.parametrize("block", [pytest.param(b, id=b.where) for b in other_blocks()])
def test_block(block: Block, monkeypatch: pytest.MonkeyPatch) -> None:
    if block.excerpt is not None:
        assert not block.test, f"{block.where}: an excerpt needs no test directive"
        check_excerpt(block)
    elif block.test == ["pushpin-conf"] and block.lang == "ini":
        check_pushpin_conf(block)
    elif block.test == ["pushpin-routes"]:
        check_pushpin_routes(block)
    elif block.lang in SHELLS and not block.test:
        check_shell(block, monkeypatch)
    elif block.test == ["diagram"] and block.lang in ("", "text"):
        pass  # a picture, marked as one: nothing to run
    else:
        raise AssertionError(
            f"{block.where}: a {block.lang or 'plain'} block with no test treatment"
            f" (directive {block.test}); see tests/test_docs.py or docs/contributing.md"
        )


# --- The pages as a whole ---------------------------------------------------------------------


def prose(path: Path) -> str:
    """A page without its code blocks and inline code."""
    text = path.read_text(encoding="utf-8")
    text = re.sub(r"^ {0,3}(`{3,}|~{3,}).*?^ {0,3}\1[^\n]*$", "", text, flags=re.S | re.M)
    return re.sub(r"`[^`\n]*`", "", text)


def anchors(path: Path) -> set[str]:
    """GitHub's anchors for the headings of a page."""
    found = set()
    for heading in re.findall(r"^#{1,6} (.+)$", prose_with_code_spans(path), re.MULTILINE):
        text = heading.replace("`", "").strip().lower()
        found.add(re.sub(r"[^\w\- ]", "", text).replace(" ", "-"))
    return found


def prose_with_code_spans(path: Path) -> str:
    text = path.read_text(encoding="utf-8")
    return re.sub(r"^ {0,3}(`{3,}|~{3,}).*?^ {0,3}\1[^\n]*$", "", text, flags=re.S | re.M)


@pytest.mark.parametrize("path", DOC_FILES, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_links_resolve(path: Path) -> None:
    for target in re.findall(r"\]\(([^)\s]+)\)", prose(path)):
        if re.match(r"[a-z]+:", target):
            continue  # https:, mailto:
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        assert linked.exists(), f"{path.name}: link to {target}, which does not exist"
        if anchor and linked.suffix == ".md":
            assert anchor in anchors(linked), f"{path.name}: no #{anchor} in {linked.name}"


def test_readme_quick_start_is_two_commands() -> None:
    readme = REPO_ROOT / "README.md"
    section = readme.read_text().split("\n## Quick start\n", 1)[1].split("\n## ")[0]
    [block] = [b for b in read_blocks(readme) if b.text.strip() in section]
    found = [shlex.split(command, comments=True) for command in commands(block)]
    assert found == [["./scripts/demo"], ["./scripts/test"]]


PUBLIC_MODULES = (
    "grip_asgi",
    "grip_asgi.fastapi",
    "grip_asgi.events",
    "grip_asgi.history",
    "grip_asgi.presence",
    "grip_asgi.client",
    "grip_asgi.zmq",
    "grip_asgi.testing",
    "grip_asgi.pushpin",
    "grip_asgi.metrics",
    "grip_django.metrics",
)


def test_api_reference_lists_exactly_the_public_names() -> None:
    import grip_django

    modules: dict[str, Any] = {name: sys.modules[name] for name in PUBLIC_MODULES}
    modules["grip_django"] = grip_django
    text = (REPO_ROOT / "docs" / "api.md").read_text()
    sections = re.split(r"^## `([\w.]+)`$", text, flags=re.MULTILINE)[1:]
    listed = {name: body for name, body in zip(sections[::2], sections[1::2], strict=True)}
    assert sorted(listed) == sorted(modules), "one ## section per public module"
    for name, body in listed.items():
        names = re.findall(r"^- `(\w+)`: ", body, re.MULTILINE)
        assert len(names) == len(set(names)), f"{name}: a name is listed twice"
        assert sorted(names) == sorted(modules[name].__all__), name


# --- docs/migrating.md: the new API in its tables must exist ----------------------------------


@dataclass(frozen=True)
class Instance:
    """A value known only by its type(s): ``publisher`` may be either publisher."""

    types: tuple[type, ...]


#: What the tables' variable names stand for (the page says so above its tables).
RECEIVERS: dict[str, Instance] = {
    "publisher": Instance((Publisher, SyncPublisher)),
    "grip": Instance((GripContext,)),
    "request.grip": Instance((GripContext,)),
    "request.state.grip": Instance((GripContext,)),
    "ws": Instance((WebSocketContext,)),
    "grip.ws": Instance((WebSocketContext,)),
    "request.grip.ws": Instance((WebSocketContext,)),
    "request.wscontext": Instance((WebSocketContext,)),
    "instruct": Instance((GripInstruct,)),
    "config": Instance((GripConfig,)),
}


class Unknown:
    """A placeholder (``channel``, ``formats``) or a value the check cannot follow."""


def api_names() -> dict[str, list[Any]]:
    import grip_django

    names: dict[str, list[Any]] = {}
    for module in (*(sys.modules[name] for name in PUBLIC_MODULES), grip_django):
        for name in module.__all__:
            names.setdefault(name, []).append(getattr(module, name))
    names["grip_asgi"] = [grip_asgi]
    names["grip_django"] = [grip_django]
    return names


def has_attribute(kind: type, name: str) -> bool:
    if hasattr(kind, name) or name in getattr(kind, "__dataclass_fields__", {}):
        return True
    init = getattr(kind, "__init__", None)
    code = getattr(init, "__code__", None)
    return code is not None and name in code.co_names  # set on self in __init__


def _is_dotted_path(value: object) -> TypeGuard[str]:
    """``"grip_django.middleware.GripMiddleware"``, as written in settings."""
    return isinstance(value, str) and bool(re.fullmatch(r"grip_(asgi|django)(\.\w+)+", value))


class ApiResolver:
    """Resolves the names and calls of a code span; raises AssertionError for a wrong one."""

    def __init__(self, span: str) -> None:
        self.span = span
        self.names = api_names()

    def fail(self, problem: str) -> AssertionError:
        return AssertionError(f"migrating.md: `{self.span}`: {problem}")

    def check(self) -> None:
        if re.fullmatch(r"[A-Z][a-z]+(-[A-Z][a-z]+)+", self.span):
            return  # an HTTP header name, such as Grip-Sig
        tree = self.parse()
        for node in ast.walk(tree):
            if isinstance(node, ast.Name):
                self.name(node.id)
            elif isinstance(node, (ast.Call, ast.Attribute)):
                if not getattr(node, "_seen", False):
                    self.resolve(node)
            elif isinstance(node, ast.Constant) and _is_dotted_path(node.value):
                self.dotted(node.value)

    def name(self, name: str) -> None:
        """A class-like or ``grip_*`` name must be real; lowercase names are placeholders."""
        known = name in self.names or name in dir(__builtins__)
        if re.match(r"[A-Z][a-z]|grip_", name) and not known:
            raise self.fail(f"{name} is not a public name of grip_asgi or grip_django")

    def parse(self) -> ast.AST:
        inside = "async def _():\n    " + self.span
        for source in (self.span, inside, inside + ":\n        pass"):
            try:
                return ast.parse(source)
            except SyntaxError:
                continue
        raise self.fail("not Python")

    def dotted(self, path: str) -> Any:
        import importlib

        parts = path.split(".")
        value: Any = importlib.import_module(parts[0])
        for index, part in enumerate(parts[1:], start=1):
            if not hasattr(value, part):
                importlib.import_module(".".join(parts[: index + 1]))
            value = getattr(value, part)
        return value

    def resolve(self, node: ast.AST) -> list[Any]:
        """The possible values of ``node``; an empty list means unknown."""
        node._seen = True  # type: ignore[attr-defined]
        text = ast.unparse(node)
        if text in RECEIVERS:
            return [RECEIVERS[text]]
        if isinstance(node, ast.Name):
            return self.names.get(node.id, [])
        if isinstance(node, ast.Attribute):
            values = self.resolve(node.value)
            found = [v for v in values if self.attribute(v, node.attr) is not None]
            if values and not found:
                raise self.fail(f"no attribute {node.attr!r} on {ast.unparse(node.value)}")
            return [self.attribute(v, node.attr) for v in found]
        if isinstance(node, ast.Call):
            return self.call(node)
        return []

    def attribute(self, value: Any, name: str) -> Any:
        if isinstance(value, Instance):
            for kind in value.types:
                if has_attribute(kind, name):
                    member = getattr(kind, name, None)
                    return ("method", member) if callable(member) else Unknown()
            return None
        if isinstance(value, types.ModuleType):
            try:
                return self.dotted(f"{value.__name__}.{name}")
            except (ImportError, AttributeError):
                return None
        return getattr(value, name, None) if not isinstance(value, Unknown) else Unknown()

    def call(self, node: ast.Call) -> list[Any]:
        if isinstance(node.func, ast.Name) and node.func.id not in self.names:
            if node.func.id not in dir(__builtins__):
                raise self.fail(
                    f"{node.func.id}() is not a public name of grip_asgi or grip_django"
                )
            return []
        candidates = self.resolve(node.func)
        if not candidates:
            return []
        args = [None] * len(node.args)
        kwargs = {k.arg: None for k in node.keywords if k.arg is not None}
        results = []
        errors = []
        for candidate in candidates:
            target = candidate[1] if isinstance(candidate, tuple) else candidate
            if isinstance(target, Unknown):
                return []
            bound_args = [None, *args] if isinstance(candidate, tuple) else args  # self
            try:
                inspect.signature(target).bind_partial(*bound_args, **kwargs)
            except TypeError as exc:
                errors.append(f"{ast.unparse(node.func)}: {exc}")
                continue
            results.append(Instance((target,)) if inspect.isclass(target) else Unknown())
        if not results:
            raise self.fail("; ".join(errors))
        return [r for r in results if isinstance(r, Instance)]


def migration_spans() -> list[str]:
    """The code spans of the last column of every table row in docs/migrating.md."""
    spans = []
    for line in (REPO_ROOT / "docs" / "migrating.md").read_text().splitlines():
        if not line.startswith("|") or re.fullmatch(r"[|\s:-]+", line):
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split(" | ")]
        if cells[-1] in ("grip-asgi", "grip_django"):
            continue  # a header row
        spans += re.findall(r"`([^`]+)`", cells[-1])
    return spans


def test_migration_tables_name_the_real_api() -> None:
    spans = migration_spans()
    assert len(spans) > 50
    for span in spans:
        ApiResolver(span).check()


@pytest.mark.parametrize(
    "span",
    [
        "publisher.publish_strem(channel, data)",
        "SyncPublisher(config).publish(channel, formats, ids=1)",
        "grip_django.set_hold_stream(request, channels, data, timeout, extra)",
        "grip_asgi.Publishr",
        '"grip_django.middleware.GripMiddlewar"',
        "request.grip.is_proxy",
        "WebSocketContext(id, meta, in_events, prefix, extra)",
        "set_hold_stream_now(request)",
        "SyncPublsher",
        "ws: GripWebsocket",
    ],
)
def test_migration_check_catches_a_wrong_name(span: str) -> None:
    with pytest.raises((AssertionError, AttributeError, ImportError)):
        ApiResolver(span).check()


# --- examples/docker-compose.yml and its Pushpin configuration --------------------------------


def test_compose_file_runs_the_example_behind_the_official_image() -> None:
    compose = yaml.safe_load(COMPOSE_FILE.read_text())
    services = compose["services"]
    assert set(services) == {"pushpin", "app"}
    pushpin, app = services["pushpin"], services["app"]
    assert re.fullmatch(r"fanout/pushpin:\d+\.\d+\.\d+(-\d+)?", pushpin["image"])

    mounts = {}
    for volume in pushpin["volumes"]:
        source, target, mode = volume.split(":")
        assert (COMPOSE_FILE.parent / source).is_file() and mode == "ro", volume
        mounts[target] = (COMPOSE_FILE.parent / source).resolve()
    assert mounts == {
        "/etc/pushpin/pushpin.conf": COMPOSE_PUSHPIN_CONF,
        "/etc/pushpin/routes": COMPOSE_ROUTES,
    }
    config = pushpin_ini(COMPOSE_PUSHPIN_CONF.read_text())
    published = {port.rsplit(":", 2)[-1] for port in pushpin["ports"]}
    assert published == {
        config.get("runner", "http_port"),
        config.get("handler", "push_in_http_port"),
    }

    # The app: the FastAPI example, on the port the route names.
    command = " ".join(app["command"])
    server = re.search(r"exec uvicorn (\S+) .*--port (\d+)", command)
    assert server is not None, command
    target, port = server.groups()
    assert importable(target) is None
    [route] = [
        line for line in COMPOSE_ROUTES.read_text().splitlines() if line[:1] not in ("#", "")
    ]
    assert route == f"* app:{port},over_http"
    assert "--host 0.0.0.0" in command  # reachable from the pushpin container

    # Its GRIP_URL: Pushpin's publish port and signing key, by service name.
    grip = GripConfig.from_uri(app["environment"]["GRIP_URL"])
    parts = urlsplit(grip.control_uri)
    assert (parts.hostname, str(parts.port)) == (
        "pushpin",
        config.get("handler", "push_in_http_port"),
    )
    assert grip.verify_iss == ini_value(config, "proxy", "sig_iss")
    assert grip.verify_key == ini_value(config, "proxy", "sig_key")


def test_compose_pushpin_config_is_complete_and_safe() -> None:
    config = pushpin_ini(COMPOSE_PUSHPIN_CONF.read_text())
    # Everything our own Pushpin() writes is set here too (bar the zurl sockets of Pushpin
    # 1.36, which 1.41 does not run) ...
    written = rendered_pushpin_config()
    for section in written.sections():
        for key in written.options(section):
            assert config.has_option(section, key) or key.startswith("zurl_"), (section, key)
    # ... with the settings a deployment needs.
    sig_key = ini_value(config, "proxy", "sig_key")
    upstream_key = ini_value(config, "proxy", "upstream_key")
    assert len(sig_key) >= 16 and len(upstream_key) >= 16 and sig_key != upstream_key
    assert config.get("handler", "push_in_http_addr") == "0.0.0.0"
    assert int(config.get("handler", "id_cache_ttl")) > 0  # retried publishes are dropped
    assert config.get("proxy", "updates_check") == "off"
    assert {"proxy", "handler"} <= set(config.get("runner", "services").split(","))


# --- Examples the docs quote that no other test runs ------------------------------------------


def test_starlette_example_echoes_and_holds(monkeypatch: pytest.MonkeyPatch) -> None:
    from starlette.testclient import TestClient

    monkeypatch.setenv("GRIP_URL", DOCS_GRIP_URL)
    from examples.starlette_app import app

    client = TestClient(app)
    instruct = read_instruct(client.get("/stream/news", headers=proxy.headers()))
    assert (instruct.hold, instruct.channel_names) == ("stream", ["news"])
    assert client.get("/stream/news").status_code == 501
    request = proxy.websocket(open_event(), text_event("hi"))
    reply = read_websocket_reply(client.post("/echo", **request.kwargs()))
    assert reply.accepted and reply.messages == ["hi"]
