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
