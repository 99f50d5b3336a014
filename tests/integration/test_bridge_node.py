"""Making the site bridge from the node's LAN device costs the node nothing: every address,
route and rule it had is there afterwards, on the bridge, or -- when making it fails at any
point -- exactly as it was. And a bridge deleted under running jobs ends them, loudly."""

from __future__ import annotations

import difflib
import re
import signal

import pytest
from helpers.agent import cleanup
from helpers.bridge import static_flags
from sandbox import SITE_ADDR, ping, sh, wait_for

SITE6 = "2001:db8:77::1"
HOST6 = "2001:db8:77::11"

# What a node may have on its LAN device besides one IPv4 address and a default route.
NODE_SETUP = [
    # IPv6: a global address (with DAD, as usual), its default route, a second address with
    # lifetimes and no prefix route, a route with a metric and an MTU
    ("-6", "addr", "add", f"{HOST6}/64", "dev", "uplink"),
    ("-6", "route", "add", "default", "via", SITE6, "dev", "uplink", "metric", "512"),
    ("-6", "addr", "add", "2001:db8:78::11/64", "dev", "uplink", "valid_lft", "3600",
     "preferred_lft", "1800", "noprefixroute"),
    ("-6", "route", "add", "2001:db8:99::/64", "via", SITE6, "dev", "uplink", "metric", "300",
     "mtu", "1300"),
    # IPv4: a secondary address with a label, another primary whose prefix route has a
    # metric, one with lifetimes
    ("addr", "add", "10.77.0.211/24", "dev", "uplink", "label", "uplink:sec"),
    ("addr", "add", "10.78.0.11/24", "dev", "uplink", "metric", "50"),
    ("addr", "add", "10.79.0.11/24", "dev", "uplink", "valid_lft", "3600", "preferred_lft", "1800"),
    # routes: onlink, with metrics, another protocol, a policy-routing table and its rules
    ("route", "add", "10.99.0.0/24", "via", "10.98.0.1", "dev", "uplink", "onlink"),
    ("route", "add", "10.97.0.0/24", "via", "10.77.0.1", "dev", "uplink", "metric", "50", "mtu",
     "1400", "advmss", "1360", "proto", "static"),
    ("route", "add", "default", "via", "10.77.0.1", "dev", "uplink", "table", "100"),
    ("route", "add", "10.96.0.0/24", "dev", "uplink", "table", "100", "scope", "link"),
    ("route", "add", "10.95.0.0/24", "dev", "dum0", "src", "10.77.0.211"),
    ("-6", "route", "add", "default", "via", SITE6, "dev", "uplink", "table", "100"),
    ("rule", "add", "from", "10.77.0.211", "lookup", "100", "priority", "100"),
    ("rule", "add", "iif", "uplink", "lookup", "100", "priority", "101"),
    ("rule", "add", "from", "10.78.0.11", "lookup", "100", "priority", "101"),
    ("rule", "add", "oif", "uplink", "lookup", "main", "priority", "102"),
    ("-6", "rule", "add", "from", "2001:db8:78::11", "lookup", "100", "priority", "100"),
    # static neighbours
    ("neigh", "add", "10.77.0.250", "lladdr", "02:00:00:00:00:fa", "dev", "uplink"),
    ("-6", "neigh", "add", "2001:db8:77::fa", "lladdr", "02:00:00:00:00:fb", "dev", "uplink"),
]  # fmt: skip
# and the link's own settings
SYSCTLS = {
    "net.ipv6.conf.uplink.accept_ra": "2",
    "net.ipv4.conf.uplink.rp_filter": "2",
    "net.ipv4.conf.uplink.arp_ignore": "1",
}

STATE = {
    "addr": ("ip", "-d", "addr"),
    "route": ("ip", "route", "show", "table", "all"),
    "route6": ("ip", "-6", "route", "show", "table", "all"),
    "rule": ("ip", "rule"),
    "rule6": ("ip", "-6", "rule"),
    "neigh": ("ip", "neigh", "show", "nud", "permanent"),
}


