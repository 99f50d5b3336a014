"""What HTCondor sees of Lark: STARTD_CRON attributes, the starter's files and variables."""

from __future__ import annotations

import classad2
from sandbox import sh


def startd_attrs(sandbox, host, *flags: str) -> dict:
    lock = ("--lock-dir", str(sandbox.lock_dir))
    argv = sandbox.agent_argv(host, *lock, *flags, verb="startd-attrs")
    out = sh(*argv[2:], netns=host.netns).stdout
    return dict(classad2.parseOne(out, classad2.ParserType.Old).items())


def test_startd_attrs_say_what_the_node_offers(sandbox, host):
    attrs = startd_attrs(sandbox, host)
    assert attrs["HasLark"] is True and attrs["LarkNetworkTypes"] == "nat,none"
    assert attrs["LarkLocalAddressesFree"] == 126 and attrs["LarkBridgeAvailable"] is False
    assert attrs["LarkDefaultNetworkType"] == "nat" and attrs["LarkFirewallBackend"] == "nftables"
    offered = startd_attrs(
        sandbox, host, "--allowed-network-types", "nat,bridge,none", "--bridge-device", "uplink"
    )
    assert offered["LarkNetworkTypes"] == "nat,bridge,none" and offered["LarkBridgeAvailable"]
    agent = sandbox.start_agent(host, *sandbox.who(), "--", "sleep", "30")
    try:
        for _ in range(200):
            if startd_attrs(sandbox, host)["LarkLocalAddressesFree"] == 125:
                break
        else:
            raise AssertionError("a running job's address is not counted as taken")
    finally:
        agent.terminate()
        agent.communicate(timeout=30)
