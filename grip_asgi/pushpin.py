"""Run a private Pushpin on loopback for tests and local development.

:class:`Pushpin` starts the ``pushpin`` executable (Pushpin 1.36 or later, e.g. Debian's
``apt-get install pushpin``) with its own config, zurl, ZeroMQ sockets and logs in a fresh
temporary directory. It listens only on 127.0.0.1, so several can run side by side::

    with Pushpin("127.0.0.1:8000") as pushpin:
        os.environ["GRIP_URL"] = pushpin.grip_url  # for the app behind it
        httpx.get(pushpin.http_url + "/")          # a client going through Pushpin

From a shell, ``python -m grip_asgi.pushpin --backend 127.0.0.1:8000`` runs one in the
foreground until Ctrl-C and prints the URLs and the ``GRIP_URL`` to use.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from string import Template
from types import TracebackType
from urllib.parse import quote, urlencode

__all__ = ("Pushpin", "main")

_LOOPBACK = "127.0.0.1"
# A route to Pushpin's built-in "test" target: the readiness probe never reaches the backend.
_READY_HOST = "pushpin-ready.invalid"
# The ZeroMQ ipc sockets live in the run dir; a unix socket path has at most 107 bytes and the
# longest socket name is "/pushpin-condure-out-stream".
_MAX_RUN_DIR = 75
_STOP_GRACE = 5.0
_LOG_TAIL_LINES = 30

_CONFIG = Template("""\
[global]
include={libdir}/internal.conf
rundir=${run_dir}
ipc_prefix=pushpin-

[runner]
# Debian's stock config expects a system-wide zurl service: run our own instead
services=condure,zurl,pushpin-proxy,pushpin-handler
http_port=${http_address}
logdir=${run_dir}/log
log_level=${log_level}
# condure 1.9.1 panics when a publish fans out to ~90% of this many clients
client_maxconn=${client_maxconn}

[proxy]
routesfile=routes
# error responses say why, e.g. which backend could not be reached
debug=true
sig_iss=${sig_iss}
sig_key=${sig_key}
upstream_key=${upstream_key}
updates_check=off
zurl_out_specs=ipc://{rundir}/{ipc_prefix}zurl-in
zurl_out_stream_specs=ipc://{rundir}/{ipc_prefix}zurl-in-stream
zurl_in_specs=ipc://{rundir}/{ipc_prefix}zurl-out

