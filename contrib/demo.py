"""Demo: jobs end to end, inside throwaway namespaces (nothing on the real network).

    python3 contrib/demo.py [nat|bridge|policy|all]    (default all)

A *site* namespace serves a 10 MB file over HTTP (and, for bridge mode, runs
Kea as the site's DHCP server); an *execute host* namespace, wired to the site
like a worker node, runs ``lark-agent run`` for a job that downloads it:
* nat: the job is NATed behind the host;
* bridge: Lark makes a bridge ``lark`` from the host's uplink and the job gets
  its own address on the site LAN from Kea (renewed while it runs, released at
  the end);
* policy: a NAT job under a connection policy that allows only the site's
  HTTP port: the download works, a connection to another port is refused at
  once, and the audit log shows both decisions.
Each job's update ad is printed with its byte counts, and the demo checks that
nothing was left behind.
"""

from __future__ import annotations

import shlex
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from sandbox import FILE_SIZES, Sandbox, new_prefix, start_kea

FETCH = (
    "import socket, sys, time, urllib.request\n"
    "data = urllib.request.urlopen(sys.argv[1], timeout=10).read()\n"
    "me = socket.create_connection(('10.77.0.1', 8080)).getsockname()[0]\n"
    "print(f'job: fetched {len(data)} bytes from {sys.argv[1]} as {me}')\n"
    "for port in sys.argv[2:]:\n"
    "    try:\n"
    "        socket.create_connection(('10.77.0.1', int(port)), timeout=5)\n"
    "        print(f'job: connected to port {port}')\n"
    "    except OSError as e:\n"
    "        print(f'job: port {port}: {e.strerror}')\n"
    "time.sleep(3)\n"
)
POLICY = "allow tcp 10.77.0.1:8080, deny any 0.0.0.0/0"


MODES = {
    "nat": (),
    "bridge": ("--network-type", "bridge", "--bridge-device", "uplink"),
    "policy": ("--connection-policy", POLICY),
}


def demo(box: Sandbox, mode: str) -> bool:
    host = box.add_host()
    name = f"{box.prefix}{mode[0]}"
    ad = box.tmp / f"{mode}.update.ad"
    flags = (*MODES[mode], "--update-ad", str(ad))
    probe = ["8081"] if mode == "policy" else []
    if mode == "policy":
        flags += ("--audit-dir", str(box.tmp / "audit"))
    if mode == "bridge":
        start_kea(box, lifetime=4)
        box.kept_links.add("lark")
        print("demo: Kea serves 10.77.0.100-150 on the site LAN (4 s leases, to see renewals)")
    print(
        f"\ndemo [{mode}]: execute host namespace {host.netns} runs:\n  lark-agent run --user "
        f"nobody --name {name} {shlex.join(flags)} -- python3 <fetch, then wait 3 s> "
        f"{box.url('10m')} {' '.join(probe)}"
    )
    result = box.run_agent(
        host,
        "--user",
        "nobody",
        "--name",
        name,
        *flags,
        "--",
        "/usr/bin/python3",
        "-I",
        "-c",
        FETCH,
        box.url("10m"),
        *probe,
    )
    sys.stdout.write(result.stdout)
    sys.stderr.write(result.stderr)
    print(f"demo [{mode}]: lark-agent exited with {result.returncode}")
    if ad.exists():
        print(f"demo [{mode}]: the job's update ad ({ad}):")
        print("  " + ad.read_text().strip().replace("\n", "\n  "))
    audit = box.tmp / "audit" / f"{name}.jsonl"
    if audit.exists():
        print(f"demo [{mode}]: the job's connection audit log ({audit}):")
        print("  " + audit.read_text().strip().replace("\n", "\n  "))
    return result.returncode == 0


def main() -> int:
    modes = sys.argv[1:] or ["all"]
    if len(modes) != 1 or modes[0] not in (*MODES, "all"):
        print("usage: demo.py [nat|bridge|policy|all]", file=sys.stderr)
        return 2
    chosen = list(MODES) if modes[0] == "all" else modes
    prefix = new_prefix()
    box = Sandbox(prefix, Path(tempfile.mkdtemp(prefix=f"{prefix}.")), f"{prefix}-site")
    try:
        box.create_site()
        print(f"demo: site namespace {box.site} serves a {FILE_SIZES['10m']} byte file")
        ok = all([demo(box, mode) for mode in chosen])
        left = box.wait_clean()
        print("\ndemo: nothing left behind" if not left else f"\ndemo: LEFT BEHIND: {left}")
        return 0 if ok and not left else 1
    finally:
        box.destroy()


if __name__ == "__main__":
    sys.exit(main())
