"""A DNS server in a sandbox namespace (dnsmasq, DNS only), a node's resolv.conf in a private
mount namespace of the test, and a job that resolves a name over UDP and TCP and fetches."""

from __future__ import annotations

import os
import subprocess

import pytest
from sandbox import HTTP_PORT, SITE_ADDR, sh, wait_for

SITE_NAME = "site.example"
RESOLVE_JOB = r"""
import random, socket, struct, sys, urllib.request

def servers():
    found = []
    for line in open("/etc/resolv.conf"):
        words = line.split()
        if len(words) >= 2 and words[0] == "nameserver":
            found.append(words[1])
    return found

def query(name):
    qid = random.randrange(65536)
    q = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    q += b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    return qid, q + struct.pack("!HH", 1, 1)

def answer(data, qid):
    assert struct.unpack("!H", data[:2])[0] == qid
    return ".".join(map(str, data[-4:]))  # (the last answer's A record)

def tcp(server, name):
    qid, q = query(name)
    with socket.create_connection((server, 53), timeout=5) as s:
        s.sendall(struct.pack("!H", len(q)) + q)
        size = struct.unpack("!H", s.recv(2))[0]
        data = b""
        while len(data) < size:
            data += s.recv(size - len(data))
    return answer(data, qid)

name = sys.argv[1]
print("resolved", socket.gethostbyname(name))
print("tcp", tcp(servers()[0], name))
body = urllib.request.urlopen(f"http://{name}:PORT/1k", timeout=10).read()
print("fetched", len(body))
""".replace("PORT", str(HTTP_PORT))


def start_dns(sandbox, netns: str, listen: str, tag: str = "dns", answer: str = SITE_ADDR):
    """dnsmasq answering ``site.example`` with ``answer`` on ``listen``:53 (UDP and TCP) in
    ``netns``, with no upstream; its queries logged under the test's directory."""
    log = sandbox.tmp / f"{tag}.log"
    sandbox.start_in(
        netns,
        [
            "dnsmasq",
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            f"--listen-address={listen}",
            "--bind-interfaces",
            f"--address=/{SITE_NAME}/{answer}",
            f"--pid-file={sandbox.tmp / f'{tag}.pid'}",
            "--user=root",
            "--log-queries",
            f"--log-facility={log}",
        ],
    )
    sandbox.wait_for_port(netns, listen, 53)
    return log


def add_loopback_address(netns: str, address: str) -> None:
    """A loopback address like resolved's 127.0.0.53 on the namespace's ``lo``."""
    sh("ip", "addr", "add", f"{address}/8", "dev", "lo", netns=netns)


def root_is_a_mount() -> bool:
    """Whether ``/`` is a mount point (not in a chroot): mountinfo lists it. (os.path.ismount
    says yes for ``/`` whatever it is: its ``..`` is itself.)"""
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == "/" for line in f)


def needs_own_root() -> None:
    """Skip where ``/`` is not a mount point (a chroot, as the fresh-Debian CI runs in): a
    private view of /etc there could reach the machine's own, so neither the test nor the
    agent makes one (the agent says so in its log and the job sees the node's files)."""
    if not root_is_a_mount():
        pytest.skip("/ is not a mount point here (a chroot): no private view of /etc")


def with_node_resolv_conf(sandbox, text: str, argv: list[str]) -> list[str]:
    """``argv`` in a private mount namespace where /etc/resolv.conf says ``text``: the
    machine's own file is never touched. Mounts there are slaves of the machine's (nothing
    goes back), so the job namespace the agent names is seen only by the agent and its job
    (its name file in /run/netns is still on the shared tmpfs, and removed)."""
    needs_own_root()
    path = sandbox.tmp / "node-resolv.conf"
    path.write_text(text)
    return [
        "unshare",
        "--mount",
        "--propagation",
        "slave",
        "sh",
        "-c",
        'mount --bind "$0" /etc/resolv.conf && exec "$@"',
        str(path),
        *argv,
    ]


def machine_resolv_conf() -> tuple[bytes, tuple[int, int, int]]:
    """The machine's /etc/resolv.conf, to check it is never changed."""
    st = os.stat("/etc/resolv.conf")
    with open("/etc/resolv.conf", "rb") as f:
        return f.read(), (st.st_ino, st.st_mtime_ns, st.st_size)


def run(argv: list[str], timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)


def dns_queries(log) -> int:
    return log.read_text().count("query[A]") if log.exists() else 0


def wait_for_queries(log, n: int, timeout: float = 5) -> bool:
    return wait_for(lambda: dns_queries(log) >= n, timeout)
