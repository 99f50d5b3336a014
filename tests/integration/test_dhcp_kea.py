"""The DHCP client against a real Kea with a lease of a few seconds: renewals are seen."""

from __future__ import annotations

import json
import os

import trio
from sandbox import SITE_ADDR, sh
from test_dhcp_dnsmasq import POOL, make_client, open_sockets, wait_for

from dhcp.events import LeaseBound, LeaseRenewed
from dhcp.trio_driver import Driver


def start_kea(sandbox, lifetime: int = 6) -> os.PathLike:
    log = sandbox.tmp / "kea.log"
    conf = sandbox.tmp / "kea-dhcp4.conf"
    conf.write_text(
        json.dumps(
            {
                "Dhcp4": {
                    "interfaces-config": {"interfaces": ["br0"], "dhcp-socket-type": "raw"},
                    "lease-database": {"type": "memfile", "persist": False},
                    "valid-lifetime": lifetime,
                    "renew-timer": lifetime // 3,
                    "rebind-timer": lifetime // 2,
                    "subnet4": [
                        {
                            "id": 1,
                            "subnet": f"{SITE_ADDR.rsplit('.', 1)[0]}.0/24",
                            "pools": [{"pool": f"{POOL[0]} - {POOL[1]}"}],
                            "option-data": [{"name": "routers", "data": SITE_ADDR}],
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
    env = {**os.environ, "KEA_PIDFILE_DIR": str(sandbox.tmp), "KEA_LOCKFILE_DIR": str(sandbox.tmp)}
    proc = sandbox.start_in(
        sandbox.site,
        [
            "env",
            *(f"{k}={v}" for k, v in env.items() if k.startswith("KEA_")),
            "kea-dhcp4",
            "-c",
            str(conf),
        ],
    )
    assert wait_for(lambda: log.exists() and "DHCP4_STARTED" in log.read_text(), 10), proc
    return log


async def test_the_lease_is_renewed_again_and_again_at_t1(sandbox, host):
    log = start_kea(sandbox)
    socks = open_sockets(host.netns, "uplink")
    seen = []

    def on_action(action):
        seen.append(action)
        if isinstance(action, LeaseBound):  # what Lark does: the address goes on the link
            sh("ip", "addr", "add", f"{action.lease.address}/24", "dev", "uplink", netns=host.netns)

    try:
        driver = Driver(
            make_client(socks.mac, timeout_s=15, renew_retry_min_s=0.5), socks, on_action=on_action
        )
        async with trio.open_nursery() as nursery:
            lease = await nursery.start(driver.run)
            assert lease.lifetime_s == 6 and lease.t1_s == 2
            await trio.sleep(7.5)  # past one whole lifetime: only renewals keep it
            assert driver.lease is not None and driver.lease.address == lease.address
            await driver.release()
            nursery.cancel_scope.cancel()
    finally:
        socks.close()
    renewals = [a for a in seen if isinstance(a, LeaseRenewed)]
    assert len(renewals) >= 3
    assert log.read_text().count("DHCP4_LEASE_ALLOC") >= 1 + len(renewals)