def furnish(sandbox, host) -> None:
    """Give the execute host the configuration above (and another link, for a route that
    uses one of the LAN device's addresses as its source)."""
    sandbox.kept_links.update({"lark", "dum0", "dum1"})
    sh("ip", "-6", "addr", "add", f"{SITE6}/64", "dev", "br0", "nodad", netns=sandbox.site)
    sh("ip", "link", "add", "dum0", "type", "veth", "peer", "name", "dum1", netns=host.netns)
    sh("ip", "link", "set", "dum1", "up", netns=host.netns)
    sh("ip", "link", "set", "dum0", "up", netns=host.netns)
    for step in NODE_SETUP:
        sh("ip", *step, netns=host.netns)
    for key, value in SYSCTLS.items():
        sh("sysctl", "-q", "-w", f"{key}={value}", netns=host.netns)
    settled = lambda: "tentative" not in sh("ip", "addr", netns=host.netns).stdout  # noqa: E731
    assert wait_for(settled, 10), sh("ip", "addr", netns=host.netns).stdout
    promote = sh("sysctl", "-n", "net.ipv4.conf.uplink.promote_secondaries", netns=host.netns)
    assert promote.stdout.strip() == "0"  # the kernel's default: a primary takes its secondaries


def node_state(host) -> dict[str, str]:
    """What ``ip`` shows of the node; remaining lifetimes tick, so only their being finite
    is kept, and each link's own IPv6 routes are listed last (PER_LINK)."""
    state = {}
    for key, cmd in STATE.items():
        text = re.sub(r"\b\d+sec\b", "Nsec", sh(*cmd, netns=host.netns).stdout)
        if key.startswith("route"):
            text = "\n".join(per_link_last(text.splitlines()))
        if key == "neigh":  # (a hash table: no order)
            text = "\n".join(sorted(text.splitlines()))
        state[key] = text
    return state


def assert_same(before: dict[str, str], after: dict[str, str]) -> None:
    for key, text in before.items():
        diff = difflib.unified_diff(text.splitlines(), after[key].splitlines(), lineterm="")
        assert text == after[key], f"{key}:\n" + "\n".join(diff)


def link_sysctls(host, link: str) -> dict[str, str]:
    """``net.ipv{4,6}.conf.LINK.*`` by setting name."""
    out = sh("sysctl", "-a", "-e", netns=host.netns).stdout
    found = {}
    for line in out.splitlines():
        key, _, value = line.partition(" = ")
        family, conf, name, setting = [*key.split("."), "", "", "", ""][1:5]
        if conf == "conf" and name == link:
            found[f"{family}.{setting}"] = value
    return found


def links(addr_output: str) -> dict[str, list[str]]:
    """``ip -d addr`` by link name."""
    blocks: dict[str, list[str]] = {}
    name = ""
    for line in addr_output.splitlines():
        head = re.match(r"^\d+: ([^:@]+)", line)
        if head:
            name = head.group(1)
            blocks[name] = []
        blocks[name].append(line)
    return blocks


def addresses(block: list[str]) -> list[str]:
    """A link's address lines with their lifetime lines."""
    out, keep = [], False
    for line in block:
        if line.startswith("    inet"):
            keep = True
        elif not line.startswith("       "):
            keep = False
        if keep:
            out.append(line)
    return out


def link_facts(block: list[str]) -> tuple[str | None, str | None]:
    text = "\n".join(block)
    mac = re.search(r"link/ether (\S+)", text)
    mtu = re.search(r" mtu (\d+)", text)
    return (mac and mac.group(1)), (mtu and mtu.group(1))


# The kernel's IPv6 routes of each link, listed in the order the links came: a destination
# they match always names its link, so their order means nothing.
PER_LINK = re.compile(r"^(fe80::/64|multicast ff00::/8) dev \S+ .*proto kernel")


def per_link_last(lines: list[str]) -> list[str]:
    """The routes in order, but those of PER_LINK sorted, at the end."""
    return [ln for ln in lines if not PER_LINK.match(ln)] + sorted(filter(PER_LINK.match, lines))


# What the kernel gives every link with IPv6 up, the bridge's port too.
PORT_KERNEL_ROUTES = {
    "multicast ff00::/8 dev uplink table local proto kernel metric 256 pref medium"
}


