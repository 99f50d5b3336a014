"""Fuzz the DHCP codec, the framing and the sans-IO client with mutated real replies.

    .venv/bin/python bench/dhcp_fuzz.py [--inputs 100000] [--seed 1] [--per-state 10]
    .venv/bin/python bench/dhcp_fuzz.py --session N     # replay the session a failure names

Each input is a real OFFER, ACK or NAK for the client's own exchange (subnet mask, router,
DNS, lease/T1/T2, classless routes, hostname, domain; option overload with options in file
and sname; options split per RFC 3396), mutated a few times at the byte, option and header
level, then fed to ``dhcp.message.decode`` (and back through ``encode``), to
``Client.handle`` in the state it was made for (SELECTING, REQUESTING, BOUND, RENEWING,
REBINDING), and, wrapped in a mutated Ethernet/IP/UDP frame, to ``frame.parse_udp``. The
generator and the invariants live in ``tests/helpers/dhcp_fuzz.py``, which the unit suite
runs too (5,000 inputs, tests/unit/dhcp/test_fuzz.py). Needs no root and no network.

Prints the number of inputs, the time, the share that decoded, the share that reached the
client's acceptance logic, and each kind of failure with its first input; exits 1 on any
failure.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from helpers.dhcp_fuzz import report, run, run_session


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inputs", type=int, default=100_000, help="fuzzed replies to run")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--per-state", type=int, default=10, help="replies per client state")
    parser.add_argument("--session", type=int, help="replay one session (a failure names it)")
    parser.add_argument("--show", type=int, default=10, help="failures to print")
    args = parser.parse_args()
    if args.session is not None:
        result = run_session(args.session, args.per_state)
    else:
        result = run(args.inputs, args.seed, args.per_state)
    print(report(result, args.show))
    return 1 if result.failures else 0


if __name__ == "__main__":
    sys.exit(main())
