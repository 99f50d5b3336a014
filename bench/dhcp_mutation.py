"""Mutation testing of dhcp/ with mutmut 3, judged by the DHCP unit tests only.

    .venv/bin/python bench/dhcp_mutation.py                      # every module of dhcp/
    .venv/bin/python bench/dhcp_mutation.py options frame bpf    # only these
    .venv/bin/python bench/dhcp_mutation.py --report-only        # the last run's results

mutmut (in the ``test`` extra: ``pip install -e '.[test]'``) copies dhcp/, tests/ and
pyproject.toml into mutants/ (git-ignored), makes each mutant of each function there, and
runs, for each mutant, the tests of tests/unit/dhcp that call that function
(``[tool.mutmut]`` in pyproject.toml); never the namespace tests. mutants/ is made afresh
each time, as in a clean clone (options, frame and bpf: 462 mutants, 19 minutes on this
project's 2-core machine; all of dhcp/, 1,802 mutants, several times that: not timed).
Prints, per module and in all, the kill score (killed / total) and each surviving mutant
(``python -m mutmut show NAME`` gives its diff); a survivor judged equivalent below is
listed apart, with its reason, and the score without the equivalent ones follows. Exits 1
if a mutant survives that is not judged equivalent.

"Killed" counts the mutants a test failed on and those whose tests never finished
(mutmut's "timeout": an endless loop, such as an option parser that stops advancing).
Running it as root (as CI and this machine do) also runs test_bpf.py's AF_PACKET tests;
as another user they are skipped and bpf.py's socket mutants survive.

Equivalent mutants (no test can tell them from the original; each checked by hand):
* ``int.from_bytes(value, )`` for ``int.from_bytes(value, "big")`` (options.u32, u16):
  the byte order defaults to "big" since Python 3.11, the oldest this project supports.
* ``value.split(b"\\0", )`` and ``value.split(b"\\0", 2)`` for ``value.split(b"\\0", 1)``
  (options.text): only the part before the first NUL is kept, however many splits follow.
* ``struct.pack("!hh", 3, 1)`` for ``"!HH"`` (options.duid_ll): the same bytes for 3 and 1.
* ``(0x20, 1, 0, ...)``, ``(0x20, 0, 1, ...)``, ``(0x06, 1, 0, 0)``, ``(0x06, 0, 1, 0)``
  (bpf.outgoing_only): jt and jf of a load or a return are ignored by the kernel (checked
  by hand: it accepts such a program, which filters the same) and by test_bpf.py's model;
  only jumps read them.
* ``socket.socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, )`` for ``..., 0)`` (bpf.packet_socket,
  bpf.send_socket): the protocol argument defaults to 0, the value the code passes.
* trio_driver.py (44, by test_sockets.py's kernel tests and test_driver.py): jt/jf of a load
  or a return in reply_filter and in Sockets.open's placeholder filter, as above; buffer
  sizes one byte larger; socket options set to 2 instead of 1; a PACKET_AUXDATA check
  loosened where no other ancillary message comes; None for False where only its truth is
  read; a deadline that is never None while the loop runs; the rest one by one below.
* ``float("INF")`` for ``float("inf")`` (lease.lease_from_reply): float() reads infinity in
  any case.
* ``opt.address(mask, None)`` for ``opt.address(mask, opt.SUBNET_MASK)`` (lease._prefixlen):
  the MalformedMessage naming the option is caught and replaced by Rejected's fixed text.
* a longer ``ljust`` or slice of chaddr, sname or file (message.encode): struct's 16s, 64s and
  128s pad with NULs and cut to the field's size, so the header packs the same bytes.
* ``hash(None)`` for ``hash(self._key())`` (message.Message.__hash__): a constant hash keeps
  the contract (equal messages hash alike); only the speed of a set or dict of them differs.
* ``sock.recv(129, ...)`` for ``sock.recv(128, ...)`` (arp.drain): the frames are dropped
  unread, and recv discards whatever of a datagram does not fit its buffer.
* client.py and trio_driver.py's Driver: arguments no caller passes or nothing reads
  (``_again``'s retry_at and dst_mac, ``_Heard.began``, an offer's lease start, a count reset
  again before it is read), branches no input reaches (``_enter``'s error, ``_next_offer``
  with no offer, the Driver's loop with no deadline) and falsy values read only as such;
  each with its reason in EQUIVALENT below.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

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

# mutmut's exit codes per mutant (mutmut/stats.py), grouped as this report counts them
KILLED = {1: "killed", 3: "killed", 37: "killed", -11: "killed", -9: "killed"}
TIMEOUT = {36: "timeout", 24: "timeout", -24: "timeout", 152: "timeout", 255: "timeout"}
OTHER = {0: "survived", 5: "no tests", 33: "no tests", 34: "skipped", 35: "suspicious"}


def status(code: int | None) -> str:
    if code is None:
        return "not checked"
    return KILLED.get(code) or TIMEOUT.get(code) or OTHER.get(code) or "suspicious"


def mutmut(*args: str, log: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m mutmut ARGS`` in the checkout; its output to ``log`` or captured."""
    with contextlib.ExitStack() as stack:
        out = stack.enter_context(log.open("w")) if log else subprocess.PIPE
        return subprocess.run(
            [sys.executable, "-m", "mutmut", *args],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            check=False,
        )


