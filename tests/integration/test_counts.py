"""Published counts never go backwards, whatever others do to the firewall, and a bridged
frame is counted once for each job whose port it crosses."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path

import classad2
import pytest
from helpers.agent import python_job, read_update_ad
from helpers.bridge import static_flags
from helpers.firewall import BACKENDS
from sandbox import FILE_SIZES, SITE_NET, sh

MB = FILE_SIZES["1m"]
IP_OVERHEAD = 1.06  # IP bytes of a download against its payload (headers, the request)
COUNTS = ("NetworkIncoming", "NetworkOutgoing")
REPLACED = "read lower than before"  # the agent's warning when a counter went back

FETCH_ON_REQUEST = (
    "import sys, urllib.request\n"
    "n = 0\n"
    "for _ in sys.stdin:\n"
    "    n += len(urllib.request.urlopen(sys.argv[1], timeout=10).read())\n"
    "    print('got', n, flush=True)\n"
)


def parse_ad(text: str) -> dict:
    return dict(classad2.parseOne(text, classad2.ParserType.Old).items())


class AdWatch:
    """Every version of the update ad the agent writes (read every few ms in a thread)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.versions: list[dict] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        seen = None
        while not self._stop.is_set():
            try:  # the agent replaces the file whole (a rename): each write is a new file
                with open(self.path) as f:
                    st = os.fstat(f.fileno())
                    version = (st.st_ino, st.st_mtime_ns)
                    if version != seen:
                        seen = version
                        self.versions.append(parse_ad(f.read()))
            except FileNotFoundError:
                pass
            time.sleep(0.002)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def wait_for(self, predicate, timeout: float = 30.0) -> dict:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for ad in list(self.versions):
                if predicate(ad):
                    return ad
            time.sleep(0.01)
        raise AssertionError(f"no update ad like that within {timeout} s: {self.versions[-1:]}")

    def wait_polls(self, polls: int, timeout: float = 30.0) -> dict:
        """The newest ad after ``polls`` more rewrites (so at least one read began after
        now)."""
        goal = len(self.versions) + polls
        self.wait_for(lambda _ad: len(self.versions) >= goal, timeout)
        return self.versions[-1]

    def assert_never_lower(self) -> None:
        for name in COUNTS:
            values = [ad[name] for ad in self.versions if name in ad]
            assert values == sorted(values), f"{name} went back: {values}"


class DrivenJob:
    """A NAT job that downloads 1 MB each time the test asks, under an agent whose every
    update ad is watched; used as a context, which stops the agent if the test fails."""

    def __init__(self, sandbox, host, *flags: str, interval: str = "0.1") -> None:
        self.sandbox = sandbox
        update = sandbox.tmp / "update.ad"
        argv = sandbox.agent_argv(
            host, *sandbox.who(), "--update-ad", str(update), "--accounting-interval", interval,
            *flags, "--", *python_job(FETCH_ON_REQUEST, sandbox.url("1m")),
        )  # fmt: skip
        self.agent = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.ads = AdWatch(update)
        self.fetched = 0

    def fetch(self) -> None:
        self.agent.stdin.write("\n")
        self.agent.stdin.flush()
        self.fetched += MB
        assert self.sandbox.read_line(self.agent.stdout).split() == ["got", str(self.fetched)]

    def wait_counted(self) -> dict:
        """The ad once what the job fetched so far is published (a poll that began after the
        job had all of it)."""
        return self.ads.wait_polls(2)

    def log(self) -> str:
        return self.sandbox.log_file.read_text()

    def __enter__(self) -> DrivenJob:
        return self

    def __exit__(self, *_exc: object) -> None:
        if self.agent.poll() is None:
            self.agent.terminate()  # the agent stops its job and cleans up
            self.agent.communicate(timeout=30)
        self.ads.stop()

    def finish(self) -> dict:
        """Let the job exit; the final update ad."""
        _out, err = self.agent.communicate(timeout=60)
        self.ads.stop()
        assert self.agent.returncode == 0, err
        final = read_update_ad(self.ads.path)
        if self.ads.versions[-1] != final:  # the last rewrite, in case the watch missed it
            self.ads.versions.append(final)
        self.ads.assert_never_lower()
        return final


