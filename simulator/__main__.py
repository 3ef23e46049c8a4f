"""python -m simulator --host 127.0.0.1 --port 8900 --identities 300 --grants 3000 --seed 1"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading

from .server import OBSERVERS, RECORD_ENV, Sim, SimServer, record_to


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m simulator", description=__doc__)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8900)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--identities", type=int, default=300)
    ap.add_argument("--grants", type=int, default=3000, help="grants per provider")
    ap.add_argument("--events", type=int, default=None, help="seeded activity events per provider")
    ap.add_argument("--verbose", action="store_true", help="log every request")
    ns = ap.parse_args(argv)
    if os.environ.get(RECORD_ENV):
        OBSERVERS.append(record_to(os.environ[RECORD_ENV]))
    sim = Sim(seed=ns.seed, identities=ns.identities, grants=ns.grants, events=ns.events)
    for p in ("google", "entra", "okta", "github"):
        sim.tenant.store(p)  # generate up front so the first sync doesn't pay for it
    server = SimServer((ns.host, ns.port), sim, verbose=ns.verbose)
    url = f"http://{ns.host}:{server.server_address[1]}"
    print(url, flush=True)
    print(
        f"simulated tenant: seed={ns.seed} identities={ns.identities} grants/provider={ns.grants}; "
        f"prefixes /google /entra /okta /github; control /_sim/state /_sim/faults /_sim/credentials",
        file=sys.stderr,
        flush=True,
    )
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
