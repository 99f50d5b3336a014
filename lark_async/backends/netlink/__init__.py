"""The kernel's netlink protocols, spoken by hand (pyroute2's import is too slow for start-up).

core.py frames messages and attributes and holds the one receive loop (acks,
batches, replies, dumps; refusals as ``NetlinkError`` with the kernel's errno);
rtnl.py encodes the link, address and route requests and parses links;
nfnl.py encodes the job's nf_tables batch and reads counters back; nftdecode.py
turns a batch back into text, so tests compare what is sent with golden text;
probe.py asks the kernel which features it has before anything is created.
"""

from .core import MalformedMessage, NetlinkError

__all__ = ["MalformedMessage", "NetlinkError"]
