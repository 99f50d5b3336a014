"""Throwaway sites and execute hosts in network namespaces, and a leftover check.

A *site* namespace holds a bridge with an address and an HTTP server serving
files of known sizes. Each *execute host* namespace is wired to the site
bridge by a veth uplink and has a default route to it. ``lark-agent`` runs
inside a host namespace the way a node runs it: network namespace only
(``nsenter --net``), so the job namespaces it names are visible to us.
Every name carries the per-test prefix; nothing touches the machine's own
interfaces, routes or firewall.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

SITE_NET = "10.77.0"
SITE_ADDR = f"{SITE_NET}.1"
KEA_POOL = (f"{SITE_NET}.100", f"{SITE_NET}.150")  # the DHCP servers' range in tests
HTTP_PORT = 8080
FILE_SIZES = {"1k": 1_000, "1m": 1_000_000, "3m": 3_000_000, "10m": 10_000_000}
AGENT = [sys.executable, "-m", "lark_async.cli"]
TEST_PREFIX = "lkt"
_LOGGED_NAME = re.compile(r"([A-Za-z0-9][A-Za-z0-9_-]{0,12}): (?:addresses|network ready)")


def sh(*cmd: str, check: bool = True, netns: str | None = None) -> subprocess.CompletedProcess:
    argv = list(cmd)
    if netns is not None:
        argv = ["nsenter", f"--net=/run/netns/{netns}", *argv]
    result = subprocess.run(argv, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed ({result.returncode}): {result.stderr}")
    return result


# ``python3 -c PING ADDRESS SIZE [SOURCE]``: one ICMP echo of SIZE payload bytes, never
# fragmented (DF; the sender's MTU must fit it), answered within 5 s: exit 0 and "ok", else
# exit 1 and why. (No ping binary here; a raw socket needs root, as ping does.)
PING = """
import os, select, socket, struct, sys, time
addr, size = sys.argv[1], int(sys.argv[2])
v6 = ":" in addr
family, proto = (socket.AF_INET6, 58) if v6 else (socket.AF_INET, 1)
s = socket.socket(family, socket.SOCK_RAW, proto)
if v6:
    s.setsockopt(socket.IPPROTO_IPV6, 23, 2)  # IPV6_MTU_DISCOVER: IPV6_PMTUDISC_DO
else:
    s.setsockopt(socket.IPPROTO_IP, 10, 2)  # IP_MTU_DISCOVER: IP_PMTUDISC_DO
if len(sys.argv) > 3:
    s.bind((sys.argv[3], 0))
ident = os.getpid() & 0xFFFF
packet = struct.pack("!BBHHH", 128 if v6 else 8, 0, 0, ident, 1) + bytes(size)
if not v6:  # (the kernel sums ICMPv6 itself)
    even = packet + bytes(len(packet) % 2)
    total = sum(struct.unpack(f"!{len(even) // 2}H", even))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    packet = packet[:2] + struct.pack("!H", ~total & 0xFFFF) + packet[4:]
try:
    s.sendto(packet, (addr, 0))
except OSError as exc:
    sys.exit(f"send: {exc.strerror}")
end = time.monotonic() + 5
while select.select([s], [], [], max(0, end - time.monotonic()))[0]:
    data = s.recv(65536)
    icmp = data if v6 else data[(data[0] & 15) * 4 :]
    if icmp[0] == (129 if v6 else 0) and struct.unpack_from("!H", icmp, 4)[0] == ident:
        print("ok")
        sys.exit(0)
