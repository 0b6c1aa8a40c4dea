"""Run a ``RecordingSink`` on 127.0.0.1 in its own process: ``python -m puraify.testing.serve``.

Prints ``LISTENING <url>`` once ready; stops on SIGTERM/SIGINT. Benchmarks use it so the
receiver does not share a GIL with the engine under test.
"""

from __future__ import annotations

import argparse
import sys

from .servers import LocalServer, RecordingSink, until_stopped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument(
        "--keep", type=int, default=None, help="Keep only this many recent requests (load runs)."
    )
    args = parser.parse_args(argv)
    stop = until_stopped()
    with LocalServer(RecordingSink(keep=args.keep), port=args.port) as server:
        print(f"LISTENING {server.url}", flush=True)
        stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
