"""The peer process: ``python -m tests.compat.oracle CASES_MODULE OUTPUT`` runs every case of
``CASES_MODULE`` on the peers' real code and writes the observations to ``OUTPUT`` as JSON.

Started by :func:`tests.compat.peers.run_oracle` with the peers first on ``sys.path``. The
cases module's ``prepare_peer(harness)`` imports the peer and sets ``harness.api``.
"""

from __future__ import annotations

import importlib
import json
import sys
import warnings

from .harness import CaptureServer, Harness, run_case


def main(cases_module: str, output: str) -> None:
    # The peers' deprecation and key-length warnings are not what is compared; a case that
    # observes warnings records them itself.
    warnings.simplefilter("ignore")
    module = importlib.import_module(cases_module)
    with CaptureServer() as capture:
        harness = Harness(api=None, capture=capture)
        module.prepare_peer(harness)
        observations = {name: run_case(case, harness) for name, case in module.CASES.items()}
    with open(output, "w") as out:
        json.dump(observations, out)


if __name__ == "__main__":
    main(*sys.argv[1:])
