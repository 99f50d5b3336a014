"""Errors by blame, as h11 splits them: the peer's garbage vs. our own misuse."""


class Dhcp6Error(Exception):
    """Anything the DHCPv6 client reports."""


class MalformedMessage(Dhcp6Error):
    """The bytes are not a DHCPv6 message we can trust; the driver drops them."""


class LocalProtocolError(Dhcp6Error):
    """The client was used wrongly (a bug in the caller, not the network)."""


class Dhcp6Failed(Dhcp6Error):
    """No lease could be had: the message names what was heard (the driver raises it)."""
