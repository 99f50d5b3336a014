"""Policy: job requests within the admin's limits, and the admin's policy script."""

from __future__ import annotations

import random
import signal

from helpers.agent import FETCH_JOB, python_job, read_update_ad
from helpers.bridge import STATIC, static_flags
from helpers.scripts import script
from sandbox import FILE_SIZES, sh

SHOW_LINKS = python_job("import socket; print(sorted(n for _, n in socket.if_nameindex()))")


def run(sandbox, host, *flags: str, job_ad: str | None = None, env=None):
    extra: list[str] = []
    if job_ad is not None:
        path = sandbox.tmp / "job.ad"
        path.write_text(job_ad)
        extra += ["--job-ad", str(path)]
    update = sandbox.tmp / "update.ad"
    r = sandbox.run_agent(
        host, *sandbox.who(), "--update-ad", str(update), *extra, *flags, "--", *SHOW_LINKS, env=env
    )
    return r, update


def test_a_job_that_wants_no_network_gets_loopback_only(sandbox, host):
    r, update = run(sandbox, host, job_ad="WantJobNetworking = false\n")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "['lo']"
    assert read_update_ad(update)["LarkNetworkType"] == "none"


def test_inbound_connectivity_is_a_wish_the_node_grants_when_it_bridges(sandbox, host):
    """``InboundConnectivity = true``: NAT on a node that does not bridge (not a refusal),
    bridged onto the site LAN on one that does, and never "no network" even with
    ``OutboundConnectivity = false`` beside it."""
    name = sandbox.job_name()
    wish = "InboundConnectivity = true\n"
    for job_ad in (wish, wish + "OutboundConnectivity = false\n"):
        r, update = run(sandbox, host, job_ad=job_ad)
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == f"['i_{name}', 'lo']"
        assert read_update_ad(update)["LarkNetworkType"] == "nat"
    assert "inbound connectivity; this node does not bridge: NAT" in sandbox.log_file.read_text()
    sandbox.kept_links.add("lark")  # (the bridge made from the uplink stays)
    bridging = ("--allowed-network-types", "nat, bridge, none", *static_flags()[2:])
    r, update = run(sandbox, host, *bridging, job_ad=wish)
    assert r.returncode == 0, r.stderr + sandbox.log_file.read_text()
    assert r.stdout.strip() == f"['i_{name}', 'lo']"
    ad = read_update_ad(update)
    assert ad["LarkNetworkType"] == "bridge" and ad["LarkInnerAddressIPv4"] == STATIC


def test_a_job_that_wants_no_outbound_connectivity_gets_loopback_only(sandbox, host):
    r, update = run(sandbox, host, job_ad="OutboundConnectivity = false\n")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "['lo']"
    assert read_update_ad(update)["LarkNetworkType"] == "none"
    r, update = run(sandbox, host, job_ad="OutboundConnectivity = true\n")
    assert r.returncode == 0, r.stderr
    assert read_update_ad(update)["LarkNetworkType"] == "nat"


