"""``startd-attrs``: what this node offers, as STARTD_CRON attributes."""

from __future__ import annotations

import argparse

from .common import cli_settings, version


def cmd_startd_attrs(args: argparse.Namespace) -> int:
    """STARTD_CRON: what this node offers, so jobs can match on it."""
    import errno
    import shutil

    from ..backends import address, nodeip, usable
    from ..backends.firewall import iptables
    from ..backends.netlink import probe, rtnl
    from ..decide import ads, settings
    from ..decide.modes import FirewallBackend, IPv6Use

    no_ad = ads.read_ad(None, "")
    resolved = settings.resolve_settings(
        cli_settings(args), no_ad, no_ad, settings.htcondor_config()
    )
    values: dict[str, object] = {
        "HasLark": resolved.use_network_namespaces,
        "LarkVersion": version(),
        "LarkNetworkTypes": ",".join(resolved.allowed_network_types),
        "LarkDefaultNetworkType": resolved.network_type,
        "LarkFirewallBackend": resolved.firewall_backend,
    }
    network = resolved.local_network
    try:
        busy = sum(
            1
            for k in range(address.pool_size(network))
            if address.is_locked(
                address.lock_path(resolved.lock_dir, address.pool_pair(network, k))
            )
        )
        values["LarkLocalAddressesFree"] = address.pool_size(network) - busy
    except PermissionError:  # STARTD_CRON runs as condor; the locks are root's alone
        pass
    with rtnl.Channel() as host:
        bridge = host.link(resolved.bridge_name)
        device = host.link(resolved.bridge_device) if resolved.bridge_device else None
        families = nodeip.node_families(host)
    values["LarkBridgeAvailable"] = bool(
        (bridge is not None and bridge.kind == "bridge" and bridge.up)
        or (bridge is None and device is not None and device.up)
    )
    # NAT jobs get IPv6 here (LARK_IPV6 and the node's; with iptables, its ip6tables build)
    values["LarkIPv6"] = (
        families.ipv6
        and resolved.ipv6 is not IPv6Use.OFF
        and (
            resolved.firewall_backend is FirewallBackend.NFTABLES
            or iptables.missing6(resolved.iptables_command) is None
        )
    )
    if resolved.firewall_backend is FirewallBackend.IPTABLES:
        values["LarkIptablesAvailable"] = shutil.which(resolved.iptables_command) is not None
    try:
        values["LarkBandwidthShaping"] = all(map(probe.knows_qdisc, ("htb", "tbf")))  # (shaping.py)
    except OSError as exc:  # as condor: only root may ask (CAP_NET_ADMIN)
        if exc.errno not in (errno.EPERM, errno.EACCES):
            raise
    problems = usable.find_problems()
    values["LarkUsable"] = not problems
    if problems:
        values["LarkUnusableReason"] = "; ".join(problems)
    print(ads.format_old(values))
    return 0
