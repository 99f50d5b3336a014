"""Mutation testing of dhcp/ with mutmut 3, judged by the DHCP unit tests only.

    .venv/bin/python bench/dhcp_mutation.py                      # every module of dhcp/
    .venv/bin/python bench/dhcp_mutation.py options frame bpf    # only these
    .venv/bin/python bench/dhcp_mutation.py --report-only        # the last run's results

This is ``bench/mutation.py dhcp`` (the machinery, and EQUIVALENT, are there). mutmut (in
the ``test`` extra: ``pip install -e '.[test]'``) copies dhcp/, tests/ and pyproject.toml
into bench/out/mutation/dhcp/mutants/ (git-ignored), makes each mutant of each function
there, and runs, for each mutant, the tests of tests/unit/dhcp that call that function;
never the namespace tests. mutants/ is made afresh each time, as in a clean clone
(all of dhcp/, 2,279 mutants: about 11 minutes under ``nice -n 19`` on this project's
2-core machine). Prints, per module and in all, the kill score (killed / total) and each
surviving mutant (``python -m mutmut show NAME`` in bench/out/mutation/dhcp/ gives its
diff); a survivor judged equivalent below is listed apart, with its reason, and the score
without the equivalent ones follows. Exits 1 if a mutant survives that is not judged
equivalent.

"Killed" counts the mutants a test failed on and those whose tests never finished
(mutmut's "timeout": an endless loop, such as an option parser that stops advancing).
Running it as root (as CI and this machine do) also runs test_bpf.py's AF_PACKET tests;
as another user they are skipped and bpf.py's socket mutants survive.

Equivalent mutants (no test can tell them from the original; each checked by hand; the
table, by mutant name, is EQUIVALENT in bench/mutation.py):
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

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from mutation import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], target_name="dhcp"))
