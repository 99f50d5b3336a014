"""Errors by blame, as h11 splits them: the peer's garbage vs. our own misuse."""


class DhcpError(Exception):
    """Anything the DHCP client reports."""


class MalformedMessage(DhcpError):
    """The bytes are not a DHCP message we can trust; the driver drops them."""


class LocalProtocolError(DhcpError):
    """The client was used wrongly (a bug in the caller, not the network)."""


class DhcpFailed(DhcpError):
    """No lease could be had: the message names what was heard (the driver raises it)."""