def test_the_bridge_takes_every_address_route_and_rule_of_the_device(sandbox, host):
    furnish(sandbox, host)
    before, settings = node_state(host), link_sysctls(host, "uplink")
    for _ in range(2):  # the second job finds the bridge the first made
        r = sandbox.run_agent(host, *sandbox.who(), *static_flags(), "--", "true")
        assert r.returncode == 0, r.stderr + sandbox.log_file.read_text()
    assert sandbox.log_file.read_text().count("created bridge lark from uplink") == 1
    assert not sandbox.wait_clean()  # the jobs' veths go with their namespaces, soon after
    after = node_state(host)

    was, now = links(before["addr"]), links(after["addr"])
    assert set(now) == set(was) | {"lark"}
    for name in set(was) - {"uplink"}:
        assert now[name] == was[name]
    moved = [line.replace("uplink", "lark") for line in addresses(was["uplink"])]
    assert addresses(now["lark"]) == moved
    assert any(" inet6 2001:db8:77::11/64 scope global" in line for line in moved)
    assert any(" secondary lark:sec" in line for line in moved)
    assert addresses(now["uplink"]) == []
    assert link_facts(now["lark"]) == link_facts(was["uplink"])

    for key in ("route", "route6"):
        port = {ln for ln in after[key].splitlines() if " dev uplink " in ln}
        assert port <= PORT_KERNEL_ROUTES, port
        rest = per_link_last([ln for ln in after[key].splitlines() if ln not in port])
        expected = per_link_last(before[key].replace(" dev uplink ", " dev lark ").splitlines())
        assert rest == expected, "\n".join(difflib.unified_diff(expected, rest, lineterm=""))
    for key in ("rule", "rule6"):
        assert after[key] == before[key].replace("if uplink ", "if lark ")
    assert after["neigh"] == before["neigh"].replace(" dev uplink ", " dev lark ")
    assert "10.77.0.250 dev lark lladdr 02:00:00:00:00:fa PERMANENT" in after["neigh"]
    assert link_sysctls(host, "lark") == settings

    # and the node uses them: IPv6 out of its default route, IPv4 from its secondary
    ping(host.netns, SITE6)
    ping(host.netns, SITE_ADDR, source="10.77.0.211")


@pytest.mark.parametrize(
    "step", ["bridge-create", "bridge-clear", "bridge-addresses", "bridge-routes", "bridge-rules"]
)
def test_a_bridge_that_cannot_be_made_leaves_the_node_as_it_was(sandbox, host, step):
    furnish(sandbox, host)
    before = node_state(host)
    r = sandbox.run_agent(
        host, *sandbox.who(), *static_flags(), "--", "true", env={"_LARK_TEST_FAIL_AFTER": step}
    )
    assert r.returncode == 125, r.stderr
    warned = f"lark-agent: WARNING: test failure after {step}"  # (the hook says so)
    assert [ln for ln in r.stderr.strip().splitlines() if ln != warned] == [
        f"lark-agent: error: make bridge lark from uplink: test failure after {step}: injected "
        "by _LARK_TEST_FAIL_AFTER; uplink is as it was"
    ]
    assert_same(before, node_state(host))
    ping(host.netns, SITE6)


@pytest.mark.parametrize("step", ["bridge-clear", "bridge-routes"])
def test_a_bridge_half_made_by_a_killed_agent_is_taken_back_by_the_next(sandbox, host, step):

    furnish(sandbox, host)
    before = node_state(host)
    killed = sandbox.start_agent(
        host, *sandbox.who(sandbox.job_name("k")), *static_flags(), "--", "true",
        env={"_LARK_TEST_PAUSE_AFTER": step},
    )  # fmt: skip
    paused = f"test pause after {step}"
    log = sandbox.log_file
    assert wait_for(lambda: log.exists() and paused in log.read_text(errors="replace"), 20)
    killed.kill()  # SIGKILL: the node is half moved
    killed.communicate(timeout=10)
    assert node_state(host) != before
    # the next agent takes it back before anything else (here: then fails to make it anew)
    r = sandbox.run_agent(
        host, *sandbox.who(), *static_flags(), "--", "true",
        env={"_LARK_TEST_FAIL_AFTER": "bridge-create"},
    )  # fmt: skip
    assert r.returncode == 125, r.stderr
    assert "an agent was killed while making bridge lark: its changes are taken back" in r.stderr
    assert_same(before, node_state(host))
    assert not (sandbox.lock_dir / "bridge-lark.journal").exists()
    swept = cleanup(sandbox, host)  # (the killed agent's job record)
    assert swept.returncode == 0, swept.stdout + swept.stderr


