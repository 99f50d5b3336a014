"""The job's network as drivers in netavark's sense (base.py): ``nat``, ``bridge`` and
``none``, each with validate, setup and teardown, chosen once from the plan
(``driver_for``); nothing after asks which mode it is.

They sit between the supervisor (which sequences) and state/ and backends/ (the record,
the kernel): a driver notes each resource in the record, does the kernel work through
the backends, and leaves the record's undo to state/undo.py.
"""

from __future__ import annotations

from ...decide.modes import NetworkType
from ...decide.plan import JobNetwork
from .base import NetworkDriver, NotValidated, Setup, Watch
from .bridge import BridgeDriver
from .nat import NatDriver
from .none import LoopbackDriver

__all__ = [
    "BridgeDriver",
    "LoopbackDriver",
    "NatDriver",
    "NetworkDriver",
    "NotValidated",
    "Setup",
    "Watch",
    "driver_for",
]

_DRIVERS: dict[NetworkType, type[NetworkDriver]] = {
    NetworkType.NAT: NatDriver,
    NetworkType.BRIDGE: BridgeDriver,
    NetworkType.NONE: LoopbackDriver,
}


def driver_for(plan: JobNetwork) -> NetworkDriver | None:
    """The job's network driver; None for mode off (USE_NETWORK_NAMESPACES false), which has
    no network of Lark's at all: no namespace, record, lock or cgroup either, so there is
    nothing to validate, set up or tear down, and a driver doing nothing would only hide
    that the supervisor's path differs in more than the network."""
    kind = _DRIVERS.get(plan.mode)
    return kind(plan) if kind is not None else None
