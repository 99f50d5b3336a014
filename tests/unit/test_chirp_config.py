"""The chirp config and the starter lookup: what the job writes is parsed strictly."""

from __future__ import annotations

import ipaddress
import os

import pytest

from lark_async.job.chirp import (
    CONFIG_MAX_BYTES,
    ChirpUnusable,
    listeners,
    parse_config,
    parse_proc_address,
    quote,
    read_config,
    render_commands,
)

COOKIE = "abcdefghijklmnopqrstuvwxyzabcde"


def test_the_starters_own_line_parses():
    contact = parse_config(f"127.0.0.1 9618 {COOKIE}\n".encode())
    assert (str(contact.host), contact.port, contact.cookie) == ("127.0.0.1", 9618, COOKIE)
    assert str(parse_config(f"::1 40000 {COOKIE}".encode()).host) == "::1"


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"", "not one line"),
        (f"127.0.0.1 9618 {COOKIE} extra\n".encode(), "not one line"),
        (f"127.0.0.1 9618 {COOKIE}\n\n".encode(), "not one line"),
        (f"127.0.0.1  9618 {COOKIE}\n".encode(), "not one line"),
        (f"127.0.0.1 96x8 {COOKIE}\n".encode(), "not one line"),
        (f"localhost 9618 {COOKIE}\n".encode(), "not one line"),
        (f"127.0.0.1 9618 {COOKIE}\x00\n".encode(), "not one line"),
        (b"\xff\xfe 1 c\n", "not one line"),
        (f"10.0.0.1 9618 {COOKIE}\n".encode(), "not a loopback address"),
        (f"0.0.0.0 9618 {COOKIE}\n".encode(), "not a loopback address"),
        (f"1.2.3 9618 {COOKIE}\n".encode(), "not an IP address"),
        (f"127.0.0.1 0 {COOKIE}\n".encode(), "out of range"),
        (f"127.0.0.1 65536 {COOKIE}\n".encode(), "out of range"),
        (b"127.0.0.1 9618 " + b"c" * 257 + b"\n", "not one line"),
    ],
)
def test_anything_else_is_refused_with_a_reason(data, why):
    with pytest.raises(ChirpUnusable, match=why):
        parse_config(data)


def test_a_symlink_a_fifo_a_device_and_a_huge_file_are_refused(tmp_path):
    me = (os.getuid(), os.getgid())
    good = tmp_path / "good"
    good.write_text(f"127.0.0.1 9618 {COOKIE}\n")
    assert read_config(good, *me).port == 9618
    link = tmp_path / "link"
    link.symlink_to(good)
    with pytest.raises(ChirpUnusable, match="symbolic link"):
        read_config(link, *me)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # (no writer: a blocking open would wait forever)
    with pytest.raises(ChirpUnusable, match="not a regular file"):
        read_config(fifo, *me)
    with pytest.raises(ChirpUnusable, match="not a regular file"):
        read_config(tmp_path / ".." / tmp_path.name / "..", *me)
    huge = tmp_path / "huge"
    huge.write_text(f"127.0.0.1 9618 {COOKIE}\n" + " " * CONFIG_MAX_BYTES)
    with pytest.raises(ChirpUnusable, match="larger than"):
        read_config(huge, *me)
    with pytest.raises(FileNotFoundError):  # no IO proxy: no chirp, nothing to say
        read_config(tmp_path / "missing", *me)


# /proc/net/tcp as the kernel prints it (header, then one socket a line)
TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:25B2 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1111 1
   1: 00000000:25B2 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2222 1
   2: 0100007F:25B2 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 3333 1
   3: 0B004D0A:25B2 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4444 1
   4: 0100007F:25B3 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 5555 1
"""
TCP6 = """\
  sl  local_address                         remote_address                        st ...
   0: 00000000000000000000000001000000:25B2 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 6666 1
   1: 0000000000000000FFFF00000100007F:25B2 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 7777 1
"""  # noqa: E501


def test_proc_addresses_are_words_in_host_order():
    assert str(parse_proc_address("0100007F")) == "127.0.0.1"
    assert str(parse_proc_address("0B004D0A")) == "10.77.0.11"
    assert str(parse_proc_address("00000000000000000000000001000000")) == "::1"


def test_every_listener_that_would_take_the_connection_is_found():
    loopback = ipaddress.ip_address("127.0.0.1")
    # bound to it or to the wildcard, listening (not the established one), on that port only
    assert listeners(TCP, loopback, 9650) == {1111, 2222}
    assert listeners(TCP, loopback, 9651) == {5555}
    assert listeners(TCP6, ipaddress.ip_address("::1"), 9650) == {6666}
    assert listeners(TCP6, loopback, 9650) == {7777}  # ::ffff:127.0.0.1


def test_commands_are_escaped_and_only_the_pushed_attributes_go():
    assert quote("a b\\c\nd") == "a\\ b\\\\c\\\nd"
    lines = render_commands(
        {
            "NetworkIncoming": 12,
            "NetworkLastDeniedDestination": "10.0.0.1:80/tcp",
            "LarkInnerAddressIPv4": "192.168.181.2",
            "Network-Bad": 1,
        }
    )
    assert lines == [
        b"set_job_attr_delayed NetworkIncoming 12\n",
        b'set_job_attr_delayed NetworkLastDeniedDestination "10.0.0.1:80/tcp"\n',
    ]
    spaced = render_commands({"NetworkNote": "a b\nc"})
    assert spaced == [b'set_job_attr_delayed NetworkNote "a\\ b?c"\n']
