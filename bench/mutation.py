"""Mutation testing with mutmut 3 of the pure packages, each judged by its unit tests only.

    .venv/bin/python bench/mutation.py dhcp                     # every module of dhcp/
    .venv/bin/python bench/mutation.py dhcp options frame bpf   # only these
    .venv/bin/python bench/mutation.py dhcp6
    .venv/bin/python bench/mutation.py decide names bandwidth   # lark_async/decide/...
    .venv/bin/python bench/mutation.py decide --report-only     # the last runs' results

(``nice -n 19`` in front on a shared machine; on this project's 2-core machine decide's
sixteen modules take about 9 minutes, dhcp6 about 12, all of dhcp about 11.) A target is a
package and the unit tests that judge it (TARGETS below; never tests/integration, which
needs root and namespaces): dhcp/ by tests/unit/dhcp, dhcp6/ by
tests/unit/dhcp6 (both without their fuzz runs, which call every function and would run
for each mutant), and each decision module of lark_async/decide/ by its own unit test
files, one mutmut run per module. mutmut records which tests call a function in the
test's own process: code that runs only in a forked child is seen through a function the
parent calls (ads._child makes the child's program before the fork). A run works in
bench/out/mutation/TARGET[/MODULE]/ (git-ignored): a pyproject.toml that is the project's
with ``[tool.mutmut]`` written for the run, links to the packages and tests/, and mutmut's
mutants/ copy, made afresh each time. A decision module imports the rest of lark_async,
so its run copies all of lark_async/ (``also_copy``) and mutates only the module; dhcp6/
imports dhcp/ the same way. mutmut runs, for each mutant, only the selected tests that
call the mutated function.

Prints, per module and in all, the kill score (killed / total) and each surviving mutant
(``python -m mutmut show NAME`` in the run's directory gives its diff); a survivor judged
equivalent in EQUIVALENT below (by hand: no test can tell it from the original) is listed
apart with its reason, and the score without the equivalent ones follows. Exits 1 if a
mutant survives that is not judged equivalent. "Killed" counts the mutants a test failed
on and those whose tests never finished (mutmut's "timeout": an endless loop).
bench/dhcp_mutation.py is ``bench/mutation.py dhcp`` under its old name.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "bench" / "out" / "mutation"


@dataclass(frozen=True)
class Target:
    package: str  # the directory, as mutmut names it: "dhcp", "lark_async/decide"
    # pytest arguments that select the judging tests: one list for every module, or
    # per module (then each module is a run of its own, and only those modules are known)
    tests: tuple[str, ...] = ()
    tests_by_module: dict[str, tuple[str, ...]] = field(default_factory=dict)
    also_copy: tuple[str, ...] = ()  # what the package imports from outside itself

    def modules(self) -> list[str]:
        if self.tests_by_module:
            return list(self.tests_by_module)
        return sorted(p.stem for p in (ROOT / self.package).glob("*.py") if p.stem != "__init__")


_UNIT = "tests/unit/"
TARGETS = {
    "dhcp": Target("dhcp", tests=(_UNIT + "dhcp", f"--ignore={_UNIT}dhcp/test_fuzz.py")),
    "dhcp6": Target(
        "dhcp6",
        tests=(_UNIT + "dhcp6", f"--ignore={_UNIT}dhcp6/test_dhcp6_fuzz.py"),
        also_copy=("dhcp/",),
    ),
    # the decision modules that have unit test files of their own (pure, no kernel, but
    # for ads and scripts, below)
    "decide": Target(
        "lark_async/decide",
        tests_by_module={
            "names": (_UNIT + "test_names.py",),
            "bandwidth": (_UNIT + "test_bandwidth_plan.py",),
            "connpolicy": (_UNIT + "test_connpolicy.py",),
            "firstpacket": (_UNIT + "test_firstpacket.py",),
            "tally": (_UNIT + "test_tally.py",),
            # ads.py and scripts.py also do I/O (ads: read_ad, the forked evaluate_bounded,
            # write_atomically; scripts: trust.py's walk), which their tests judge in tmp_path
            "ads": (_UNIT + "test_ads.py",),
            "plan": (
                _UNIT + "test_plan.py",
                _UNIT + "test_settings_plan.py",
                _UNIT + "test_bandwidth_plan.py",
            ),
            "scripts": (_UNIT + "test_script_check.py",),
            "reach": (_UNIT + "test_reach_lists.py",),
            # enums and constants only: mutmut mutates inside functions, so no mutants
            "modes": (_UNIT + "test_policy.py",),
            "accounting": (_UNIT + "test_accounting.py",),
            "audit": (_UNIT + "test_audit.py",),
            "policy": (_UNIT + "test_policy.py",),
            "request": (_UNIT + "test_request.py",),
            "resolver": (_UNIT + "test_resolver.py",),
            # (and the files that test its agent-cgroup and bandwidth settings)
            "settings": tuple(
                _UNIT + f"test_{name}.py"
                for name in (
                    "settings_knobs",
                    "settings_plan",
                    "settings_table",
                    "placement",
                    "bandwidth_plan",
                )
            ),
        },
        # settings' tests compare its reference with README.rst's
        also_copy=("lark_async/", "README.rst"),
    ),
}

# -- equivalent mutants ----------------------------------------------------------------
# dhcp/ (the reasons in prose: bench/dhcp_mutation.py's docstring)
# mutant name -> (the line the mutant has, stripped; why it is equivalent)
_BIG = "the byte order defaults to big since Python 3.11"
_NUL = "only what comes before the first NUL is kept, however many splits follow"
_JUMPS = "jt/jf of a load or a return are ignored (kernel and model): only jumps read them"
_PROTO = "socket.socket's protocol defaults to 0, the value the code passes"
# trio_driver.py
_SNAP = "the length a filter keeps: no frame is longer than 65,535 bytes (receive reads 4,096)"
_BUFSIZE = "a byte more of buffer than any frame read there needs (a reply, an ARP frame: 42)"
_VIA = "tx is None exactly when via is None (the second test is for mypy)"
_RETURN = "what on_action returns is never used"
_BUFFER = "17 facts of buffer between the readers and the loop instead of 16: back-pressure only"
_FALSY = "None is as falsy as False where it is read (`not self._running`, `not started`)"
_LAST = "a probe's SendArp is the only order in its list (client._probe_frames): none to skip"
_DEADLINE = "next_deadline is never None while the loop runs (only before Started, once STOPPED)"
_AUX = "the raw socket's only ancillary message is PACKET_AUXDATA, 20 bytes long"
_SIGNED = "signed or unsigned, the status bits tested (3 and 7) read the same"
_PLACEHOLDER = (
    "the placeholder filter then keeps one byte of a frame that comes in the microseconds"
    " before the real filter, and receive() drops a one-byte frame as any broken one"
)
_ON = "any value but 0 turns the socket option on"
_FIELD = "struct's 16s/64s/128s pad with NULs and cut to the field: the same header bytes"
_RESTARTS = (
    "every way from a bound lease to a restart (a NAK, expiry) begins a new acquisition,"
    " which resets the count; nothing reads it before"
)
_OFFER = "an offer's lease is read for its server and address only: its start is never read"
_FALSY = "_running is only read as `not self._running`: None is false, as False is"
_DEADLINE = (
    "unreachable: the loop runs only until STOPPED, and every other state has a deadline"
    " (an infinite lease's is inf, not None)"
)
EQUIVALENT: dict[str, tuple[str, str]] = {
    "dhcp.options.x_u32__mutmut_7": ("return int.from_bytes(value, )", _BIG),
    "dhcp.options.x_u16__mutmut_7": ("return int.from_bytes(value, )", _BIG),
    "dhcp.options.x_text__mutmut_5": ('raw = value.split(b"\\0", )[0]', _NUL),
    "dhcp.options.x_text__mutmut_8": ('raw = value.split(b"\\0", 2)[0]', _NUL),
    "dhcp.options.x_duid_ll__mutmut_9": (
        'return struct.pack("!hh", 3, 1) + mac',
        "signed or unsigned, 3 and 1 pack to the same bytes",
    ),
    "dhcp.bpf.x_outgoing_only__mutmut_2": (
        "return [(0x20, 1, 0, _LD_PKTTYPE), (0x15, 1, 0, PACKET_OUTGOING), (0x06, 0, 0, 0),"
        " *program]",
        _JUMPS,
    ),
    "dhcp.bpf.x_outgoing_only__mutmut_3": (
        "return [(0x20, 0, 1, _LD_PKTTYPE), (0x15, 1, 0, PACKET_OUTGOING), (0x06, 0, 0, 0),"
        " *program]",
        _JUMPS,
    ),
    "dhcp.bpf.x_outgoing_only__mutmut_8": (
        "return [(0x20, 0, 0, _LD_PKTTYPE), (0x15, 1, 0, PACKET_OUTGOING), (0x06, 1, 0, 0),"
        " *program]",
        _JUMPS,
    ),
    "dhcp.bpf.x_outgoing_only__mutmut_9": (
        "return [(0x20, 0, 0, _LD_PKTTYPE), (0x15, 1, 0, PACKET_OUTGOING), (0x06, 0, 1, 0),"
        " *program]",
        _JUMPS,
    ),
    "dhcp.bpf.x_packet_socket__mutmut_7": (
        "sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW | socket.SOCK_CLOEXEC, )",
        _PROTO,
    ),
    "dhcp.bpf.x_send_socket__mutmut_6": (
        "return socket.socket(socket.AF_PACKET, socket.SOCK_RAW | socket.SOCK_CLOEXEC, )",
        _PROTO,
    ),
    "dhcp.trio_driver.x_probe_address__mutmut_20": ("if tx is None and via is None:", _VIA),
    "dhcp.trio_driver.x_probe_address__mutmut_40": (
        "if prober.hear(await tsock.recv(129)):",
        _BUFSIZE,
    ),
    "dhcp.trio_driver.x_reply_filter__mutmut_12": ("(0x28, 1, 0, 12),  # 0: ethertype", _JUMPS),
    "dhcp.trio_driver.x_reply_filter__mutmut_13": ("(0x28, 0, 1, 12),  # 0: ethertype", _JUMPS),
    "dhcp.trio_driver.x_reply_filter__mutmut_20": ("(0x30, 1, 0, 23),  # 2: IP protocol", _JUMPS),
    "dhcp.trio_driver.x_reply_filter__mutmut_21": ("(0x30, 0, 1, 23),  # 2: IP protocol", _JUMPS),
    "dhcp.trio_driver.x_reply_filter__mutmut_29": (
        "(0x28, 1, 0, 20),  # 4: fragment offset",
        _JUMPS,
    ),
    "dhcp.trio_driver.x_reply_filter__mutmut_30": (
        "(0x28, 0, 1, 20),  # 4: fragment offset",
        _JUMPS,
    ),
    "dhcp.trio_driver.x_reply_filter__mutmut_38": (
        "(0xB1, 1, 0, 14),  # 6: x = IP header length",
        _JUMPS,
    ),
    "dhcp.trio_driver.x_reply_filter__mutmut_39": (
        "(0xB1, 0, 1, 14),  # 6: x = IP header length",
        _JUMPS,
    ),
    "dhcp.trio_driver.x_reply_filter__mutmut_42": (
        "(0x48, 1, 0, 14 + 2),  # UDP destination port",
        _JUMPS,
    ),
    "dhcp.trio_driver.x_reply_filter__mutmut_43": (
        "(0x48, 0, 1, 14 + 2),  # UDP destination port",
        _JUMPS,
    ),
    "dhcp.trio_driver.x_reply_filter__mutmut_52": (
        "(0x40, 1, 0, 14 + _CHADDR_AT),  # 9: chaddr[0:4]",
        _JUMPS,
    ),
    "dhcp.trio_driver.x_reply_filter__mutmut_53": (
        "(0x40, 0, 1, 14 + _CHADDR_AT),  # 9: chaddr[0:4]",
        _JUMPS,
    ),
    "dhcp.trio_driver.x_reply_filter__mutmut_61": (
        "(0x48, 1, 0, 14 + _CHADDR_AT + 4),  # 11: chaddr[4:6]",
        _JUMPS,
    ),
    "dhcp.trio_driver.x_reply_filter__mutmut_62": (
        "(0x48, 0, 1, 14 + _CHADDR_AT + 4),  # 11: chaddr[4:6]",
        _JUMPS,
    ),
    "dhcp.trio_driver.x_reply_filter__mutmut_72": ("(0x06, 1, 0, 0xFFFF),  # 13: accept", _JUMPS),
    "dhcp.trio_driver.x_reply_filter__mutmut_73": ("(0x06, 0, 1, 0xFFFF),  # 13: accept", _JUMPS),
    "dhcp.trio_driver.x_reply_filter__mutmut_74": ("(0x06, 0, 0, 65536),  # 13: accept", _SNAP),
    "dhcp.trio_driver.x_reply_filter__mutmut_76": ("(0x06, 1, 0, 0),  # 14: drop", _JUMPS),
    "dhcp.trio_driver.x_reply_filter__mutmut_77": ("(0x06, 0, 1, 0),  # 14: drop", _JUMPS),
    "dhcp.trio_driver.xǁDriverǁ__init____mutmut_16": (
        "self.on_action = on_action or (lambda action: 0)",
        _RETURN,
    ),
    "dhcp.trio_driver.xǁDriverǁ__init____mutmut_22": (
        "self._to_loop, self._inbox = trio.open_memory_channel[Input | trio.Event](17)",
        _BUFFER,
    ),
    "dhcp.trio_driver.xǁDriverǁ__init____mutmut_23": ("self._running = None", _FALSY),
    "dhcp.trio_driver.xǁDriverǁ_carry_out__mutmut_8": ("break", _LAST),
    # client.py
    "dhcp.client.xǁClientǁ_again__mutmut_20": (
        "return self._send(x, now, msg, last.dest, last.src, None, last.dst_mac)",
        "every caller of _again passes no retry_at: its retries follow section 4.1's doubling",
    ),
    "dhcp.client.xǁClientǁ_again__mutmut_28": (
        "return self._send(x, now, msg, last.dest, last.src, retry_at, )",
        "_again resends only SELECTING, REBOOTING and REQUESTING broadcasts: dst_mac is b''",
    ),
    "dhcp.client.xǁClientǁ_send__mutmut_41": (
        "delay = min(c.retransmit_initial_s * 2 ** min(x.attempt, 65), c.retransmit_max_s)",
        "2**64 or 2**65 times the first delay: either is far past any maximum delay",
    ),
    "dhcp.client.xǁClientǁ_arp__mutmut_9": (
        'return self._decline(event.now, s.prober.holder or b"XXXX")',
        "hear() is True only once holder is the answering frame's 6-byte MAC, never empty",
    ),
    "dhcp.client.xǁClientǁ_bind__mutmut_4": ("self._restarts = None", _RESTARTS),
    "dhcp.client.xǁClientǁ_bind__mutmut_5": ("self._restarts = 1", _RESTARTS),
    "dhcp.client.xǁClientǁ_enter__mutmut_2": (
        "raise LocalProtocolError(None)",
        "no input reaches it: every state a handler enters is one NEXT_STATES allows",
    ),
    "dhcp.client.xǁClientǁ_new_acquisition__mutmut_6": (
        "self._heard = _Heard(None)",
        "_Heard.began is never read (the give-up line names the timeout, not the start)",
    ),
    "dhcp.client.xǁClientǁ_next_offer__mutmut_3": (
        "return self._restart(None)  # every offer failed: start over (section 3.1 step 5)",
        "unreachable: both callers call _next_offer only while an offer waits",
    ),
    "dhcp.client.xǁClientǁ_packet__mutmut_39": (
        "server = opt.address(msg.options[opt.SERVER_ID], None)",
        "the code only names the option in MalformedMessage's text, which _packet replaces"
        " with 'no server identifier'",
    ),
    "dhcp.client.xǁClientǁ_valid_offer__mutmut_3": (
        "lease = lease_from_reply(reply.message, start=None)",
        _OFFER,
    ),
    "dhcp.client.xǁClientǁ_valid_offer__mutmut_6": (
        "lease = lease_from_reply(reply.message, start=1.0)",
        _OFFER,
    ),
    # trio_driver.py's Driver
    "dhcp.trio_driver.xǁDriverǁrun__mutmut_1": (
        "started = None",
        "started is only read as `not started`: None is false",
    ),
    "dhcp.trio_driver.xǁDriverǁrun__mutmut_17": ("self._running = None", _FALSY),
    "dhcp.trio_driver.xǁDriverǁ_next_fact__mutmut_4": (
        'with trio.move_on_at(float("inf") if (deadline is None) and False else deadline):',
        _DEADLINE,
    ),
    "dhcp.trio_driver.xǁDriverǁ_next_fact__mutmut_6": (
        "with trio.move_on_at(float(None) if deadline is None else deadline):",
        _DEADLINE,
    ),
    "dhcp.trio_driver.xǁDriverǁ_next_fact__mutmut_7": (
        'with trio.move_on_at(float("XXinfXX") if deadline is None else deadline):',
        _DEADLINE,
    ),
    "dhcp.trio_driver.xǁDriverǁ_next_fact__mutmut_8": (
        'with trio.move_on_at(float("INF") if deadline is None else deadline):',
        _DEADLINE,
    ),
    "dhcp.trio_driver.xǁSocketLinkǁreceive__mutmut_10": (
        "if level == SOL_PACKET and kind == PACKET_AUXDATA or len(aux) >= 4:",
        _AUX,
    ),
    "dhcp.trio_driver.xǁSocketLinkǁreceive__mutmut_11": (
        "if level == SOL_PACKET or kind == PACKET_AUXDATA and len(aux) >= 4:",
        _AUX,
    ),
    "dhcp.trio_driver.xǁSocketLinkǁreceive__mutmut_14": (
        "if level == SOL_PACKET and kind == PACKET_AUXDATA and len(aux) > 4:",
        _AUX,
    ),
    "dhcp.trio_driver.xǁSocketLinkǁreceive__mutmut_15": (
        "if level == SOL_PACKET and kind == PACKET_AUXDATA and len(aux) >= 5:",
        _AUX,
    ),
    "dhcp.trio_driver.xǁSocketLinkǁreceive__mutmut_22": (
        'status = struct.unpack_from("=i", aux)[0]',
        _SIGNED,
    ),
    "dhcp.trio_driver.xǁSocketLinkǁreceive__mutmut_7": (
        "data, ancdata, _flags, _addr = await self.raw.recvmsg(4097, _AUX_SPACE)",
        _BUFSIZE,
    ),
    "dhcp.trio_driver.xǁSocketLinkǁreceive_arp__mutmut_3": (
        "return await self.arp.recv(129)",
        _BUFSIZE,
    ),
    "dhcp.trio_driver.xǁSocketsǁopen__mutmut_10": (
        "raw = packet_socket(ifname, ETH_P_IP, [(0x06, 1, 0, 0)])  # nothing until filtered",
        _JUMPS,
    ),
    "dhcp.trio_driver.xǁSocketsǁopen__mutmut_11": (
        "raw = packet_socket(ifname, ETH_P_IP, [(0x06, 0, 1, 0)])  # nothing until filtered",
        _JUMPS,
    ),
    "dhcp.trio_driver.xǁSocketsǁopen__mutmut_12": (
        "raw = packet_socket(ifname, ETH_P_IP, [(0x06, 0, 0, 1)])  # nothing until filtered",
        _PLACEHOLDER,
    ),
    "dhcp.trio_driver.xǁSocketsǁopen__mutmut_19": (
        "raw.setsockopt(SOL_PACKET, PACKET_AUXDATA, 2)",
        _ON,
    ),
    "dhcp.trio_driver.xǁSocketsǁopen_port__mutmut_18": (
        "raw.setsockopt(SOL_PACKET, PACKET_AUXDATA, 2)",
        _ON,
    ),
    "dhcp.trio_driver.xǁSocketsǁopen_udp__mutmut_13": (
        "udp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 2)",
        _ON,
    ),
    "dhcp.trio_driver.xǁSocketsǁopen_udp__mutmut_20": (
        "udp.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 2)",
        _ON,
    ),
    "dhcp.lease.x_lease_from_reply__mutmut_40": (
        'lifetime = float("INF") if raw == INFINITE else float(raw)',
        "float() reads infinity in any case",
    ),
    "dhcp.lease.x__prefixlen__mutmut_3": (
        'return ipaddress.IPv4Network(f"0.0.0.0/{opt.address(mask, None)}").prefixlen',
        "the MalformedMessage naming the option is replaced by Rejected's fixed text",
    ),
    "dhcp.message.x_encode__mutmut_40": ('msg.chaddr.ljust(17, b"\\0"),', _FIELD),
    "dhcp.message.x_encode__mutmut_47": ('msg.sname.ljust(65, b"\\0")[:64],', _FIELD),
    "dhcp.message.x_encode__mutmut_49": ('msg.sname.ljust(64, b"\\0")[:65],', _FIELD),
    "dhcp.message.x_encode__mutmut_55": ('msg.file.ljust(129, b"\\0")[:128],', _FIELD),
    "dhcp.message.x_encode__mutmut_57": ('msg.file.ljust(128, b"\\0")[:129],', _FIELD),
    "dhcp.message.xǁMessageǁ__hash____mutmut_1": (
        "return hash(None)",
        "a constant hash keeps the contract (equal messages hash alike); only speed differs",
    ),
    "dhcp.arp.x_drain__mutmut_6": (
        "sock.recv(129, socket.MSG_DONTWAIT)",
        "the frames are dropped unread: the buffer's size changes nothing",
    ),
}

_AT = "only the part before the first '@' is kept, however many splits follow"
EQUIVALENT |= {
    # lark_async/decide/names.py
    "lark_async.decide.names.x_derive_name__mutmut_8": (
        'short = slot.split("@", )[0] if slot else ""',
        _AT,
    ),
    "lark_async.decide.names.x_derive_name__mutmut_11": (
        'short = slot.split("@", 2)[0] if slot else ""',
        _AT,
    ),
}
_STRICT = "strict is only read for its truth: None is as false as False"
_SPACED = "text is split on single spaces already: the last word is the same however split"
_LOWER = "the word is lowercased before it is read, so its case in the code changes nothing"
EQUIVALENT |= {
    # lark_async/decide/connpolicy.py
    "lark_async.decide.connpolicy.x__network__mutmut_4": (
        "return ipaddress.IPv4Network(net4, strict=None)",
        _STRICT,
    ),
    "lark_async.decide.connpolicy.x__network__mutmut_20": (
        "network = ipaddress.IPv6Network(net6, strict=None)",
        _STRICT,
    ),
    "lark_async.decide.connpolicy.x_parse_rule__mutmut_11": (
        "target = text.rsplit(None, 1)[-1]",
        _SPACED,
    ),
    "lark_async.decide.connpolicy.x_parse_rule__mutmut_14": (
        'target = text.rsplit(" ", )[-1]',
        _SPACED,
    ),
    "lark_async.decide.connpolicy.x_parse_rule__mutmut_17": (
        'target = text.rsplit(" ", 2)[-1]',
        _SPACED,
    ),
    "lark_async.decide.connpolicy.x_parse_rule__mutmut_40": (
        'verdict = (m["verdict"] or ("ALLOW" if job else "")).lower()',
        _LOWER,
    ),
    "lark_async.decide.connpolicy.x_parse_rule__mutmut_74": (
        'proto = PROTOCOLS[(m["proto"] or "ANY").lower()]',
        _LOWER,
    ),
}
EQUIVALENT |= {
    # lark_async/decide/bandwidth.py
    "lark_async.decide.bandwidth.x_derive_bandwidth__mutmut_4": (
        'base, source = None, "XXXX"',
        "never read: both branches that follow (the slot's share, wrap's request) set source",
    ),
}
_EMPTY_LAST = (
    "only a 4-byte attribute at the very end goes unread: it is empty, and an empty one changes"
    " nothing (no address, no 4-byte flags, and setdefault keeps a kind's first anyway)"
)
EQUIVALENT |= {
    # dhcp6/
    "dhcp6.duid.x_derive_iaid__mutmut_4": (
        "return int.from_bytes(uuid.uuid5(LARK_NAMESPACE, duid.hex()).bytes[:4], )",
        _BIG,
    ),
    "dhcp6.duid.x_duid_ll__mutmut_12": (
        'return struct.pack("!hh", DUID_LL, HW_ETHERNET) + mac',
        "signed or unsigned, 3 and 1 pack to the same bytes",
    ),
    "dhcp6.duid.x_duid_uuid__mutmut_13": (
        'return struct.pack("!h", DUID_UUID) + raw',
        "signed or unsigned, 4 packs to the same bytes",
    ),
    "dhcp6.message.x_decode__mutmut_16": ("xid = int.from_bytes(data[1:4], )", _BIG),
    "dhcp6.message.x_encode__mutmut_16": (
        'head = struct.pack("!i", (int(msg.msg_type) << 24) | msg.xid)',
        "every MessageType is below 128, so the word is below 2**31: the same bytes signed",
    ),
    "dhcp6.frame.x__pseudo__mutmut_10": (
        'return src + dst + struct.pack("!i3xb", length, IPPROTO_UDP)',
        "a UDP length (below 65,536) and 17 pack to the same bytes signed or unsigned",
    ),
    "dhcp6.ifaddr.x__attrs__mutmut_5": ("while offset + 5 <= len(data):", _EMPTY_LAST),
    "dhcp6.ifaddr.x__attrs__mutmut_6": ("while offset + 4 < len(data):", _EMPTY_LAST),
    "dhcp6.ifaddr.x_parse_addresses__mutmut_32": (
        "elif kind in (RTM_NEWADDR, RTM_DELADDR) and len(body) > _IFADDRMSG.size:",
        "a body of the ifaddrmsg alone has no attributes, so no address: skipped either way",
    ),
    "dhcp6.ifaddr.x_parse_addresses__mutmut_58": (
        'flags = struct.unpack("=i", attrs[IFA_FLAGS])[0]',
        "the flags are only read bit by bit (IfAddr's properties, bits below 31): the same"
        " bits in a signed int",
    ),
    "dhcp6.lease.x__life__mutmut_5": (
        'return float("INF") if seconds == opt.INFINITY else float(seconds)',
        "float() reads infinity in any case",
    ),
}
_CODEC = "codec names are case-insensitive: ASCII is ascii"
EQUIVALENT |= {
    "dhcp6.options.x__elapsed__mutmut_14": ("return ElapsedTime(int.from_bytes(data, ))", _BIG),
    "dhcp6.options.x__sol_max_rt__mutmut_14": ("return SolMaxRt(int.from_bytes(data, ))", _BIG),
    "dhcp6.options.x__status__mutmut_11": (
        "return StatusCode(int.from_bytes(data[:2], ), data[2:])",
        _BIG,
    ),
    "dhcp6.options.x_check_duid__mutmut_10": ("kind = int.from_bytes(data[:2], )", _BIG),
    "dhcp6.options.x_decode_names__mutmut_56": ('labels.append(label.decode("ASCII"))', _CODEC),
    "dhcp6.options.x_encode_name__mutmut_11": ('raw = label.encode("ASCII")', _CODEC),
}
_NOW_UNREAD = "_bind does not read now"
EQUIVALENT |= {
    # dhcp6/client.py
    "dhcp6.client.xǁClientǁ_bind__mutmut_3": (
        "self._give_up_at = None",
        "read only while acquiring, and every way from a lease back to acquiring goes through"
        " _new_acquisition, which sets it (a REQUEST holding a lease is not acquiring)",
    ),
    "dhcp6.client.xǁClientǁ_bind__mutmut_6": (
        'self._give_up_at = float("INF")',
        "float() reads infinity in any case",
    ),
    "dhcp6.client.xǁClientǁ_deadline__mutmut_37": (
        'if at == float("INF"):',
        "float() reads infinity in any case",
    ),
    "dhcp6.client.xǁClientǁ_rapid_reply__mutmut_32": (
        "return self._bind(None, lease)",
        _NOW_UNREAD,
    ),
    "dhcp6.client.xǁClientǁ_reply_to_request__mutmut_29": (
        "return self._bind(None, lease)",
        _NOW_UNREAD,
    ),
    "dhcp6.client.xǁClientǁ_send__mutmut_8": (
        "x.rt = p.irt + self.rng.uniform(0.001, 0.1) / p.irt",
        "SOLICIT's IRT is 1 s: dividing by it is multiplying by it",
    ),
    "dhcp6.client.xǁClientǁ_enter__mutmut_2": (
        "raise LocalProtocolError(None)",
        "no input reaches it: every state a handler enters is one NEXT_STATES allows",
    ),
    "dhcp6.client.xǁClientǁ_released_timer__mutmut_2": (
        "assert isinstance(s, _Released) or s.x is not None",
        "an assert for mypy: a timer fires in RELEASED only while its exchange goes on, so"
        " both parts hold",
    ),
}
_HELD = (
    "a REQUEST for a held binding never reads its advert's preference nor its others: on a"
    " refusal it gives up the lease, unanswered it goes back to the lease (_next_server,"
    " the only reader of others, is for a REQUEST without one)"
)
EQUIVALENT |= {
    "dhcp6.client.xǁClientǁ_reply_to_extend__mutmut_18": (
        "ad = Advert(server, None, tuple(a.address for a in s.lease.addresses))",
        _HELD,
    ),
    "dhcp6.client.xǁClientǁ_reply_to_extend__mutmut_23": (
        "ad = Advert(server, 1, tuple(a.address for a in s.lease.addresses))",
        _HELD,
    ),
    "dhcp6.client.xǁClientǁ_reply_to_extend__mutmut_27": (
        "return self._request(now, ad, None, held=s.lease)",
        _HELD,
    ),
    "dhcp6.client.xǁClientǁ_solicit_timer__mutmut_18": (
        "s.collecting = None",
        "collecting is only read as `not s.collecting`: None is as false as False",
    ),
}
_D6 = "dhcp6.trio_driver."
_INDEX = "an interface index is below 2**31: the same four bytes signed or unsigned"
_SOURCE = (
    "source is read only by _send, after run set it: a driver that never ran has a client"
    " with no lease, whose release sends nothing"
)
_INF = "float() reads infinity in any case"
_STARTED = "started is only read as `not started`: None is false"
_OOB = "IPv6 UDP ignores MSG_OOB (flag 1): the same datagram goes out (tried)"
_FLOWINFO = (
    "the kernel reads sin6_flowinfo only with IPV6_FLOWINFO_SEND on, which the socket never"
    " sets: the same frame, flow label and all (tried)"
)
EQUIVALENT |= {
    # dhcp6/trio_driver.py (its kernel-backed tests: tests/unit/dhcp6/test_dhcp6_sockets.py)
    _D6 + "x_render_pktinfo__mutmut_7": ('return source.packed + struct.pack("=i", index)', _INDEX),
    _D6 + "x_reply_filter__mutmut_11": ("(0x20, 1, 0, 0),  # 0: destination MAC[0:4]", _JUMPS),
    _D6 + "x_reply_filter__mutmut_12": ("(0x20, 0, 1, 0),  # 0: destination MAC[0:4]", _JUMPS),
    _D6 + "x_reply_filter__mutmut_19": ("(0x28, 1, 0, 4),  # 2: destination MAC[4:6]", _JUMPS),
    _D6 + "x_reply_filter__mutmut_20": ("(0x28, 0, 1, 4),  # 2: destination MAC[4:6]", _JUMPS),
    _D6 + "x_reply_filter__mutmut_27": ("(0x28, 1, 0, 12),  # 4: ethertype", _JUMPS),
    _D6 + "x_reply_filter__mutmut_28": ("(0x28, 0, 1, 12),  # 4: ethertype", _JUMPS),
    _D6 + "x_reply_filter__mutmut_35": ("(0x30, 1, 0, 14 + 6),  # 6: next header", _JUMPS),
    _D6 + "x_reply_filter__mutmut_36": ("(0x30, 0, 1, 14 + 6),  # 6: next header", _JUMPS),
    _D6 + "x_reply_filter__mutmut_45": (
        "(0x28, 1, 0, 14 + 40 + 2),  # 8: UDP destination port",
        _JUMPS,
    ),
    _D6 + "x_reply_filter__mutmut_46": (
        "(0x28, 0, 1, 14 + 40 + 2),  # 8: UDP destination port",
        _JUMPS,
    ),
    _D6 + "xǁDriverǁ__init____mutmut_5": (
        "self.on_action = on_action or (lambda action: 0)",
        _RETURN,
    ),
    _D6 + "xǁDriverǁ__init____mutmut_7": (
        'self.source: ipaddress.IPv6Address | None = ""',
        _SOURCE,
    ),
    _D6 + "xǁDriverǁ__init____mutmut_21": (
        "self._to_loop, self._inbox = trio.open_memory_channel[Input | trio.Event](17)",
        _BUFFER,
    ),
    _D6 + "xǁDriverǁ__init____mutmut_22": ("self._running = None", _FALSY),
    _D6 + "xǁDriverǁrun__mutmut_2": ("started = None", _STARTED),
    _D6 + "xǁDriverǁrun__mutmut_18": ("self._running = None", _FALSY),
    _D6 + "xǁDriverǁ_next_fact__mutmut_8": (
        'with trio.move_on_at(float("INF") if deadline is None else deadline):',
        _INF,
    ),
    _D6 + "xǁPortLinkǁreceive__mutmut_9": (
        "if level == SOL_PACKET and kind == PACKET_AUXDATA or len(aux) >= 4:",
        _AUX,
    ),
    _D6 + "xǁPortLinkǁreceive__mutmut_10": (
        "if level == SOL_PACKET or kind == PACKET_AUXDATA and len(aux) >= 4:",
        _AUX,
    ),
    _D6 + "xǁPortLinkǁreceive__mutmut_13": (
        "if level == SOL_PACKET and kind == PACKET_AUXDATA and len(aux) > 4:",
        _AUX,
    ),
    _D6 + "xǁPortLinkǁreceive__mutmut_14": (
        "if level == SOL_PACKET and kind == PACKET_AUXDATA and len(aux) >= 5:",
        _AUX,
    ),
    _D6 + "xǁPortLinkǁreceive__mutmut_21": ('status = struct.unpack_from("=i", aux)[0]', _SIGNED),
    _D6 + "xǁPortSocketsǁopen__mutmut_16": ("raw.setsockopt(SOL_PACKET, PACKET_AUXDATA, 2)", _ON),
    _D6 + "xǁSocketsǁopen__mutmut_16": (
        "udp.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 2)",
        _ON,
    ),
    _D6 + "xǁSocketsǁwatch__mutmut_9": (
        "nl = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, )",
        _PROTO,
    ),
    _D6 + "xǁUdpLinkǁsend__mutmut_15": (
        "await self.udp.sendmsg([payload], ancillary, 1, (str(dest), SERVER_PORT, 0, index))",
        _OOB,
    ),
    _D6 + "xǁUdpLinkǁsend__mutmut_17": (
        "await self.udp.sendmsg([payload], ancillary, 0, (str(dest), SERVER_PORT, 1, index))",
        _FLOWINFO,
    ),
}
_CASE_BLIND = "ClassAd attribute names are case-insensitive: any spelling reads the same one"
_FIRST_PART = "only the part before the first separator is kept, however many splits follow"
_STRICT_NET = "ipaddress's networks are strict by default: host bits set are refused either way"
_FALSE = "None is as false as False where it is read (only for its truth)"
_TEMP_THERE = (
    "the temporary file is there whenever the cleanup runs: mkstemp made it, and only the"
    " rename, the try's last step, takes it away"
)
EQUIVALENT |= {
    # lark_async/decide/ads.py
    "lark_async.decide.ads.x__child__mutmut_51": (
        "os._exit(2)",
        "the parent reads any exit status but 0 as the same failure",
    ),
    "lark_async.decide.ads.x__collect__mutmut_8": (
        "if left < 0 or not select.select([fd], [], [], left)[0]:",
        "left is exactly 0 only by the clock's chance; select's zero timeout then polls once"
        " more, after the child has had all its time",
    ),
    "lark_async.decide.ads.x__old_strings_to_new__mutmut_2": ("in_string = None", _FALSE),
    "lark_async.decide.ads.x_write_atomically__mutmut_17": (
        "Path(tmp).unlink(missing_ok=None)",
        _TEMP_THERE,
    ),
    "lark_async.decide.ads.x_write_atomically__mutmut_19": (
        "Path(tmp).unlink(missing_ok=False)",
        _TEMP_THERE,
    ),
    # lark_async/decide/plan.py
    "lark_async.decide.plan.x__slot__mutmut_7": (
        'slot = ads.evaluate(machine_ad, "name")',
        _CASE_BLIND,
    ),
    "lark_async.decide.plan.x__slot__mutmut_8": (
        'slot = ads.evaluate(machine_ad, "NAME")',
        _CASE_BLIND,
    ),
    # lark_async/decide/accounting.py
    "lark_async.decide.accounting.x_derive_accounting__mutmut_7": (
        "incoming = counters.get(INCOMING, (0, 1))[0]",
        "only the default's first element is read",
    ),
    "lark_async.decide.accounting.x_derive_accounting__mutmut_15": (
        "outgoing = counters.get(OUTGOING, (0, 1))[0]",
        "only the default's first element is read",
    ),
    # lark_async/decide/request.py
    "lark_async.decide.request.x__connections__mutmut_7": (
        'wanted = ads.evaluate(ad, "larkallowedconnections")',
        _CASE_BLIND,
    ),
    "lark_async.decide.request.x__connections__mutmut_8": (
        'wanted = ads.evaluate(ad, "LARKALLOWEDCONNECTIONS")',
        _CASE_BLIND,
    ),
    "lark_async.decide.request.x__job_id__mutmut_7": (
        'cluster, proc = ads.evaluate(ad, "clusterid"), ads.evaluate(ad, "ProcId")',
        _CASE_BLIND,
    ),
    "lark_async.decide.request.x__job_id__mutmut_8": (
        'cluster, proc = ads.evaluate(ad, "CLUSTERID"), ads.evaluate(ad, "ProcId")',
        _CASE_BLIND,
    ),
    "lark_async.decide.request.x__job_id__mutmut_14": (
        'cluster, proc = ads.evaluate(ad, "ClusterId"), ads.evaluate(ad, "procid")',
        _CASE_BLIND,
    ),
    "lark_async.decide.request.x__job_id__mutmut_15": (
        'cluster, proc = ads.evaluate(ad, "ClusterId"), ads.evaluate(ad, "PROCID")',
        _CASE_BLIND,
    ),
    "lark_async.decide.request.x_shown__mutmut_19": (
        'text = "".join(c if c.isprintable() else "?" for c in value[: SHOWN_MAX + 2])',
        "past SHOWN_MAX characters only the first SHOWN_MAX are shown, however many are read",
    ),
    # lark_async/decide/resolver.py
    "lark_async.decide.resolver.x_decide__mutmut_32": (
        'node = parse_resolv_conf(src.node_resolv_conf or "XXXX")',
        "a line that is no resolv.conf keyword is skipped: XXXX reads as an empty file",
    ),
    "lark_async.decide.resolver.x_merge_search__mutmut_22": (
        'key = name.rstrip(".").upper()',
        "the key only compares names case-blind: upper or lower, the same names match",
    ),
    "lark_async.decide.resolver.x_parse_resolv_conf__mutmut_11": (
        'words = line.split("#", 1)[0].split(";", )[0].split()',
        _FIRST_PART,
    ),
    "lark_async.decide.resolver.x_parse_resolv_conf__mutmut_16": (
        'words = line.split("#", )[0].split(";", 1)[0].split()',
        _FIRST_PART,
    ),
    "lark_async.decide.resolver.x_parse_resolv_conf__mutmut_19": (
        'words = line.split("#", 2)[0].split(";", 1)[0].split()',
        _FIRST_PART,
    ),
    "lark_async.decide.resolver.x_parse_resolv_conf__mutmut_22": (
        'words = line.split("#", 1)[0].split(";", 2)[0].split()',
        _FIRST_PART,
    ),
    "lark_async.decide.resolver.x_parse_resolv_conf__mutmut_40": (
        'servers.append(ipaddress.ip_address(rest[0].split("%", )[0]))',
        _FIRST_PART,
    ),
    "lark_async.decide.resolver.x_parse_resolv_conf__mutmut_44": (
        'servers.append(ipaddress.ip_address(rest[0].split("%", 2)[0]))',
        _FIRST_PART,
    ),
    # lark_async/decide/settings.py
    "lark_async.decide.settings.x__network__mutmut_5": (
        "net = ipaddress.IPv4Network(str(value).strip(), )",
        _STRICT_NET,
    ),
    "lark_async.decide.settings.x__network6__mutmut_5": (
        "net = ipaddress.IPv6Network(str(value).strip(), )",
        _STRICT_NET,
    ),
    "lark_async.decide.settings.x__networks__mutmut_14": (
        "found.append(ipaddress.ip_network(word, ))",
        _STRICT_NET,
    ),
    "lark_async.decide.settings.x_reference__mutmut_38": (
        "break_on_hyphens=None,",
        "textwrap reads break_on_hyphens as `is True` and for its truth: None is as False",
    ),
    "lark_async.decide.settings.xǁ_Sizeǁ__call____mutmut_9": (
        r'match = re.fullmatch(r"\s*([0-9]+)\s*([kmg]?)b?\s*", str(value), re.IGNORECASE)',
        "the pattern is matched ignoring case: the case of its letters changes nothing",
    ),
}
EQUIVALENT |= {
    # lark_async/decide/audit.py
    "lark_async.decide.audit.xǁAuditTrailǁ__init____mutmut_11": ("self.capped = None", _FALSE),
    "lark_async.decide.audit.xǁAuditTrailǁdecided__mutmut_26": (
        "lines += self._emit(_record(self.job, key, wall), 1, counted=None)[0]",
        _FALSE,
    ),
    "lark_async.decide.audit.xǁAuditTrailǁclose__mutmut_4": (
        "lines += self._close(*self._windows.popitem(last=None))",
        "popitem reads last for its truth: None pops the oldest, as False does",
    ),
    "lark_async.decide.audit.xǁAuditTrailǁdecided__mutmut_18": (
        "lines += self._close(*self._windows.popitem(last=None))",
        "popitem reads last for its truth: None pops the oldest, as False does",
    ),
    "lark_async.decide.audit.xǁAuditTrailǁdecided__mutmut_16": (
        "lines = self._close(*self._windows.popitem(last=False))",
        "the windows are still full only if expire closed none (each it closes makes room):"
        " lines is empty there, so = and += are one",
    ),
}

# mutmut's exit codes per mutant (mutmut/stats.py), grouped as this report counts them
KILLED = {1: "killed", 3: "killed", 37: "killed", -11: "killed", -9: "killed"}
TIMEOUT = {36: "timeout", 24: "timeout", -24: "timeout", 152: "timeout", 255: "timeout"}
OTHER = {0: "survived", 5: "no tests", 33: "no tests", 34: "skipped", 35: "suspicious"}
KILLED_OR_TIMEOUT = ("killed", "timeout")


def status(code: int | None) -> str:
    if code is None:
        return "not checked"
    return KILLED.get(code) or TIMEOUT.get(code) or OTHER.get(code) or "suspicious"


_DIFFS = """import json, sys
from mutmut.mutation.diff_apply import get_diff_for_mutant
print(json.dumps({name: get_diff_for_mutant(name) for name in sys.argv[1:]}))
"""


def _added(diff: str) -> str:
    lines = diff.splitlines()
    return " / ".join(ln[1:].strip() for ln in lines if ln[:1] == "+" and ln[:3] != "+++")


@dataclass(frozen=True)
class Run:
    """One mutmut run: its directory, what it mutates, and the tests that judge it."""

    target: Target
    directory: Path
    modules: list[str]
    tests: tuple[str, ...]
    mutant_globs: list[str]  # mutmut run's names: only these mutants (none: all)

    def source_paths(self) -> list[str]:
        if self.target.tests_by_module:
            return [f"{self.target.package}/{m}.py" for m in self.modules]
        return [self.target.package + "/"]

    def setup(self) -> None:
        """A fresh directory: links to the code and tests, a pyproject.toml for this run."""
        shutil.rmtree(self.directory, ignore_errors=True)
        self.directory.mkdir(parents=True)
        for name in ("dhcp", "dhcp6", "lark_async", "tests", "README.rst"):
            (self.directory / name).symlink_to(
                ROOT / name, target_is_directory=name != "README.rst"
            )
        config = {
            "source_paths": self.source_paths(),
            "also_copy": list(self.target.also_copy),
            "pytest_add_cli_args_test_selection": list(self.tests),
            "pytest_add_cli_args": ["-p", "no:cacheprovider"],
        }
        text = (ROOT / "pyproject.toml").read_text()
        text = re.sub(r"(?ms)^\[tool\.mutmut\]\n.*?(?=^\[|\Z)", "", text)
        text += "\n[tool.mutmut]  # written by bench/mutation.py for this run\n"
        text += "".join(f"{key} = {json.dumps(value)}\n" for key, value in config.items())
        (self.directory / "pyproject.toml").write_text(text)

    def mutmut(self, *args: str, log: Path | None = None) -> subprocess.CompletedProcess[str]:
        """``python -m mutmut ARGS`` in the run's directory; its output to ``log`` or captured."""
        with contextlib.ExitStack() as stack:
            out = stack.enter_context(log.open("w")) if log else subprocess.PIPE
            return subprocess.run(
                [sys.executable, "-m", "mutmut", *args],
                cwd=self.directory,
                stdout=out,
                stderr=subprocess.STDOUT,
                text=True,
                check=False,
            )

    def mutated_lines(self, names: list[str]) -> dict[str, str]:
        """The '+' lines of ``mutmut show NAME``: what each mutant changed the source to.
        (One process for them all, through the function ``show`` prints; if this mutmut
        has none, one ``mutmut show`` each.)"""
        batch = subprocess.run(
            [sys.executable, "-c", _DIFFS, *names],
            cwd=self.directory,
            capture_output=True,
            text=True,
            check=False,
        )
        if batch.returncode == 0:
            diffs = json.loads(batch.stdout)
        else:
            diffs = {name: self.mutmut("show", name).stdout for name in names}
        return {name: _added(diff) for name, diff in diffs.items()}

    def meta(self, module: str) -> Path:
        return self.directory / "mutants" / self.target.package / f"{module}.py.meta"

    def codes(self, module: str) -> dict[str, int | None]:
        meta = self.meta(module)
        return json.loads(meta.read_text())["exit_code_by_key"] if meta.exists() else {}

    def made_none(self) -> bool:
        """mutmut made its mutants, and there are none (it then stops, exit 1)."""
        return all(self.meta(m).exists() and not self.codes(m) for m in self.modules)