def fetch_counted(sandbox, host, job_ad: str, env=None) -> dict:
    job, update = sandbox.tmp / "job.ad", sandbox.tmp / "update.ad"
    job.write_text(job_ad)
    r = sandbox.run_agent(
        host,
        *sandbox.who(),
        "--job-ad",
        str(job),
        "--update-ad",
        str(update),
        "--",
        *FETCH_JOB,
        sandbox.url("1m"),
        env=env,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(FILE_SIZES["1m"])
    return read_update_ad(update)


def test_network_accounting_false_is_honoured_unless_the_admin_forces_it(sandbox, host):
    counts = ("NetworkIncoming", "NetworkOutgoing", "NetworkInputMb", "NetworkOutputMb")
    ad = fetch_counted(sandbox, host, "NetworkAccounting = true\n")
    assert ad["NetworkIncoming"] >= FILE_SIZES["1m"]
    ad = fetch_counted(sandbox, host, "NetworkAccounting = false\n")
    assert ad["LarkNetworkType"] == "nat"
    assert not [c for c in counts if c in ad], ad
    config = sandbox.tmp / "condor_config"  # (htcondor2 resolves the host's name unless told)
    config.write_text(
        "NO_DNS = true\nDEFAULT_DOMAIN_NAME = lark.invalid\nLARK_FORCE_ACCOUNTING = true\n"
    )
    ad = fetch_counted(
        sandbox, host, "NetworkAccounting = false\n", env={"CONDOR_CONFIG": str(config)}
    )
    assert ad["NetworkIncoming"] >= FILE_SIZES["1m"] and ad["NetworkOutgoing"] > 0
    assert ad["NetworkInputMb"] >= 1.0


def test_a_job_asking_for_a_mode_the_node_does_not_allow_is_refused(sandbox, host):
    err = sandbox.tmp / "wrapper.err"
    r, _ = run(
        sandbox,
        host,
        job_ad='LarkNetworkType = "bridge"\n',
        env={"_CONDOR_WRAPPER_ERROR_FILE": str(err)},
    )
    assert r.returncode == 125
    reason = (
        'the job asks for network type "bridge", which this node does not allow '
        "(allowed: nat, none)"
    )
    assert r.stderr.strip() == f"lark-agent: error: {reason}"
    assert reason in err.read_text()


def test_the_policy_script_has_the_last_word(sandbox, host):
    policy = script(
        sandbox,
        "policy",
        "#!/bin/sh\n"
        "if grep -q '^Owner = \"mallory\"' ; then echo 'LarkNetworkType = \"none\"'; fi\n",
    )
    r, update = run(sandbox, host, "--policy-script", str(policy), job_ad='Owner = "mallory"\n')
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "['lo']"
    assert read_update_ad(update)["LarkNetworkType"] == "none"
    r, update = run(sandbox, host, "--policy-script", str(policy), job_ad='Owner = "alice"\n')
    assert r.returncode == 0, r.stderr
    assert read_update_ad(update)["LarkNetworkType"] == "nat"


def test_a_failing_or_confused_policy_script_refuses_the_job(sandbox, host):
    before = sandbox.leftovers()
    failing = script(
        sandbox, "fails", "#!/bin/sh\necho 'policy database unreachable' >&2\nexit 2\n"
    )
    r, _ = run(sandbox, host, "--policy-script", str(failing))
    assert r.returncode == 125
    assert r.stderr.strip() == (
        f"lark-agent: error: policy script {failing} failed (exit 2): policy database unreachable"
    )
    garbage = script(sandbox, "garbage", "#!/bin/sh\necho 'LarkBridgeDevice = \"eth0\"'\n")
    r, _ = run(sandbox, host, "--policy-script", str(garbage))
    assert r.returncode == 125
    assert r.stderr.strip() == (
        f"lark-agent: error: policy script {garbage} printed LarkBridgeDevice; it may set only "
        "LarkNetworkType, LarkAddressType, LarkNetworkAccounting"
    )
    slow = script(sandbox, "slow", "#!/bin/sh\nsleep 30\n")
    r, _ = run(sandbox, host, "--policy-script", str(slow), "--script-timeout", "1")
    assert r.returncode == 125
    assert "did not finish within 1 s and was killed" in r.stderr
    assert sandbox.leftovers() == before


def test_hostile_job_ad_values_change_nothing(sandbox, host):
    """Names, devices, pools, scripts and shell metacharacters from the job side: the job
    runs NATed from the admin's pool under a name Lark derived itself."""
    job_ad = (
        'LarkBridgeDevice = "uplink"\nLarkBridgeName = "$(reboot)"\n'
        'LARK_LOCAL_NETWORK = "10.77.0.0/24"\nLarkStartupScript = "/bin/sh"\n'
        'LarkIptableName = "INPUT"\nLarkExternalInterface = "uplink"\n'
        'ClusterId = "1; rm -rf /"\nProcId = 0\nLarkInnerAddressIPv4 = "10.77.0.1"\n'
    )
    path = sandbox.tmp / "job.ad"
    path.write_text(job_ad)
    update = sandbox.tmp / "update.ad"
    r = sandbox.run_agent(
        host, "--user", "nobody", "--job-ad", str(path), "--update-ad", str(update), "--", "true"
    )
    assert r.returncode == 0, r.stderr
    ad = read_update_ad(update)
    assert ad["LarkNetworkType"] == "nat" and ad["LarkInnerAddressIPv4"].startswith("192.168.181.")
    assert ad["LarkIptableName"].startswith("LARK_p") and ad["LarkExternalInterface"].startswith(
        "e_p"
    )


def test_bridge_mode_with_the_iptables_backend_is_refused_before_anything_exists(sandbox, host):
    """Bridge mode needs the nftables backend (README): bridged frames never pass iptables, so a
    bridged job there would go uncounted and unchecked. One line, 125, nothing made."""
    before = sandbox.leftovers()
    err = sandbox.tmp / "wrapper.err"
    for build in ("iptables-nft", "iptables-legacy"):
        flags = (*static_flags(), "--firewall-backend", "iptables", "--iptables", build)
        r, update = run(sandbox, host, *flags, env={"_CONDOR_WRAPPER_ERROR_FILE": str(err)})
        assert r.returncode == 125, r.stdout + r.stderr
        reason = (
            'bridge mode needs LARK_FIREWALL_BACKEND "nftables": bridged frames do not pass '
            "iptables"
        )
        assert r.stderr.strip() == f"lark-agent: error: {reason}"
        assert reason in err.read_text() and not r.stdout and not update.exists()
        assert sandbox.leftovers() == before
    links = sh("ip", "-o", "link", "show", netns=host.netns).stdout
    assert " lark:" not in links  # the bridge was not made either


def test_two_slots_running_the_same_job_id_at_once_get_two_networks(sandbox, host):
    """A job id too long for a readable name, in slot1_1 and slot1_2 of one node at the
    same time (the names are hashed: the slot must be in the hash, or the second agent
    would wait for the first's name)."""
    job = sandbox.tmp / "job.ad"
    job.write_text(f"ClusterId = {random.randrange(10**8, 10**9)}\nProcId = 0\n")
    agents = []
    try:
        for slot in ("slot1_1@node", "slot1_2@node"):
            machine = sandbox.tmp / f"{slot}.ad"
            machine.write_text(f'Name = "{slot}"\n')
            flags = ("--user", "nobody", "--job-ad", str(job), "--machine-ad", str(machine))
            cmd = ("/bin/sh", "-c", "echo ready; exec sleep 30")
            agents.append(sandbox.start_agent(host, *flags, "--", *cmd))
        for agent in agents:
            assert sandbox.read_line(agent.stdout, timeout=20).strip() == "ready"
        names = sandbox.logged_job_names()
        assert len(names) == 2, names
        links = sh("ip", "-o", "link", "show", netns=host.netns).stdout
        assert all(f"e_{name}@" in links for name in names), links
    finally:
        for agent in agents:
            agent.terminate()
        for agent in agents:
            agent.communicate(timeout=30)
    assert all(agent.returncode == 128 + signal.SIGTERM for agent in agents)
