"""What the IPv6 tests of both firewall backends share: the NAT66 pool, a fetch, a piped
program in a test namespace, and a job forging its IPv6 source against a site listener."""

from __future__ import annotations

import ipaddress
import subprocess

from helpers.agent import FETCH_JOB

POOL6 = ipaddress.IPv6Network("fd4c:6172:6b00::/64")  # LARK_LOCAL_NETWORK6's default
IP_OVERHEAD = 1.06  # IPv6 bytes of a download against its payload (headers, the request)


def start_piped(sandbox, netns: str, code: str, *args: str) -> subprocess.Popen:
    """A Python program in a namespace of the test's, its output readable line by line."""
    argv = ["nsenter", f"--net=/run/netns/{netns}", "python3", "-c", code, *args]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    sandbox.procs.append(proc)
    return proc


def fetch(sandbox, host, url: str, *flags: str, name: str | None = None):
    ad = sandbox.tmp / f"{name or sandbox.job_name()}.update.ad"
    result = sandbox.run_agent(
        host, *sandbox.who(name), "--update-ad", str(ad), *flags, "--", *FETCH_JOB, url
    )
    return result, ad


SPOOF = """\
import socket, sys
# a job that could forge its source (here the test, as root in the job's namespace) sends
# one datagram from each address given: another of the pool, its own
for source in sys.argv[2:]:
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_IP, 15, 1)  # IP_FREEBIND: bind an address that is not ours
    s.bind((source, 0))
    s.sendto(source.encode(), (sys.argv[1], 9999))
"""
# what the site hears on UDP 9999 for 3 s: each datagram and the address it came from
LISTEN = """\
import socket, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.bind((sys.argv[1], 9999)); s.settimeout(3); print('ready', flush=True)
try:
    while True:
        data, peer = s.recvfrom(100)
        print(data.decode(), peer[0], flush=True)
except socket.timeout:
    pass
"""