@pytest.fixture(params=list(BACKENDS))
def backend(request) -> tuple[str, ...]:
    return BACKENDS[request.param]


def test_a_flush_just_before_the_job_exits_leaves_the_published_counts(sandbox, host, backend):
    """The final read finds the job's rules gone (nft) or empty (iptables); no poll comes
    between the flush and the job's exit (the flush follows a poll, and the next is 3 s
    away): the final ad keeps what was published, it does not fall to zero."""
    flush = ("nft", "flush", "ruleset") if backend[1] == "nftables" else (backend[3], "-w", "-F")
    with DrivenJob(sandbox, host, *backend, interval="3") as job:
        job.fetch()
        published = job.ads.wait_for(lambda ad: ad["NetworkIncoming"] >= MB)
        sh(*flush, netns=host.netns)
        final = job.finish()
    assert "restoring it" not in job.log()  # the agent never saw the flush before the end
    for name in COUNTS:
        assert final[name] >= published[name] > 0, name


def test_rules_the_agent_puts_back_count_from_zero_however_much_they_count(sandbox, host):
    """After a flush the agent's fresh rules count from zero, known: the job fetching twice
    what it had before, all before the next poll, is counted whole (a rule that merely reads
    more than the last poll could be taken for the old one, still growing)."""
    with DrivenJob(sandbox, host, *BACKENDS["nftables"], interval="3") as job:
        job.fetch()
        job.ads.wait_for(lambda ad: ad["NetworkIncoming"] >= MB)
        sh("nft", "flush", "ruleset", netns=host.netns)
        job.ads.wait_for(lambda _ad: "restoring it" in job.log())
        job.ads.wait_polls(1)  # the rules are back; the next poll is 3 s after this one
        job.fetch()
        job.fetch()
        final = job.finish()
    assert 3 * MB <= final["NetworkIncoming"] <= 3 * MB * IP_OVERHEAD
    assert REPLACED not in job.log()


def replace_mid_job(sandbox, host, flags: tuple[str, ...], save, restore) -> dict:
    """The job fetches 1 MB, someone saves the firewall, the job fetches another, someone
    restores what was saved (rules with the counts of then, or zeros), the agent notices,
    the job fetches a third and exits: the final ad."""
    with DrivenJob(sandbox, host, *flags) as job:
        job.fetch()
        job.wait_counted()
        saved = save()
        job.fetch()
        before = job.wait_counted()
        assert before["NetworkIncoming"] >= 2 * MB
        restore(saved)
        job.wait_counted()  # a poll read the replaced rules before the next download
        job.fetch()
        final = job.finish()  # (every ad at least the one before it)
    assert REPLACED in job.log()
    return final


def test_a_ruleset_reloaded_from_a_file_saved_mid_job_neither_lowers_nor_doubles(sandbox, host):
    """``nft list ruleset`` keeps the counters: reloaded, the job's rule goes back to 1 MB.
    What it counted before the save is not charged twice, what came after is not lost."""
    saved_file = sandbox.tmp / "saved.nft"

    def save() -> None:
        saved_file.write_text(sh("nft", "list", "ruleset", netns=host.netns).stdout)

    def reload(_saved: None) -> None:
        text = "flush ruleset\n" + saved_file.read_text()
        saved_file.write_text(text)
        sh("nft", "-f", str(saved_file), netns=host.netns)

    final = replace_mid_job(sandbox, host, BACKENDS["nftables"], save, reload)
    assert 3 * MB <= final["NetworkIncoming"] <= 3 * MB * IP_OVERHEAD


