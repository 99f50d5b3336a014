"""Agent flags for a bridged job on the sandbox's uplink."""

from __future__ import annotations

from sandbox import SITE_ADDR, SITE_NET

STATIC = f"{SITE_NET}.60"


def bridge_flags(*extra: str) -> tuple[str, ...]:
    return ("--network-type", "bridge", "--bridge-device", "uplink", *extra)


def static_flags(address: str = STATIC) -> tuple[str, ...]:
    return bridge_flags(
        "--address-type", "static", "--static-address", f"{address}/24", "--gateway", SITE_ADDR
    )


# Run in the site namespace with a device: prints "ready", then, once stdin closes, the
# sorted two-letter tags of the frames it saw carrying ``LARKTEST<tag>`` (what a job's
# forged or foreign frames got through to the LAN).
CAPTURE = r"""
import json, select, socket, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
s.bind((sys.argv[1], 0))
print("ready", flush=True)
got = set()
while True:  # until told to stop (stdin closed)
    ready, _, _ = select.select([s, sys.stdin], [], [], 30)
    if not ready or sys.stdin in ready:
        break
    data = s.recv(4096)
    if b"LARKTEST" in data:
        got.add(data[data.index(b"LARKTEST") + 8 :][:2].decode())
print(json.dumps(sorted(got)), flush=True)
"""