[handler]
push_in_spec=${push_in_spec}
push_in_sub_specs=${push_in_sub_specs}
push_in_sub_connect=${push_in_sub_connect}
push_in_http_addr=${loopback}
push_in_http_port=${control_port}
stats_spec=${stats_spec}
command_spec=${command_spec}
# As Pushpin's stock config: unset, id_cache_ttl is 0 and a repeated item id is delivered
# twice, which would defeat the publisher's retries of items with an id.
id_cache_ttl=60
# most messages a second sent to clients, as in the stock config (-1: no limit)
message_rate=${message_rate}
# deliveries queued per route; past it Pushpin drops them, logging only a warning
message_hwm=${message_hwm}
""")

# The watchdog loads this file by path, so it needs neither the package nor its dependencies.
_GUARD_BOOT = (
    "import importlib.util, sys; "
    "spec = importlib.util.spec_from_file_location('grip_asgi_pushpin_guard', sys.argv[1]); "
    "module = importlib.util.module_from_spec(spec); "
    "spec.loader.exec_module(module); "
    "module._guard(*sys.argv[2:])"
)


class Pushpin:
    """A private Pushpin proxy on 127.0.0.1, for tests and local development.

    Every client request is routed to the backend(s), WebSocket clients as WebSocket-over-HTTP
    (``route_options="over_http"``), and each request carries a ``Grip-Sig`` signed with
    ``sig_key``. Nothing runs until :meth:`start` (or ``with``); the ports are chosen at once,
    so :attr:`grip_url` can be handed to the app before Pushpin starts.

    Args:
        backend: ``host:port`` that receives every request.
        backends: several targets for the route instead of ``backend``. Pushpin tries them in
            order and moves on when one cannot be reached (failover, not load balancing).
        http_port: client port (HTTP and WebSocket); 0 picks a free one.
        control_port: publish port (``POST /publish/``); 0 picks a free one.
        sig_key: key Pushpin signs ``Grip-Sig`` with (``base64:...`` for a binary key).
        sig_iss: ``iss`` claim of ``Grip-Sig``.
        upstream_key: key that marks a client as a trusted upstream GRIP proxy. None picks a
            random secret, because with Pushpin 1.36's empty default any client can forge that
            trust; pass ``""`` only to test that pitfall.
        route_options: options of each route target, comma-separated (``""``: plain
            WebSocket proxying).
        extra_routes: routes file lines tried before the catch-all route to the backend.
        log_level: Pushpin's log level (2 = info, 3 = debug).
        max_connections: most client connections at once (``client_maxconn``). Leave room:
            condure 1.9.1 (Pushpin 1.36) crashes when one publish reaches about 90% of it,
            and its memory grows with it (about 11 MB at 1000, 37 MB at 50000).
        message_rate: most messages a second Pushpin sends to its clients, all connections
            together (``message_rate``), 2500 as in Pushpin's stock config; None lifts the
            limit. At 2500, one publish to 1000 subscribers takes 0.4 s to reach them all.
        message_hwm: most deliveries Pushpin queues per route (``message_hwm``, 25000 as in
            its stock config). Past it, deliveries are dropped while the publish still
            answers "Published": set it small to test that nothing is lost.
        executable: the ``pushpin`` command or its path.
        run_dir: directory for config, logs and sockets; kept on :meth:`stop`. None uses a
            fresh temporary directory per start, removed on :meth:`stop`.
        zmq_tcp: bind the ZeroMQ sockets (publish, stats, command) on free 127.0.0.1 TCP
            ports, known before :meth:`start`, instead of ipc sockets in the run dir.
        subscribe_to: ZeroMQ PUB addresses (``tcp://host:port``) that this Pushpin connects
            its SUB socket to (``push_in_sub_connect``), e.g. a publisher's
            ``zmq+tcp://...?mode=pub``; empty: Pushpin binds its own SUB socket.
    """

    def __init__(
        self,
        backend: str = "127.0.0.1:8000",
        *,
        backends: Sequence[str] | None = None,
        http_port: int = 0,
        control_port: int = 0,
        sig_key: str = "changeme",
        sig_iss: str = "pushpin",
        upstream_key: str | None = None,
        route_options: str = "over_http",
        extra_routes: Sequence[str] = (),
        log_level: int = 2,
        max_connections: int = 5000,
        message_rate: int | None = 2500,
        message_hwm: int = 25000,
        executable: str = "pushpin",
        run_dir: str | None = None,
        zmq_tcp: bool = False,
        subscribe_to: Sequence[str] = (),
    ) -> None:
        targets = (backend,) if backends is None else tuple(backends)
        if not targets:
            raise ValueError("backends must name at least one host:port")
        for target in (*targets, route_options):
            if any(char.isspace() for char in target):
                raise ValueError(f"whitespace in a route target: {target!r}")
        for value in (sig_key, sig_iss, upstream_key or "", *extra_routes, run_dir or ""):
            if "\n" in value or "\r" in value:
                raise ValueError(f"line break in a Pushpin setting: {value!r}")
        if isinstance(subscribe_to, str):
            raise TypeError("subscribe_to is a list of ZeroMQ addresses, not a str")
        for address in subscribe_to:
            if not address.startswith(("tcp://", "ipc://")) or any(
                char.isspace() or char == "," for char in address
            ):
                raise ValueError(f"not a ZeroMQ address (tcp://host:port): {address!r}")
        for port in (http_port, control_port):
            if not 0 <= port <= 65535:
                raise ValueError(f"port out of range: {port}")
        if log_level < 0:
            raise ValueError(f"log_level must be 0 or more, got {log_level}")
        if max_connections < 1:
            raise ValueError(f"max_connections must be 1 or more, got {max_connections}")
        if message_rate is not None and message_rate < 1:
            raise ValueError(f"message_rate must be 1 or more (or None), got {message_rate}")
        if message_hwm < 1:
            raise ValueError(f"message_hwm must be 1 or more, got {message_hwm}")
        if run_dir is not None and len(os.path.abspath(run_dir)) > _MAX_RUN_DIR:
            raise ValueError(f"run_dir is too long for unix sockets (>{_MAX_RUN_DIR}): {run_dir}")

        # Pushpin's ZeroMQ sockets by name: a tcp port, or None for an ipc socket in the run dir
        zmq_names = ("push-in", "stats", "command") + (() if subscribe_to else ("push-in-sub",))
        # Every port in one call, so no two of them can be the same.
        wanted = [http_port, control_port].count(0) + (len(zmq_names) if zmq_tcp else 0)
        free = iter(_free_ports(wanted))
        self._zmq_ports = {name: next(free) if zmq_tcp else None for name in zmq_names}
        self._http_port = http_port or next(free)
        self._control_port = control_port or next(free)
        self._targets = targets
        self._sig_key = sig_key
        self._sig_iss = sig_iss
        self._upstream_key = secrets.token_urlsafe(32) if upstream_key is None else upstream_key
        self._route_options = route_options
        self._extra_routes = tuple(extra_routes)
        self._log_level = log_level
        self._max_connections = max_connections
        self._message_rate = -1 if message_rate is None else message_rate
        self._message_hwm = message_hwm
        self._executable = executable
        self._given_run_dir = None if run_dir is None else os.path.abspath(run_dir)
        self._subscribe_to = tuple(subscribe_to)
        self._run_dir: str | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._guard: subprocess.Popen[bytes] | None = None
        self._last_log = ""

    def __repr__(self) -> str:
        state = f"pid={self.pid}" if self.pid is not None else "stopped"
        return f"<Pushpin {self.http_url} -> {' '.join(self._targets)} {state}>"

    # -- addresses -------------------------------------------------------------------------

    @property
    def backends(self) -> tuple[str, ...]:
        """The ``host:port`` targets of the catch-all route."""
        return self._targets

    @property
    def http_port(self) -> int:
        """The client port (HTTP and WebSocket) on 127.0.0.1."""
        return self._http_port

    @property
    def control_port(self) -> int:
        """The publish port on 127.0.0.1."""
        return self._control_port

    @property
    def http_url(self) -> str:
        """Where HTTP clients connect, e.g. ``http://127.0.0.1:7999``."""
        return f"http://{_LOOPBACK}:{self._http_port}"

    @property
    def ws_url(self) -> str:
        """Where WebSocket clients connect, e.g. ``ws://127.0.0.1:7999``."""
        return f"ws://{_LOOPBACK}:{self._http_port}"

    @property
    def control_url(self) -> str:
        """Base URL of the control API, e.g. ``http://127.0.0.1:5561``."""
        return f"http://{_LOOPBACK}:{self._control_port}"

    @property
    def publish_url(self) -> str:
        """Where to ``POST`` items, e.g. ``http://127.0.0.1:5561/publish/``."""
        return f"{self.control_url}/publish/"

    def _zmq_spec(self, name: str) -> str | None:
        if name not in self._zmq_ports:
            return None
        port = self._zmq_ports[name]
        if port is not None:
            return f"tcp://{_LOOPBACK}:{port}"
        return None if self._run_dir is None else f"ipc://{self._run_dir}/pushpin-{name}"

    @property
    def push_in_spec(self) -> str | None:
        """The ZeroMQ address Pushpin PULLs published items from (``push_in_spec``); None
        for an ipc socket before :meth:`start`."""
        return self._zmq_spec("push-in")

    @property
    def push_in_sub_spec(self) -> str | None:
        """The address of Pushpin's bound SUB socket for published items
        (``push_in_sub_specs``); None when it connects to ``subscribe_to`` instead, or for an
        ipc socket before :meth:`start`."""
        return self._zmq_spec("push-in-sub")

    @property
    def stats_spec(self) -> str | None:
        """The address of Pushpin's stats PUB socket (``stats_spec``, for
        ``grip_asgi.zmq.SubscriberCounts``); None for an ipc socket before :meth:`start`."""
        return self._zmq_spec("stats")

    @property
    def command_spec(self) -> str | None:
        """The address of Pushpin's command socket (``command_spec``, ZRPC); None for an
        ipc socket before :meth:`start`."""
        return self._zmq_spec("command")

    @property
    def zmq_grip_url(self) -> str | None:
        """A ``GRIP_URL`` that publishes over ZeroMQ (PUSH to :attr:`push_in_spec`) and
        checks ``Grip-Sig``; None for an ipc socket before :meth:`start`."""
        spec = self.push_in_spec
        return None if spec is None else f"zmq+{spec}?{self.grip_url.partition('?')[2]}"

    @property
    def grip_url(self) -> str:
        """The ``GRIP_URL`` for an app behind this Pushpin: publishing plus ``Grip-Sig`` checks."""
        query = urlencode(
            {"verify-iss": self._sig_iss, "verify-key": self._sig_key}, quote_via=quote
        )
        return f"{self.control_url}/?{query}"

    # -- process state ---------------------------------------------------------------------

    @property
    def run_dir(self) -> str | None:
        """The directory with config, routes, log and sockets; None when not started."""
        return self._run_dir

    @property
    def log_path(self) -> str | None:
        """Pushpin's log file (all its processes, merged); None when not started."""
        return None if self._run_dir is None else os.path.join(self._run_dir, "pushpin.log")

    @property
    def pid(self) -> int | None:
        """Process id of the ``pushpin`` runner; None when not started."""
        return None if self._process is None else self._process.pid

    @property
    def running(self) -> bool:
        """True while the started ``pushpin`` process has not exited."""
        return self._process is not None and self._process.poll() is None

    def read_log(self) -> str:
        """Pushpin's log so far; after :meth:`stop`, the log of the run that stopped."""
        if self.log_path is None:
            return self._last_log
        try:
            return Path(self.log_path).read_text(errors="replace")
        except FileNotFoundError:
            return ""

    # -- lifecycle -------------------------------------------------------------------------

    def start(self, timeout: float = 30) -> None:
        """Start Pushpin and wait until it proxies, holds streams and accepts publishes.

        Raises:
            FileNotFoundError: the ``pushpin`` executable is not installed.
            RuntimeError: already running, a port is taken, or Pushpin exited or was not
                ready within ``timeout`` seconds (the message ends with its log).
        """
        if self._process is not None:
            raise RuntimeError(f"{self!r} is already started")
        executable = shutil.which(self._executable)
        if executable is None:
            raise FileNotFoundError(
                f"{self._executable} is not installed: run scripts/install-pushpin or "
                "apt-get install pushpin (see https://pushpin.org/docs/install/)"
            )
        for port in (self._http_port, self._control_port):
            if _port_in_use(port):
                raise RuntimeError(f"cannot start Pushpin: {_LOOPBACK}:{port} is already in use")

        self._run_dir = run_dir = self._make_run_dir()
        try:
            with open(os.path.join(run_dir, "pushpin.log"), "ab") as log:
                Path(run_dir, "pushpin.conf").write_text(self._render_config(run_dir))
                Path(run_dir, "routes").write_text(self._render_routes())
                self._process = subprocess.Popen(
                    [executable, "--config", f"{run_dir}/pushpin.conf", "--merge-output"],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=run_dir,
                    # Out of the terminal's process group: Ctrl-C reaches only us, and we stop
                    # Pushpin in order.
                    start_new_session=True,
                )
            owned_dir = None if self._given_run_dir else run_dir
            self._guard = _spawn_guard(self._process.pid, run_dir + os.sep, run_dir, owned_dir)
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop Pushpin and all its processes; remove the run dir unless it was given.

        Safe to call when not started, and more than once.
        """
        guard, self._guard = self._guard, None
        if guard is not None:
            _dismiss_guard(guard)
        process, self._process = self._process, None
        if process is not None:
            assert self._run_dir is not None
            _shutdown(process.pid, self._run_dir + os.sep, self._run_dir, _STOP_GRACE)
            process.wait()
        if self._run_dir is not None:
            self._last_log = self.read_log()
            if not self._given_run_dir:
                shutil.rmtree(self._run_dir, ignore_errors=True)
            self._run_dir = None

    def restart(self, timeout: float = 30) -> None:
        """Stop and start again on the same ports (subscriptions and held connections are lost)."""
        self.stop()
        self.start(timeout)

    def __enter__(self) -> Pushpin:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- internals -------------------------------------------------------------------------

    def _make_run_dir(self) -> str:
        if self._given_run_dir:
            os.makedirs(self._given_run_dir, exist_ok=True)
            return self._given_run_dir
        parent = tempfile.gettempdir()
        if len(parent) > _MAX_RUN_DIR - len("/pushpin-12345678"):
            parent = "/tmp"  # e.g. macOS's long per-user TMPDIR
        return tempfile.mkdtemp(prefix="pushpin-", dir=parent)

    def _render_config(self, run_dir: str) -> str:
        return _CONFIG.substitute(
            run_dir=run_dir,
            http_address=f"{_LOOPBACK}:{self._http_port}",
            loopback=_LOOPBACK,
            control_port=self._control_port,
            log_level=self._log_level,
            client_maxconn=self._max_connections,
            message_rate=self._message_rate,
            message_hwm=self._message_hwm,
            sig_iss=_ini_string(self._sig_iss),
            sig_key=_ini_string(self._sig_key),
            upstream_key=_ini_string(self._upstream_key),
            push_in_spec=self._zmq_config_spec("push-in"),
            push_in_sub_specs=",".join(self._subscribe_to) or self._zmq_config_spec("push-in-sub"),
            push_in_sub_connect="true" if self._subscribe_to else "false",
            stats_spec=self._zmq_config_spec("stats"),
            command_spec=self._zmq_config_spec("command"),
        )

    def _zmq_config_spec(self, name: str) -> str:
        port = self._zmq_ports[name]
        if port is not None:
            return f"tcp://{_LOOPBACK}:{port}"
        return f"ipc://{{rundir}}/{{ipc_prefix}}{name}"  # Pushpin fills these in

    def _render_routes(self) -> str:
        options = f",{self._route_options}" if self._route_options else ""
        targets = " ".join(target + options for target in self._targets)
        return "".join(
            line + "\n" for line in (f"{_READY_HOST} test", *self._extra_routes, f"* {targets}")
        )

    def _is_ready(self) -> bool:
        # A request can fail or hang for the first ~0.1-0.3 s after the port opens while the
        # internal ZeroMQ links connect, so probe each stage: the proxy answers, the handler
        # holds a stream, and the control port answers.
        return (
            _http_status(self._http_port, "/", _READY_HOST) == 200
            and _http_status(self._http_port, "/stream?channel=ready", _READY_HOST) == 200
            and _http_status(self._control_port, "/", "localhost") == 200
        )

    def _wait_ready(self, timeout: float) -> None:
        assert self._process is not None
        deadline = time.monotonic() + timeout
        while not self._is_ready():
            code = self._process.poll()
            if code is not None:
                raise RuntimeError(
                    f"Pushpin exited with code {code} while starting{self._log_tail()}"
                )
            if time.monotonic() >= deadline:
                raise RuntimeError(f"Pushpin was not ready after {timeout} s{self._log_tail()}")
            time.sleep(0.05)

    def _log_tail(self) -> str:
        lines = self.read_log().splitlines()[-_LOG_TAIL_LINES:]
        return f"; log {self.log_path}:\n" + "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run a private Pushpin in the foreground until Ctrl-C or SIGTERM, echoing its log."""
    parser = argparse.ArgumentParser(
        prog="python -m grip_asgi.pushpin",
        description="Run a private Pushpin on 127.0.0.1 for local development.",
    )
    parser.add_argument(
        "--backend",
        action="append",
        metavar="HOST:PORT",
        help="the app behind Pushpin (default 127.0.0.1:8000; repeat for failover targets)",
    )
    parser.add_argument("--port", type=int, default=7999, help="client port (default 7999)")
    parser.add_argument(
        "--control-port", type=int, default=5561, help="publish port (default 5561)"
    )
    parser.add_argument("--key", default="changeme", help="Grip-Sig key (default changeme)")
    parser.add_argument("--iss", default="pushpin", help="Grip-Sig issuer (default pushpin)")
    parser.add_argument(
        "--route-options", default="over_http", help="route target options (default over_http)"
    )
    parser.add_argument("--log-level", type=int, default=2, help="2 = info, 3 = debug")
    parser.add_argument(
        "--zmq-tcp",
        action="store_true",
        help="ZeroMQ sockets (publish, stats, command) on 127.0.0.1 TCP ports, not ipc",
    )
    args = parser.parse_args(argv)

    pushpin = Pushpin(
        backends=args.backend or ["127.0.0.1:8000"],
        http_port=args.port,
        control_port=args.control_port,
        sig_key=args.key,
        sig_iss=args.iss,
        route_options=args.route_options,
        log_level=args.log_level,
        zmq_tcp=args.zmq_tcp,
    )
    # SIGTERM unwinds like Ctrl-C, so Pushpin is stopped on the way out.
    previous_handler = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    try:
        with pushpin:
            print(
                f"Pushpin is ready, proxying to {' '.join(pushpin.backends)}\n"
                f"  clients:  {pushpin.http_url}  {pushpin.ws_url}\n"
                f"  publish:  {pushpin.publish_url}\n"
                f"  GRIP_URL={pushpin.grip_url}\n"
                f"  over ZeroMQ: GRIP_URL={pushpin.zmq_grip_url}\n"
                f"  subscriber counts: python -m grip_asgi stats {pushpin.stats_spec}\n",
                flush=True,
            )
            _follow_log(pushpin)
    except KeyboardInterrupt:
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous_handler)
    print("Pushpin exited unexpectedly", file=sys.stderr)
    return 1