@pytest.mark.parametrize("build", ["iptables-nft", "iptables-legacy"])
@pytest.mark.parametrize("with_counters", [False, True], ids=["zeros", "saved-counters"])
def test_a_full_iptables_restore_mid_job_neither_lowers_nor_doubles(
    sandbox, host, build, with_counters
):
    """A site tool's full ``iptables-restore`` (no ``--noflush``) of a file saved mid-job:
    the job's counters go back to zero, or with ``-c`` to what they were when saved."""
    counters = ("-c",) if with_counters else ()

    def save() -> str:
        return sh(f"{build}-save", *counters, netns=host.netns).stdout

    def restore(saved: str) -> None:
        argv = ["nsenter", f"--net=/run/netns/{host.netns}", f"{build}-restore", "-w", *counters]
        subprocess.run(argv, input=saved, text=True, check=True, capture_output=True)

    final = replace_mid_job(sandbox, host, BACKENDS[build], save, restore)
    assert 3 * MB <= final["NetworkIncoming"] <= 3 * MB * IP_OVERHEAD


# -- bridge mode: a flooded frame is counted once per job port it crosses ----------------------

FRAMES = 100
PAYLOAD = 1000
IP_BYTES = 20 + 8 + PAYLOAD  # one datagram at the IP layer
FLOODED = ("255.255.255.255", f"{SITE_NET}.255", "239.1.2.3")  # broadcast twice, multicast
SEND_ON_REQUEST = f"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
print("ready", flush=True)
sys.stdin.readline()
for destination in sys.argv[1:]:
    for _ in range({FRAMES}):
        s.sendto(b"x" * {PAYLOAD}, (destination, 9))
print("sent", flush=True)
sys.stdin.readline()
"""


class BridgedJob:
    """A static bridged job that sends datagrams to ``destinations`` when told (none: it
    idles), then waits to be told to exit."""

    def __init__(self, sandbox, host, suffix: str, address: str, *destinations: str) -> None:
        self.sandbox = sandbox
        name = f"{sandbox.prefix}{suffix}"
        self.update = sandbox.tmp / f"{name}.ad"
        argv = sandbox.agent_argv(
            host, *sandbox.who(name), "--update-ad", str(self.update),
            *static_flags(address), "--", *python_job(SEND_ON_REQUEST, *destinations),
        )  # fmt: skip
        self.agent = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )

    def expect(self, line: str) -> None:
        assert self.sandbox.read_line(self.agent.stdout).strip() == line

    def tell(self) -> None:
        self.agent.stdin.write("\n")
        self.agent.stdin.flush()

    def finish(self) -> tuple[int, int]:
        """(outgoing, incoming) of the final update ad."""
        _out, err = self.agent.communicate("\n", timeout=60)
        assert self.agent.returncode == 0, err
        ad = read_update_ad(self.update)
        return ad["NetworkOutgoing"], ad["NetworkIncoming"]


def test_broadcast_and_multicast_are_counted_once_per_job(sandbox, host):
    """One job floods the LAN (the bridge hands each frame to every port) while three others
    idle: the sender is charged each frame once, each idle job once for the copy that
    reached it, and nobody for the copies that went to the others."""
    sandbox.kept_links.add("lark")
    sender = BridgedJob(sandbox, host, "s", f"{SITE_NET}.80", *FLOODED)
    jobs = [sender] + [BridgedJob(sandbox, host, f"i{i}", f"{SITE_NET}.{81 + i}") for i in range(3)]
    try:
        for job in jobs:
            job.expect("ready")
        sender.tell()
        sender.expect("sent")
    finally:
        charged = [job.finish() for job in jobs]
    flooded = len(FLOODED) * FRAMES * IP_BYTES
    # Besides the test's frames only the node's own IGMP reports reach the jobs (a bridge
    # with multicast snooping joins 224.0.0.106 when it comes up; 40 bytes, to every port),
    # far less than one of the test's frames: a frame counted twice shows.
    outgoing, chatter = charged[0]
    assert outgoing == flooded and chatter < IP_BYTES, charged
    for outgoing, incoming in charged[1:]:
        assert outgoing == 0 and flooded <= incoming < flooded + IP_BYTES, charged