def runs_for(name: str, target: Target, modules: list[str], chosen: bool) -> list[Run]:
    if target.tests_by_module:
        return [Run(target, WORK / name / m, [m], target.tests_by_module[m], []) for m in modules]
    dotted = target.package.replace("/", ".")
    globs = [f"{dotted}.{m}.*" for m in modules] if chosen else []
    return [Run(target, WORK / name, modules, target.tests, globs)]


def main(argv: list[str] | None = None, target_name: str | None = None) -> int:
    """The command; ``target_name`` fixes the target (bench/dhcp_mutation.py's "dhcp")."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    if target_name is None:
        parser.add_argument("target", choices=sorted(TARGETS))
    parser.add_argument("modules", nargs="*", help="modules of the target (default: all)")
    parser.add_argument(
        "--report-only", action="store_true", help="report the last run's mutants/, run nothing"
    )
    parser.add_argument("--max-children", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args(argv)
    try:
        import mutmut as _  # noqa: F401
    except ImportError:
        print("mutmut is not installed: pip install -e '.[test]' (or pip install mutmut)")
        return 2
    name = target_name or args.target
    target = TARGETS[name]
    known = target.modules()
    modules = args.modules or known
    unknown = set(modules) - set(known)
    if unknown:
        parser.error(f"not modules of {name}: {', '.join(sorted(unknown))}")
    runs = runs_for(name, target, modules, bool(args.modules))

    for run in [] if args.report_only else runs:
        run.setup()
        log = run.directory / "run.log"
        what = f"{target.package}/ ({', '.join(run.modules)})"
        print(f"mutmut run over {what} (log: {log.relative_to(ROOT)})", flush=True)
        done = run.mutmut(
            "run", "--max-children", str(args.max_children), *run.mutant_globs, log=log
        )
        if done.returncode and run.made_none():
            # mutmut stops when it made no mutant (modes.py: enums and constants only)
            print(f"no mutants of {', '.join(run.modules)}: nothing inside a function")
        elif done.returncode:
            print(log.read_text()[-3000:])
            print(f"mutmut run failed (exit {done.returncode})")
            return 2
    return report(runs)


def report(runs: list[Run]) -> int:
    total: Counter[str] = Counter()
    survivors, equivalent, stale = [], [], []
    for run in runs:
        for module in run.modules:
            codes = run.codes(module)
            counts = Counter(status(code) for code in codes.values())
            killed = counts["killed"] + counts["timeout"]
            n_equiv = 0
            lived = sorted(n for n, c in codes.items() if status(c) not in KILLED_OR_TIMEOUT)
            lines = run.mutated_lines(lived) if lived else {}
            for name in lived:
                line = lines[name]
                judged = EQUIVALENT.get(name)
                if judged and judged[0] == line:
                    equivalent.append((name, line, judged[1], status(codes[name])))
                    n_equiv += 1
                else:
                    survivors.append((name, line, status(codes[name]), run.directory))
                    if judged:
                        stale.append(name)
            print(
                f"{run.target.package}/{module}.py: {killed}/{len(codes)} killed"
                f" ({killed / max(len(codes), 1):.1%}; {counts['timeout']} of them by timeout),"
                f" {n_equiv} equivalent: {killed / max(len(codes) - n_equiv, 1):.1%} of the rest"
                + ("" if codes else " (no mutants: nothing run, or no functions to mutate)")
            )
            total.update(counts)
            total["all"] += len(codes)
    killed = total["killed"] + total["timeout"]
    print(
        f"in all: {killed}/{total['all']} killed ({killed / max(total['all'], 1):.1%}),"
        f" {len(equivalent)} equivalent, {len(survivors)} other survivors:"
        f" {killed / max(total['all'] - len(equivalent), 1):.1%} of the non-equivalent mutants"
    )
    if equivalent:
        print("\nequivalent (see EQUIVALENT in bench/mutation.py):")
        for name, line, why, st in equivalent:
            print(f"  {name} ({st}): {line}\n      {why}")
    if survivors:
        print("\nsurvivors (python -m mutmut show NAME, in the directory named, for the diff):")
        for name, line, st, directory in survivors:
            print(f"  {name} ({st}, {directory.relative_to(ROOT)}): {line}")
    if stale:
        print(f"\njudged equivalent, but the mutant is now another one: {', '.join(stale)}")
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())
