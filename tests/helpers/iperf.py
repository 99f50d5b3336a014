"""iperf3 on the site, for the bandwidth tests and bench/bandwidth.py."""

from __future__ import annotations

import json
import time

from sandbox import sh


def start_iperf(sandbox, address: str, port: int):
    """``iperf3 -s`` on ``address`` (on the site's bridge) and ``port``, once it listens."""
    proc = sandbox.start_in(sandbox.site, ["iperf3", "-s", "-B", address, "-p", str(port)])
    local = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
    end = time.monotonic() + 10
    while local not in sh("ss", "-Hltn", netns=sandbox.site).stdout.split():
        assert proc.poll() is None and time.monotonic() < end, f"iperf3 -s -B {address}"
        time.sleep(0.05)
    return proc


def received_mbit(stdout: str) -> list[float]:
    """Each ``iperf3 -J`` run's rate as its receiving side counted it, in Mbit/s, in order."""
    decoder, found, at = json.JSONDecoder(), [], 0
    text = stdout.strip()
    while at < len(text):
        result, at = decoder.raw_decode(text, at)
        assert "error" not in result, result["error"]
        found.append(result["end"]["sum_received"]["bits_per_second"] / 1e6)
        while at < len(text) and text[at].isspace():
            at += 1
    return found


def within(rate: float, limit: float) -> bool:
    """A shaped rate, as a test (no benchmark) accepts it: iperf3 counts TCP payload, the
    shaper Ethernet frames (~0.96x at best)."""
    return 0.8 * limit <= rate <= 1.1 * limit
