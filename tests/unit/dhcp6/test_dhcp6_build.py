"""One builder per client message: the options RFC 8415 section 18.2 gives each."""

from __future__ import annotations

import ipaddress

import pytest

from dhcp6 import build
from dhcp6 import options as opt
from dhcp6.config import Config
from dhcp6.message import decode, encode

MT = opt.MessageType
IP6 = ipaddress.IPv6Address
DUID = bytes.fromhex("0003000102aabbccddee")
SERVER = bytes.fromhex("000300010200000000fe")
ADDR = IP6("2001:db8:77::50")
CONFIG = Config(duid=DUID, iaid=7)


def codes(msg):
    return [o.code for o in msg.options]


def test_solicit_18_2_1():
    msg = build.solicit(CONFIG, 0x123456)
    assert (msg.msg_type, msg.xid) == (MT.SOLICIT, 0x123456)
    assert codes(msg) == [1, 3, 6, 14, 8]
    assert msg.get(opt.IaNa) == opt.IaNa(7, 0, 0, ())
    assert msg.get(opt.OptionRequest) == opt.OptionRequest((23, 24, 82))
    assert msg.get(opt.ElapsedTime) == opt.ElapsedTime(0)
    no_rapid = build.solicit(Config(duid=DUID, iaid=7, rapid_commit=False), 1)
    assert codes(no_rapid) == [1, 3, 6, 8]


def test_request_renew_rebind_name_the_addresses_with_lifetimes_0():
    ia = opt.IaNa(7, 0, 0, (opt.IaAddress(ADDR, 0, 0),))
    req = build.request(CONFIG, 1, SERVER, [ADDR])
    ren = build.renew(CONFIG, 2, SERVER, [ADDR])
    reb = build.rebind(CONFIG, 3, [ADDR])
    assert [m.msg_type for m in (req, ren, reb)] == [MT.REQUEST, MT.RENEW, MT.REBIND]
    for msg in (req, ren, reb):
        assert msg.get(opt.IaNa) == ia and msg.get(opt.ClientId) == opt.ClientId(DUID)
        assert msg.get(opt.OptionRequest) == opt.OptionRequest((23, 24, 82))
    assert req.get(opt.ServerId) == ren.get(opt.ServerId) == opt.ServerId(SERVER)
    assert reb.get(opt.ServerId) is None  # 18.2.5: MUST NOT


@pytest.mark.parametrize(
    ("builder", "kind"), [(build.release, MT.RELEASE), (build.decline, MT.DECLINE)]
)
def test_release_and_decline_carry_no_oro(builder, kind):
    msg = builder(DUID, 7, 9, SERVER, [ADDR])
    assert msg.msg_type is kind and codes(msg) == [1, 2, 3, 8]


def test_information_request_asks_for_inf_max_rt():
    msg = build.information_request(CONFIG, 4)
    assert msg.msg_type is MT.INFORMATION_REQUEST
    assert msg.get(opt.OptionRequest) == opt.OptionRequest((23, 24, 83))
    assert msg.get(opt.IaNa) is None


def test_with_elapsed_in_hundredths_capped():
    msg = build.solicit(CONFIG, 1)
    assert build.with_elapsed(msg, 1.234).get(opt.ElapsedTime) == opt.ElapsedTime(123)
    assert build.with_elapsed(msg, 1e6).get(opt.ElapsedTime) == opt.ElapsedTime(0xFFFF)
    assert build.with_elapsed(msg, -1).get(opt.ElapsedTime) == opt.ElapsedTime(0)
    assert codes(build.with_elapsed(msg, 1)) == codes(msg)


def test_every_built_message_round_trips():
    for msg in (
        build.solicit(CONFIG, 1),
        build.request(CONFIG, 1, SERVER, [ADDR]),
        build.renew(CONFIG, 1, SERVER, [ADDR]),
        build.rebind(CONFIG, 1, [ADDR]),
        build.release(DUID, 7, 1, SERVER, [ADDR]),
        build.decline(DUID, 7, 1, SERVER, [ADDR]),
        build.information_request(CONFIG, 1),
    ):
        assert decode(encode(msg)) == msg


_NEGATIVE = "delays and timeouts must not be negative"


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"duid": b"\0\3"}, "our DUID of 2 bytes (3-130)"),
        ({"iaid": -1}, "IAID -1 is not 32 bits"),
        ({"iaid": 2**32}, "IAID 4294967296 is not 32 bits"),
        ({"solicit_delay_max_s": -1}, _NEGATIVE),
        ({"timeout_s": 0}, _NEGATIVE),
        ({"sol_max_rt_s": 0}, _NEGATIVE),
    ],
)
def test_config_refuses_nonsense(kw, message):
    args = {"duid": DUID, "iaid": 7, **kw}
    with pytest.raises(ValueError) as caught:
        Config(**args)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    "kw",
    [
        {"iaid": 0},
        {"iaid": 2**32 - 1},
        {"solicit_delay_max_s": 0},
        {"timeout_s": 0.5},
        {"sol_max_rt_s": 0.5},
    ],
)
def test_config_takes_every_value_up_to_the_bounds(kw):
    assert Config(**{"duid": DUID, "iaid": 7, **kw})
