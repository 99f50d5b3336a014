"""radvd in a sandbox namespace: the site's router advertisements (SLAAC prefix, flags)."""

from __future__ import annotations

import subprocess

from sandbox import SITE_NET6, ensure_site_ipv6, sh, wait_for


def start_radvd(
    sandbox,
    iface: str = "br0",
    managed: bool = False,
    tag: str = "radvd",
    rdnss: tuple[str, ...] = (),
    dnssl: tuple[str, ...] = (),
):
    """radvd on ``iface`` of the site: ``SITE_NET6::/64`` autonomous, advertised every few
    seconds (and at once to a solicitation); with ``managed`` the M flag (DHCPv6); DNS
    servers (RDNSS) and search domains (DNSSL) when given (RFC 8106)."""
    ensure_site_ipv6(sandbox.site, iface)
    conf = sandbox.tmp / f"{tag}.conf"
    conf.write_text(
        f"interface {iface} {{\n"
        "  AdvSendAdvert on;\n"
        "  MinRtrAdvInterval 3; MaxRtrAdvInterval 4;\n"
        f"  AdvManagedFlag {'on' if managed else 'off'};\n"
        f"  prefix {SITE_NET6}::/64 {{ AdvOnLink on; AdvAutonomous on; }};\n"
        + (f"  RDNSS {' '.join(rdnss)} {{ }};\n" if rdnss else "")
        + (f"  DNSSL {' '.join(dnssl)} {{ }};\n" if dnssl else "")
        + "};\n"
    )
    sh("sysctl", "-qw", "net.ipv6.conf.all.forwarding=1", netns=sandbox.site)
    log = sandbox.tmp / f"{tag}.log"
    pid = sandbox.tmp / f"{tag}.pid"
    argv = ["radvd", "--nodaemon", "-C", str(conf), "-p", str(pid)]
    argv += ["-m", "logfile", "-l", str(log), "-d", "1"]
    proc = subprocess.Popen(
        ["nsenter", f"--net=/run/netns/{sandbox.site}", *argv],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    sandbox.procs.append(proc)
    assert wait_for(lambda: pid.exists() or proc.poll() is not None, 5)
    assert proc.poll() is None, log.read_text() if log.exists() else "radvd exited"
    return proc