sys.exit("no answer")
"""


def ping(netns: str, address: str, size: int = 56, source: str | None = None) -> None:
    """Fail unless ``address`` answers an unfragmented echo of ``size`` bytes from ``netns``."""
    sh(
        sys.executable,
        "-I",
        "-c",
        PING,
        address,
        str(size),
        *([source] if source else []),
        netns=netns,
    )


def netns_list() -> list[str]:
    try:
        return sorted(os.listdir("/run/netns"))
    except FileNotFoundError:
        return []


@dataclass
class Host:
    netns: str
    address: str  # "" on an IPv6-only host
    address6: str | None = None  # a dual-stack or IPv6-only host's


@dataclass
class Sandbox:
    prefix: str
    tmp: Path
    site: str
    hosts: list[Host] = field(default_factory=list)
    procs: list[subprocess.Popen] = field(default_factory=list)
    kept_links: set[str] = field(default_factory=set)  # e.g. the bridge bridge mode leaves
    # cgroups a test made itself and removes itself (checked at the end of the test)
    own_cgroups: set[Path] = field(default_factory=set)
    serving6: bool = False  # the site's IPv6 HTTP server runs (serve_ipv6)

    @property
    def state_dir(self) -> Path:
        return self.tmp / "state"

    @property
    def lock_dir(self) -> Path:
        return self.tmp / "lock"

    @property
    def log_file(self) -> Path:
        return self.tmp / "agent.log"

    def url(self, size: str) -> str:
        return f"http://{SITE_ADDR}:{HTTP_PORT}/{size}"

    def job_name(self, suffix: str = "j1") -> str:
        return f"{self.prefix}{suffix}"

    def who(self, name: str | None = None) -> tuple[str, ...]:
        """``run`` flags for a job of this test run as nobody."""
        return ("--user", "nobody", "--name", name or self.job_name())

    # -- building ---------------------------------------------------------

    def create_site(self) -> None:
        sh("ip", "netns", "add", self.site)
        # nsenter, not `ip -n`: that also remounts /sys, which fails in chroots and containers
        for step in (
            ("link", "set", "lo", "up"),
            # a fixed MAC, as a real server's NIC has: a bridge without one takes its lowest
            # port's, so adding a host would change it under a running Kea (which keeps
            # answering from the MAC it started with, one no longer there); a port (a veth
            # whose peer is up) gives it carrier before any host joins (Kea listens only on
            # a running link)
            ("link", "add", "br0", "address", "02:10:77:00:00:01", "type", "bridge"),
            ("link", "add", "site0", "type", "veth", "peer", "name", "site1"),
            ("link", "set", "site1", "up"),
            ("link", "set", "site0", "master", "br0", "up"),
            ("addr", "add", f"{SITE_ADDR}/24", "dev", "br0"),
            ("link", "set", "br0", "up"),
        ):
            sh("ip", *step, netns=self.site)

        def running() -> bool:
            return "state UP" in sh("ip", "-o", "link", "show", "br0", netns=self.site).stdout

        assert wait_for(running, 5), "the site bridge br0 never came up"
        www = self.tmp / "www"
        www.mkdir()
        for name, size in FILE_SIZES.items():
            (www / name).write_bytes(os.urandom(size))
        self.start_in(
            self.site,
            [sys.executable, "-m", "http.server", "-d", str(www), "-b", SITE_ADDR, str(HTTP_PORT)],
        )
        self.wait_for_port(self.site, SITE_ADDR, HTTP_PORT)

    def url6(self, size: str) -> str:
        return f"http://[{SITE_ADDR6}]:{HTTP_PORT}/{size}"

    def serve_ipv6(self) -> None:
        """The site's IPv6 (``SITE_ADDR6`` on br0) and its HTTP server there, once."""
        if self.serving6:
            return
        ensure_site_ipv6(self.site)
        www = str(self.tmp / "www")
        argv = [sys.executable, "-m", "http.server", "-d", www, "-b", SITE_ADDR6, str(HTTP_PORT)]
        self.start_in(self.site, argv)
        self.wait_for_port(self.site, SITE_ADDR6, HTTP_PORT)
        self.serving6 = True

    def add_host(self, ipv4: bool = True, ipv6: bool = False) -> Host:
        """An execute host on the site LAN: IPv4 (``10.77.0.1x``), and with ``ipv6`` a
        global IPv6 address (``fd77:0:0:1::1x``) and an IPv6 default route (dual-stack, or
        IPv6-only without ``ipv4``), as a node whose jobs get IPv6 has."""
        assert ipv4 or ipv6
        index = len(self.hosts) + 1
        host = Host(
            f"{self.prefix}-h{index}",
            f"{SITE_NET}.{10 + index}" if ipv4 else "",
            f"{SITE_NET6}::{10 + index}" if ipv6 else None,
        )
        if ipv6:
            self.serve_ipv6()
        sh("ip", "netns", "add", host.netns)
        up = f"up{index}"
        sh(
            "ip",
            "link",
            "add",
            up,
            "type",
            "veth",
            "peer",
            "name",
            "uplink",
            "netns",
            host.netns,
            netns=self.site,
        )
        sh("ip", "link", "set", up, "master", "br0", "up", netns=self.site)
        steps: list[tuple[str, ...]] = [("link", "set", "lo", "up")]
        if ipv4:
            steps.append(("addr", "add", f"{host.address}/24", "dev", "uplink"))
        if ipv6:
            steps.append(("addr", "add", f"{host.address6}/64", "dev", "uplink", "nodad"))
        steps.append(("link", "set", "uplink", "up"))
        if ipv4:
            steps.append(("route", "add", "default", "via", SITE_ADDR))
        if ipv6:
            steps.append(("-6", "route", "add", "default", "via", SITE_ADDR6, "dev", "uplink"))
        for step in steps:
            sh("ip", *step, netns=host.netns)
        self.hosts.append(host)
        return host

    def set_lan_mtu(self, host: Host, mtu: int) -> None:
        """Jumbo frames (or smaller ones) on the site's LAN as far as ``host``: the site
        bridge's ports and the host's uplink (the site bridge follows its ports)."""
        up = f"up{host.netns.rsplit('-h', 1)[1]}"
        for link in ("site1", "site0", up):
            sh("ip", "link", "set", link, "mtu", str(mtu), netns=self.site)
        sh("ip", "link", "set", "uplink", "mtu", str(mtu), netns=host.netns)
        assert f" mtu {mtu} " in sh("ip", "link", "show", "br0", netns=self.site).stdout

    def start_in(self, netns: str, argv: list[str]) -> subprocess.Popen:
        proc = subprocess.Popen(
            ["nsenter", f"--net=/run/netns/{netns}", *argv],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.procs.append(proc)
        return proc

    def wait_for_port(self, netns: str, addr: str, port: int, timeout: float = 10.0) -> None:
        probe = (
            f"import socket,sys,time\nend=time.time()+{timeout}\n"
            "while time.time()<end:\n"
            f"  try: socket.create_connection(('{addr}',{port}),0.5).close(); sys.exit(0)\n"
            "  except OSError: time.sleep(0.05)\nsys.exit(1)"
        )
        sh(sys.executable, "-c", probe, netns=netns)

    # -- running the agent ------------------------------------------------

    def agent_argv(self, host: Host, *args: str, verb: str = "run") -> list[str]:
        base = ["nsenter", f"--net=/run/netns/{host.netns}", *AGENT, verb]
        if verb in ("run", "netns-test"):
            base += [
                "--state-dir",
                str(self.state_dir),
                "--lock-dir",
                str(self.lock_dir),
                "--log-file",
                str(self.log_file),
            ]
        return [*base, *args]

    def run_agent(
        self,
        host: Host,
        *args: str,
        env: dict | None = None,
        timeout: float = 60,
        verb: str = "run",
    ) -> subprocess.CompletedProcess:
        full_env = {**os.environ, **(env or {})}
        return subprocess.run(
            self.agent_argv(host, *args, verb=verb),
            capture_output=True,
            text=True,
            timeout=timeout,
            env=full_env,
        )

    def start_agent(
        self, host: Host, *args: str, env: dict | None = None, stdin: int | None = None
    ) -> subprocess.Popen:
        """The agent, its output piped; with ``stdin=subprocess.PIPE`` the test holds the
        job's stdin (a job that reads a line waits for the test: ``release``), and an agent
        a failed test left waiting is stopped with the sandbox."""
        proc = subprocess.Popen(
            self.agent_argv(host, *args),
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
        )
        if stdin is not None:
            self.procs.append(proc)
        return proc

    @staticmethod
    def release(agent: subprocess.Popen) -> None:
        """One line to the job's stdin: a job waiting on ``sys.stdin.readline()`` goes on."""
        agent.stdin.write("\n")
        agent.stdin.flush()

    @staticmethod
    def read_line(stream, timeout: float = 30.0) -> str:
        """One line from an agent's pipe, or fail the test instead of hanging it."""
        ready, _, _ = select.select([stream], [], [], timeout)
        assert ready, f"no output within {timeout} s"
        return stream.readline()

    # -- checking ---------------------------------------------------------

    def leftovers(self) -> list[str]:
        """Everything of this test's that is still there (empty list: clean)."""
        found = []
        for ns in netns_list():
            if ns.startswith(f"lark-{self.prefix}"):
                found.append(f"job netns {ns}")
        for host in self.hosts:
            links = sh("ip", "-o", "link", "show", netns=host.netns).stdout
            for line in links.splitlines():
                name = line.split(":")[1].strip().split("@")[0]
                if name not in ("lo", "uplink", *self.kept_links):
                    found.append(f"link {name} in {host.netns}")
            proxies = sh("ip", "-6", "neigh", "show", "proxy", netns=host.netns, check=False)
            found += [f"proxy NDP {ln} in {host.netns}" for ln in proxies.stdout.splitlines()]
            found += [f"{item} in {host.netns}" for item in nft_job_objects(host.netns)]
            found += [f"{item} in {host.netns}" for item in iptables_job_objects(host.netns)]
        for d in (self.state_dir, self.lock_dir):
            if d.exists():
                found += [f"file {p}" for p in d.iterdir()]
        found += [
            f"cgroup {path}" for path in test_cgroups(self.prefix) if path not in self.own_cgroups
        ]
        for name in self.logged_job_names():  # e.g. wrap's names, which carry no test prefix
            if name.startswith(self.prefix):
                continue
            if os.path.exists(f"/run/netns/lark-{name}"):
                found.append(f"job netns lark-{name}")
            found += [f"cgroup {path}" for path in job_cgroups(name, exact=True)]
        return found

    def logged_job_names(self) -> set[str]:
        """The job names the agents of this test logged."""
        try:
            text = self.log_file.read_text(errors="replace")
        except FileNotFoundError:
            return set()
        return set(_LOGGED_NAME.findall(text))

    def wait_clean(self, timeout: float = 5.0) -> list[str]:
        end = time.monotonic() + timeout
        while (left := self.leftovers()) and time.monotonic() < end:
            time.sleep(0.05)
        return left

    # -- teardown ---------------------------------------------------------

    def destroy(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        mine = (f"lark-{self.prefix}", f"{self.prefix}-")
        ours = [ns for ns in netns_list() if ns.startswith(mine)]
        # and the job namespaces of this test's agents whose names carry no prefix (wrap's)
        ours += [f"lark-{name}" for name in self.logged_job_names() if f"lark-{name}" not in ours]
        ours = [ns for ns in ours if os.path.exists(f"/run/netns/{ns}")]
        for ns in ours:  # whatever a failed test left running in them (a job, a server)
            for pid in _pids_in(ns):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        for ns in ours:
            sh("ip", "netns", "del", ns, check=False)
        for path in test_cgroups(self.prefix):  # and what a failed test left in its cgroups
            discard_cgroup(path)
        if not os.environ.get("LARK_TEST_KEEP"):  # (set: the agent log and ads stay to read)
            shutil.rmtree(self.tmp, ignore_errors=True)


def nft_job_objects(netns: str) -> list[str]:
    """Job chains, job sets and map/set elements of Lark's tables in a host namespace."""
    found = []
    for family in ("inet", "bridge"):
        out = sh("nft", "-j", "list", "table", family, "lark", netns=netns, check=False)
        if out.returncode != 0:
            continue
        for item in json.loads(out.stdout).get("nftables", []):
            if "chain" in item and item["chain"]["name"].startswith("LARK_"):
                found.append(f"nft {family} chain {item['chain']['name']}")
            for kind in ("map", "set"):
                obj = item.get(kind)
                if obj and obj["name"].startswith("LARK_"):
                    found.append(f"nft {family} {kind} {obj['name']}")
                elif obj and obj.get("elem"):
                    found.append(f"nft {family} {kind} {obj['name']} elements {obj['elem']}")
    return found


def wait_for(predicate, timeout: float = 5.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def start_kea(
    sandbox,
    lifetime: int = 6,
    netns: str | None = None,
    iface: str = "br0",
    tag: str = "kea",
    pool: tuple = KEA_POOL,
    authoritative: bool = False,
    subnet: str = f"{SITE_NET}.0/24",
    options: tuple[tuple[str, str], ...] = (),
):
    """Kea in the site namespace (or ``netns``), its files under the test's (or bench's)
    directory, with ``options`` ((name, data) pairs) besides the router; returns its log
    and process."""
    run_dir = sandbox.tmp / tag
    run_dir.mkdir()
    log = run_dir / "kea.log"
    conf = run_dir / "kea-dhcp4.conf"
    conf.write_text(
        json.dumps(
            {
                "Dhcp4": {
                    "interfaces-config": {"interfaces": [iface], "dhcp-socket-type": "raw"},
                    "authoritative": authoritative,
                    "lease-database": {"type": "memfile", "persist": False},
                    "valid-lifetime": lifetime,
                    "renew-timer": lifetime // 3,
                    "rebind-timer": lifetime // 2,
                    "subnet4": [
                        {
                            "id": 1,
                            "subnet": subnet,
                            "pools": [{"pool": f"{pool[0]} - {pool[1]}"}],
                            "option-data": [
                                {"name": "routers", "data": SITE_ADDR},
                                *({"name": n, "data": d} for n, d in options),
                            ],
                        }
                    ],
                    "loggers": [
                        {
                            "name": "kea-dhcp4",
                            "severity": "INFO",
                            "output_options": [{"output": str(log)}],
                        }
                    ],
                }
            }
        )
    )
    proc = sandbox.start_in(
        netns or sandbox.site,
        [
            "env",
            f"KEA_PIDFILE_DIR={run_dir}",
            f"KEA_LOCKFILE_DIR={run_dir}",
            "kea-dhcp4",
            "-c",
            str(conf),
        ],
    )
    assert wait_for(lambda: log.exists() and "DHCP4_STARTED" in log.read_text(), 10), proc
    return log, proc


def iptables_job_objects(netns: str) -> list[str]:
    """Lark's chains (LARK_<job>, LARK-FORWARD), jumps and masquerade rules in either iptables
    build of a namespace, and in either ip6tables build."""
    found = []
    for save in ("iptables-nft-save", "iptables-legacy-save", "ip6tables-nft-save",
                 "ip6tables-legacy-save"):  # fmt: skip
        if shutil.which(save) is None:
            continue
        out = sh(save, netns=netns, check=False).stdout
        found += [f"{save}: {line}" for line in out.splitlines() if "LARK" in line]
    return found


def cgroup_v2_mounts() -> list[Path]:
    """Where cgroup v2 is mounted (/sys/fs/cgroup/unified here, /sys/fs/cgroup on Debian 12)."""
    return [mount.point for mount in cgroup_mount_table() if mount.version == 2]


@dataclass(frozen=True)
class CgroupMount:
    """A cgroup file system mount: v2, or a v1 hierarchy and its controllers (a named one
    such as ``name=systemd`` has none)."""

    point: Path
    root: str  # the cgroup of the hierarchy the mount shows (``/``, or a subtree)
    version: int
    controllers: frozenset[str]

    def dir_of(self, path: str) -> Path | None:
        """Where cgroup ``path`` (as /proc/PID/cgroup names it) is below this mount."""
        root = self.root.rstrip("/")
        if path != self.root and not path.startswith(f"{root}/"):
            return None
        rest = path[len(root) :].strip("/")
        return self.point / rest if rest else self.point


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash as octal escapes (proc(5))."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


_V1_MOUNT_OPTIONS = {"rw", "ro", "noprefix", "clone_children", "xattr", "cpuset_v2_mode"}


def cgroup_mount_table(mountinfo: str | None = None) -> list[CgroupMount]:
    """The cgroup mounts of /proc/self/mountinfo: ``ID PARENT MAJ:MIN ROOT POINT OPTIONS
    [OPTIONAL...] - FSTYPE SOURCE SUPEROPTIONS``; a v1 mount's controllers are among its
    super options (``rw,cpu,cpuacct``).

    Each view (file system ``MAJ:MIN`` and root) once, at its first mount: a chroot or a
    container runtime may bind the same hierarchy elsewhere (/var/tmp/.../sys/fs/cgroup),
    and a cgroup seen twice would be counted, and left behind, twice."""
    if mountinfo is None:
        mountinfo = Path("/proc/self/mountinfo").read_text()
    mounts = []
    seen = set()
    for line in mountinfo.splitlines():
        left, sep, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if not sep or len(fields) < 5 or len(tail) < 3 or tail[0] not in ("cgroup", "cgroup2"):
            continue
        point, root = _unescape(fields[4]), _unescape(fields[3])
        if (fields[2], root) in seen:
            continue
        seen.add((fields[2], root))
        if tail[0] == "cgroup2":
            mounts.append(CgroupMount(Path(point), root, 2, frozenset()))
        else:
            opts = tail[2].split(",")
            controllers = frozenset(o for o in opts if o not in _V1_MOUNT_OPTIONS and "=" not in o)
            mounts.append(CgroupMount(Path(point), root, 1, controllers))
    return mounts


def _cgroup_dirs(wanted) -> list[Path]:
    """Every cgroup directory, in every hierarchy (v2 and v1), whose name ``wanted`` takes."""
    found = []
    for mount in cgroup_mount_table():
        for top, dirs, _ in os.walk(mount.point):
            found += [Path(top) / d for d in dirs if wanted(d)]
    return found


def job_cgroups(prefix: str, exact: bool = False) -> list[Path]:
    """The cgroups of this test's jobs (``lark-<prefix>...``, or exactly ``lark-<prefix>``),
    wherever they are, in any hierarchy."""
    if exact:
        return _cgroup_dirs(lambda d: d == f"lark-{prefix}")
    return _cgroup_dirs(lambda d: d.startswith(f"lark-{prefix}"))


def test_cgroups(prefix: str) -> list[Path]:
    """Every cgroup of this test, in cgroup v2 and in each v1 hierarchy: its jobs'
    (``lark-<prefix>...``) and those a test made itself (``<prefix>...``, e.g. a cgroup the
    agent is started in, or the simulated starter's), innermost first."""
    found = _cgroup_dirs(lambda d: d.startswith((prefix, f"lark-{prefix}")))
    return sorted(found, key=lambda path: len(path.parts), reverse=True)


def cgroup_pids(path: Path) -> list[int]:
    try:
        return [int(p) for p in (path / "cgroup.procs").read_text().split()]
    except FileNotFoundError:
        return []


def discard_cgroup(path: Path) -> None:
    """Kill what is in it and below, and remove it. A cgroup whose last task was just
    killed is busy (EBUSY) until that task has fully exited, after cgroup.procs is
    already empty: the removal is tried again for a while. A frozen one is thawed first
    (a task of a frozen v1 freezer cgroup does not die of SIGKILL until it is thawed)."""
    for name, thawed in (("cgroup.freeze", "0"), ("freezer.state", "THAWED")):
        with contextlib.suppress(OSError):
            (path / name).write_text(thawed)
    for child in sorted(path.glob("*/"), reverse=True):
        if (child / "cgroup.procs").exists():
            discard_cgroup(child)
    for _ in range(250):
        pids = cgroup_pids(path)
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.02)
    for _ in range(250):
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError as exc:
            if exc.errno != errno.EBUSY:
                return
        time.sleep(0.02)


_PREFIX = re.compile(f"{TEST_PREFIX}[0-9a-f]{{4}}")


def new_prefix() -> str:
    return f"{TEST_PREFIX}{secrets.token_hex(2)}"


CLAIMS = Path("/run/lark-test-sandboxes")


def claim(prefix: str) -> int:
    """Hold a sandbox's prefix for the life of the test (released with the process), so a
    concurrent run's sweep_stale never takes a sandbox still being built for stale."""
    CLAIMS.mkdir(mode=0o700, exist_ok=True)
    fd = os.open(CLAIMS / f"{prefix}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def release(prefix: str, fd: int) -> None:
    (CLAIMS / f"{prefix}.lock").unlink(missing_ok=True)
    os.close(fd)


def _claimed(prefix: str) -> bool:
    try:
        fd = os.open(CLAIMS / f"{prefix}.lock", os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def _pids_in(netns: str) -> list[int]:
    """Processes in a named network namespace."""
    try:
        target = os.stat(f"/run/netns/{netns}")
    except OSError:
        return []
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                st = os.stat(f"/proc/{entry.name}/ns/net")
            except OSError:
                continue
            if st.st_ino == target.st_ino:
                found.append(int(entry.name))
    return found


AGENTS = "lark.agents"  # LARK_AGENT_CGROUP's default, beside the starter's job cgroup
AGENTS_STOP_S = 15.0


def _stop_agents(group: Path) -> None:
    """A stale simulated starter's agents (tests/helpers/starter.py): the group thawed, each
    agent TERMed, and waited for a while, so that each tears its job down (its namespace
    carries no test prefix: nothing else would find it)."""
    for top, _, _ in os.walk(group):
        for name, thawed in (("cgroup.freeze", "0"), ("freezer.state", "THAWED")):
            with contextlib.suppress(OSError):
                (Path(top) / name).write_text(thawed)
    for pid in cgroup_pids(group / AGENTS):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not cgroup_pids(group / AGENTS), AGENTS_STOP_S)


def _has_processes(netns: str) -> bool:
    return bool(_pids_in(netns))


def sweep_stale() -> None:
    """Remove namespaces an earlier, interrupted test run left (our prefix only).

    A sandbox in use is claimed (its test holds the lock of its prefix) and has its HTTP
    server running in its site namespace; only sandboxes with neither are stale, so a
    concurrent test run is left alone.
    """
    names = netns_list()
    prefixes = {
        n.removeprefix("lark-")[: len(TEST_PREFIX) + 4]
        for n in names
        if n.startswith((TEST_PREFIX, f"lark-{TEST_PREFIX}"))
    }
    groups = test_cgroups(TEST_PREFIX)  # and the cgroups of such runs
    prefixes |= {g.name.removeprefix("lark-")[: len(TEST_PREFIX) + 4] for g in groups}
    for prefix in prefixes:
        if not _PREFIX.fullmatch(prefix):  # not one new_prefix() makes: another tool's
            continue
        if _claimed(prefix) or _has_processes(f"{prefix}-site"):
            continue
        for group in groups:  # agents a simulated starter ran: they clean up after themselves
            if group.name.startswith(prefix) and (group / AGENTS).exists():
                _stop_agents(group)
        for tmp in Path(tempfile.gettempdir()).glob(f"{prefix}.*"):  # and after dead ones:
            box = Sandbox(prefix, tmp, f"{prefix}-site")  # the names their log gives
            for name in box.logged_job_names():
                if os.path.exists(f"/run/netns/lark-{name}"):
                    for pid in _pids_in(f"lark-{name}"):
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(pid, signal.SIGKILL)
                    sh("ip", "netns", "del", f"lark-{name}", check=False)
        for ns in names:
            if ns.startswith((prefix, f"lark-{prefix}")):
                sh("ip", "netns", "del", ns, check=False)
        for group in groups:
            if group.name.startswith((prefix, f"lark-{prefix}")) and group.exists():
                discard_cgroup(group)


SITE_NET6 = "fd77:0:0:1"
SITE_ADDR6 = f"{SITE_NET6}::1"
KEA6_POOL = (f"{SITE_NET6}::100", f"{SITE_NET6}::1ff")  # the DHCPv6 servers' range in tests
KEA6_DNS = (f"{SITE_NET6}::53", f"{SITE_NET6}::54")
KEA6_DOMAINS = ("site.lark.test", "lark.test")


def ensure_site_ipv6(netns: str, iface: str = "br0", address: str = SITE_ADDR6) -> None:
    """An IPv6 address on ``iface`` of a test's own namespace (without DAD: it is the test's),
    and its link-local address usable, so that Kea listens there."""
    sh("ip", "addr", "replace", f"{address}/64", "dev", iface, "nodad", netns=netns)
    assert link_local_usable(netns, iface), (
        f"{iface} in {netns} has no usable IPv6 link-local address"
    )


def link_local_usable(netns: str, iface: str, timeout: float = 5.0) -> bool:
    """Whether ``iface`` in ``netns`` has an IPv6 link-local address that is no longer
    tentative (its duplicate address detection over) within ``timeout`` seconds."""

    def ready() -> bool:
        out = sh("ip", "-6", "-o", "addr", "show", "dev", iface, netns=netns).stdout
        return "fe80::" in out and "tentative" not in out

    return wait_for(ready, timeout)


def start_kea6(
    sandbox,
    *,
    netns: str | None = None,
    iface: str = "br0",
    address: str = SITE_ADDR6,
    tag: str = "kea6",
    pool: tuple[str, str] = KEA6_POOL,
    rapid_commit: bool = True,
    timers: tuple[int, int, int, int] = (2, 3, 5, 6),  # T1, T2, preferred, valid (s)
    server_id: str = "01:02:03:04",
    log_severity: str = "DEBUG",
):
    """Kea's DHCPv6 server in the site namespace (or ``netns``) on ``iface``, which gets the
    IPv6 address ``address``: its config, lease file, control socket and log under the
    test's directory; a pool, DNS servers and search domains (options 23/24). It logs at
    ``log_severity`` (tests read its DEBUG lines; a benchmark passes INFO, which still logs
    each lease). Returns its run directory (``kea.log``, ``leases6.csv``) and process."""
    netns = netns or sandbox.site
    ensure_site_ipv6(netns, iface, address)
    run_dir = sandbox.tmp / tag
    run_dir.mkdir()
    log = run_dir / "kea.log"
    conf = run_dir / "kea-dhcp6.conf"
    t1, t2, preferred, valid = timers
    conf.write_text(
        json.dumps(
            {
                "Dhcp6": {
                    "interfaces-config": {"interfaces": [iface]},
                    "data-directory": str(run_dir),
                    "server-id": {
                        "type": "EN",
                        "enterprise-id": 2495,
                        "identifier": server_id.replace(":", ""),
                        "persist": False,
                    },
                    "control-socket": {
                        "socket-type": "unix",
                        "socket-name": str(run_dir / "kea6.sock"),
                    },
                    "lease-database": {
                        "type": "memfile",
                        "persist": True,
                        "name": str(run_dir / "leases6.csv"),
                        "lfc-interval": 0,
                    },
                    "renew-timer": t1,
                    "rebind-timer": t2,
                    "preferred-lifetime": preferred,
                    "valid-lifetime": valid,
                    "subnet6": [
                        {
                            "id": 1,
                            "subnet": f"{SITE_NET6}::/64",
                            "interface": iface,
                            "rapid-commit": rapid_commit,
                            "pools": [{"pool": f"{pool[0]} - {pool[1]}"}],
                            "option-data": [
                                {"name": "dns-servers", "data": ", ".join(KEA6_DNS)},
                                {"name": "domain-search", "data": ", ".join(KEA6_DOMAINS)},
                            ],
                        }
                    ],
                    "loggers": [
                        {
                            "name": "kea-dhcp6",
                            "severity": log_severity,
                            "debuglevel": 40 if log_severity == "DEBUG" else 0,
                            "output_options": [{"output": str(log)}],
                        }
                    ],
                }
            }
        )
    )
    proc = sandbox.start_in(
        netns,
        [
            "env",
            f"KEA_PIDFILE_DIR={run_dir}",
            f"KEA_LOCKFILE_DIR={run_dir}",
            "kea-dhcp6",
            "-c",
            str(conf),
        ],
    )
    assert wait_for(lambda: log.exists() and "DHCP6_STARTED" in log.read_text(), 10), proc
    return run_dir, proc