def _raise_keyboard_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _follow_log(pushpin: Pushpin) -> None:
    assert pushpin.log_path is not None
    with open(pushpin.log_path, errors="replace") as log:
        while pushpin.running:
            chunk = log.read()
            if chunk:
                sys.stderr.write(chunk)
                sys.stderr.flush()
            else:
                time.sleep(0.2)
        sys.stderr.write(log.read())


def _ini_string(value: str) -> str:
    """Quote a value for Pushpin's QSettings ini file, so ``,;#"\\`` stay literal."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    # QSettings reads a leading "@" as a type marker (@ByteArray...); "@@" is a literal "@"
    if escaped.startswith("@"):
        escaped = "@" + escaped
    return f'"{escaped}"'


def _free_ports(count: int) -> list[int]:
    """Ports free on 127.0.0.1 now, distinct, and below the ephemeral range.

    Port 0 would pick from the ephemeral range, where the system also takes the local port of
    every outgoing connection: between choosing a port and a server binding it, a busy test
    run's clients can take it ("Address already in use"). Below that range only listeners
    compete, and each port is checked by binding it.
    """
    low, high = _ephemeral_range()
    candidates = list(range(_PORTS_FROM, min(low, 65536)))
    if len(candidates) < count or high < low:  # an unusual range: let the system choose
        candidates = []
    random.shuffle(candidates)
    chosen: list[socket.socket] = []
    try:
        for port in candidates:
            if len(chosen) == count:
                break
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                sock.bind((_LOOPBACK, port))
            except OSError:
                sock.close()
                continue
            chosen.append(sock)
        while len(chosen) < count:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((_LOOPBACK, 0))
            chosen.append(sock)
        return [sock.getsockname()[1] for sock in chosen]
    finally:
        for sock in chosen:
            sock.close()


#: Ports picked for Pushpin and test servers start here (below Linux's ephemeral range).
_PORTS_FROM = 20000


def _ephemeral_range() -> tuple[int, int]:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as ranges:
            low, high = (int(value) for value in ranges.read().split())
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default
    return low, high


def _port_in_use(port: int) -> bool:
    try:
        socket.create_connection((_LOOPBACK, port), timeout=0.5).close()
    except OSError:
        return False
    return True


def _http_status(port: int, path: str, host: str) -> int | None:
    """The status of ``GET path`` on 127.0.0.1:port, or None if no response came in 0.5 s."""
    connection = http.client.HTTPConnection(_LOOPBACK, port, timeout=0.5)
    try:
        connection.request("GET", path, headers={"Host": host})
        return connection.getresponse().status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        connection.close()


def _command_line(pid: int) -> str:
    """The arguments of a process joined by spaces; "" if it is gone or a zombie."""
    if sys.platform != "linux":  # pragma: no cover - no /proc
        ps = ["ps", "-o", "command=", "-p", str(pid)]
        return subprocess.run(ps, capture_output=True, text=True, check=False).stdout
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as file:
            return file.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _shutdown(leader: int | None, marker: str, pid_dir: str | None, grace: float) -> None:
    """Stop a process group started with ``start_new_session``, then its pid files' processes.

    The group of ``leader`` (an unreaped child, or checked to be ours) gets SIGTERM, then
    SIGKILL once the leader has exited or ``grace`` seconds have passed. Pushpin's runner stops
    its children itself, but each child has its own process group and outlives a runner that
    was killed hard; the pid files in ``pid_dir`` name them. A pid counts as ours only while
    ``marker`` is in its command line, so a reused pid is never signalled.
    """
    if leader is not None:
        _kill_group(leader, signal.SIGTERM)
        _wait_until_gone([leader], marker, grace)
        _kill_group(leader, signal.SIGKILL)
    if pid_dir is not None:
        leftovers = [pid for pid in _pids_in(pid_dir) if marker in _command_line(pid)]
        for pid in leftovers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        _wait_until_gone(leftovers, marker, grace)  # until their ports are free


def _wait_until_gone(pids: Sequence[int], marker: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while any(marker in _command_line(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.02)


def _pids_in(pid_dir: str) -> list[int]:
    pids = []
    for pid_file in Path(pid_dir).glob("*.pid"):
        with contextlib.suppress(OSError, ValueError):
            pids.append(int(pid_file.read_text()))
    return [pid for pid in pids if pid > 0]


def _kill_group(leader: int, sig: signal.Signals) -> None:
    # The group may be gone already (macOS answers EPERM when only a zombie leader is left).
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(leader, sig)


def _spawn_guard(
    leader: int, marker: str, pid_dir: str | None, remove_dir: str | None
) -> subprocess.Popen[bytes]:
    """Start a watchdog that cleans up after this process if it dies without stopping ``leader``.

    The watchdog blocks reading a pipe whose only writer is this process. However this process
    ends, even by SIGKILL, the kernel closes the pipe; the watchdog then runs :func:`_shutdown`
    and removes ``remove_dir``. :func:`_dismiss_guard` ends it after a normal stop.
    """
    return subprocess.Popen(
        [sys.executable, "-I", "-c", _GUARD_BOOT, __file__, str(leader), marker]
        + [pid_dir or "", remove_dir or ""],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # so Ctrl-C in a terminal does not end it early
    )


def _dismiss_guard(guard: subprocess.Popen[bytes]) -> None:
    guard.kill()
    guard.wait()
    assert guard.stdin is not None
    guard.stdin.close()


def _guard(leader: str, marker: str, pid_dir: str, remove_dir: str) -> None:  # pragma: no cover
    # Runs in the watchdog process (see _spawn_guard); tests/e2e check it by killing its owner.
    sys.stdin.buffer.read()
    # The leader is no longer our child: make sure its pid was not reused.
    pid = int(leader) if marker in _command_line(int(leader)) else None
    _shutdown(pid, marker, pid_dir or None, _STOP_GRACE)
    if remove_dir:
        shutil.rmtree(remove_dir, ignore_errors=True)


if __name__ == "__main__":  # pragma: no cover - tested in a subprocess
    sys.exit(main())