def mutated_line(name: str) -> str:
    """The '+' line of ``mutmut show NAME``: what the mutant changed the source to."""
    shown = mutmut("show", name).stdout.splitlines()
    added = [ln[1:].strip() for ln in shown if ln.startswith("+") and not ln.startswith("+++")]
    return " / ".join(added)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", help="modules of dhcp/ (default: all)")
    parser.add_argument(
        "--report-only", action="store_true", help="report the last run's mutants/, run nothing"
    )
    parser.add_argument("--max-children", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args()
    try:
        import mutmut as _  # noqa: F401
    except ImportError:
        print("mutmut is not installed: pip install -e '.[test]' (or pip install mutmut)")
        return 2
    known = sorted(p.stem for p in (ROOT / "dhcp").glob("*.py") if p.stem != "__init__")
    modules = args.modules or known
    unknown = set(modules) - set(known)
    if unknown:
        parser.error(f"not modules of dhcp/: {', '.join(sorted(unknown))}")
    if not args.report_only:
        shutil.rmtree(ROOT / "mutants", ignore_errors=True)
        (ROOT / "mutants").mkdir()
        log = ROOT / "mutants" / "run.log"
        names = [f"dhcp.{m}.*" for m in modules] if args.modules else []
        print(f"mutmut run over {', '.join(modules)} (log: {log.relative_to(ROOT)})", flush=True)
        run = mutmut("run", "--max-children", str(args.max_children), *names, log=log)
        if run.returncode:
            print(log.read_text()[-3000:])
            print(f"mutmut run failed (exit {run.returncode})")
            return 2

    total: Counter[str] = Counter()
    survivors, equivalent, stale = [], [], []
    for module in modules:
        meta = ROOT / "mutants" / "dhcp" / f"{module}.py.meta"
        codes = json.loads(meta.read_text())["exit_code_by_key"] if meta.exists() else {}
        counts = Counter(status(code) for code in codes.values())
        killed = counts["killed"] + counts["timeout"]
        for name in sorted(n for n, c in codes.items() if status(c) not in ("killed", "timeout")):
            line = mutated_line(name)
            judged = EQUIVALENT.get(name)
            if judged and judged[0] == line:
                equivalent.append((name, line, judged[1], status(codes[name])))
            else:
                survivors.append((name, line, status(codes[name])))
                if judged:
                    stale.append(name)
        n_equiv = sum(1 for e in equivalent if e[0].startswith(f"dhcp.{module}."))
        print(
            f"dhcp/{module}.py: {killed}/{len(codes)} killed"
            f" ({killed / max(len(codes), 1):.1%}; {counts['timeout']} of them by timeout),"
            f" {n_equiv} equivalent: {killed / max(len(codes) - n_equiv, 1):.1%} of the rest"
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
        print("\nequivalent (see the list at the top of bench/dhcp_mutation.py):")
        for name, line, why, st in equivalent:
            print(f"  {name} ({st}): {line}\n      {why}")
    if survivors:
        print("\nsurvivors (python -m mutmut show NAME for the diff):")
        for name, line, st in survivors:
            print(f"  {name} ({st}): {line}")
    if stale:
        print(f"\njudged equivalent, but the mutant is now another one: {', '.join(stale)}")
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())