def test_a_deleted_bridge_stops_its_jobs_and_says_why(sandbox, host):
    sandbox.kept_links.add("lark")
    name = sandbox.job_name()
    proc = sandbox.start_agent(
        host,
        *sandbox.who(name),
        *static_flags(),
        "--",
        "/bin/sh",
        "-c",
        "echo ready; exec sleep 60",
    )
    assert sandbox.read_line(proc.stdout).strip() == "ready"
    sh("ip", "link", "del", "lark", netns=host.netns)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert (
        "bridge lark was deleted while the job ran (the job is off the LAN); stopping the job"
        in err
    )


def start_router_advertisements(sandbox):
    """dnsmasq advertising 2001:db8:77::/64 for SLAAC, rarely (every 10 minutes) but
    answering every router solicitation at once."""
    sh("ip", "-6", "addr", "add", f"{SITE6}/64", "dev", "br0", "nodad", netns=sandbox.site)
    sandbox.start_in(
        sandbox.site,
        [
            "dnsmasq",
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--port=0",
            "--interface=br0",
            "--bind-interfaces",
            "--enable-ra",
            "--dhcp-range=2001:db8:77::,ra-only,64,1h",
            "--ra-param=br0,600,1800",
            f"--pid-file={sandbox.tmp / 'ra.pid'}",
            "--user=root",
            f"--log-facility={sandbox.tmp / 'ra.log'}",
        ],
    )


def slaac_state(host, link: str) -> tuple[str, str]:
    addrs = sh("ip", "-6", "addr", "show", "dev", link, "scope", "global", netns=host.netns)
    route = sh("ip", "-6", "route", "show", "default", "dev", link, netns=host.netns)
    return addrs.stdout, route.stdout


@pytest.mark.parametrize("fail", [None, "bridge-rules"])
def test_a_slaac_node_keeps_its_address_and_its_router(sandbox, host, fail):
    """The address the node made from its router's advertisement stays valid on the bridge
    (same MAC, same lifetimes, no second DAD); what it learned from the router (default
    route, on-link prefix) is asked for again at once -- on the device after a rollback."""
    sandbox.kept_links.add("lark")
    start_router_advertisements(sandbox)
    learned = lambda link: "proto ra" in slaac_state(host, link)[1]  # noqa: E731
    made = lambda: "dynamic" in (a := slaac_state(host, "uplink")[0]) and "tentative" not in a  # noqa: E731
    assert wait_for(lambda: learned("uplink") and made(), 20)
    addrs, _ = slaac_state(host, "uplink")
    env = {"_LARK_TEST_FAIL_AFTER": fail} if fail else {}
    r = sandbox.run_agent(host, *sandbox.who(), *static_flags(), "--", "true", env=env)
    assert r.returncode == (125 if fail else 0), r.stderr
    link = "uplink" if fail else "lark"
    now, _ = slaac_state(host, link)
    assert (
        re.sub(r"\d+sec", "N", now).replace(link, "uplink").splitlines()[1:]
        == (re.sub(r"\d+sec", "N", addrs).splitlines()[1:])
    )
    assert "tentative" not in now
    assert wait_for(lambda: learned(link), 10), slaac_state(host, link)
    if not fail:  # nothing learned stays on the port (traffic would leave by it)
        routes = sh("ip", "-6", "route", "show", "table", "all", netns=host.netns).stdout
        assert {ln for ln in routes.splitlines() if " dev uplink " in ln} <= PORT_KERNEL_ROUTES
    ping(host.netns, SITE6)
