"""``grip-asgi check`` on the config of a running Pushpin: what it predicts, Pushpin does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from grip_asgi import GripSettings
from grip_asgi._signature import ProxyVerifier, SigFailure
from grip_asgi.pushpin_check import load_pushpin

from .servers import REPO_ROOT, ProxiedApp

RAWAPP = "tests.e2e.rawapp:app"
# Every character Pushpin's ini format treats specially, in a key long enough to pass.
SIG_KEY = '@e2e key "quoted" \\ ,;#%41$x and 32+ bytes'


def check(config: Path, grip_url: str) -> tuple[int, list[tuple[str, str]]]:
    """Run ``python -m grip_asgi check CONFIG --json`` as an operator would."""
    done = subprocess.run(
        [sys.executable, "-m", "grip_asgi", "check", str(config), "--json", "--grip-url", grip_url],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO_ROOT,
        env={k: v for k, v in os.environ.items() if not k.startswith("GRIP_")},
    )
    assert done.returncode in (0, 1), done.stderr
    found = json.loads(done.stdout)["findings"]
    return done.returncode, [(finding["id"], finding["severity"]) for finding in found]


def test_check_reads_a_running_pushpins_config_as_pushpin_does(
    proxied_app: Callable[..., ProxiedApp],
) -> None:
    proxied = proxied_app(RAWAPP, sig_key=SIG_KEY, sig_iss="e2e-check")
    assert proxied.pushpin.run_dir is not None
    config_path = Path(proxied.pushpin.run_dir) / "pushpin.conf"
    # The Grip-Sig Pushpin really sends, as the app behind it received it.
    token = httpx.get(f"{proxied.http_url}/sig", timeout=10).text
    assert token

    # The app's own GRIP_URL: the check finds nothing wrong with the keys, and indeed the
    # app's verifier takes Pushpin's token.
    code, found = check(config_path, proxied.grip_url)
    assert (code, found) == (
        0,
        [
            ("GRIP-PP006", "info"),
            ("GRIP-PP007", "info"),
            ("GRIP-PP009", "info"),
            ("GRIP-PP014", "info"),
        ],
    )
    app = GripSettings.build(proxied.grip_url)
    assert ProxyVerifier(app.proxies).verify(token, time.time()).ok

    # Another key, or another issuer: the check reports GRIP-PP004, and the app's verifier
    # refuses Pushpin's token for that very reason.
    base = proxied.pushpin.control_url
    for grip_url, reason in [
        (f"{base}/?verify-iss=e2e-check&verify-key=another-key-of-32-bytes-or-so", "sig_key"),
        (proxied.grip_url.replace("verify-iss=e2e-check", "verify-iss=pushpin"), "sig_iss"),
    ]:
        code, found = check(config_path, grip_url)
        assert code == 1 and found[0] == ("GRIP-PP004", "error"), found
        failure = ProxyVerifier(GripSettings.build(grip_url).proxies).verify(token, time.time())
        expected = SigFailure.BAD_SIGNATURE if reason == "sig_key" else SigFailure.WRONG_ISSUER
        assert failure.reason is expected

    # The publish port the config names (checked loopback) is where this Pushpin listens.
    config, _, _ = load_pushpin(str(config_path))
    address = config.text("handler/push_in_http_addr")
    port = config.number("handler/push_in_http_port", -1)
    assert (address, port) == ("127.0.0.1", proxied.pushpin.control_port)
    assert httpx.get(f"http://{address}:{port}/", timeout=10).status_code == 200
