"""Each setting's parser at its bounds: what an admin may write, what it becomes, and the one
line that refuses anything else, naming the knob, the value and where it came from."""

from __future__ import annotations

import dataclasses
import ipaddress
import os

import classad2
import pytest

from lark_async.decide import ads, settings
from lark_async.decide.modes import AddressType, Dhcp6Use, FirewallBackend, IPv6Mode, IPv6Use
from lark_async.decide.modes import NetworkType as Net
from lark_async.decide.reach import parse_node_ports, parse_services
from lark_async.decide.settings import KNOBS, Knob, Settings, resolve_settings
from lark_async.errors import ConfigError


def resolve(cli=None, machine: str = "", config=None) -> Settings:
    machine_ad = classad2.parseOne(machine) if machine else classad2.ClassAd()
    return resolve_settings(cli or {}, machine_ad, classad2.ClassAd(), config or {})


def error_of(**kwargs) -> str:
    with pytest.raises(ConfigError) as info:
        resolve(**kwargs)
    return str(info.value)


def knob(field: str) -> Knob:
    (found,) = [k for k in KNOBS if k.field == field]
    return found


IP = ipaddress.ip_address
NET = ipaddress.ip_network

# -- values an admin may write, and what each becomes --------------------------------------

ACCEPTED = [
    # word lists: commas or spaces, any case, each word once, in the order first given
    ("LARK_ALLOWED_NETWORK_TYPES", "nat,bridge", (Net.NAT, Net.BRIDGE)),
    ("LARK_ALLOWED_NETWORK_TYPES", " BRIDGE  nat, bridge ", (Net.BRIDGE, Net.NAT)),
    ("LARK_ALLOWED_NETWORK_TYPES", "none", (Net.NONE,)),
    ("LARK_ALLOWED_ADDRESS_TYPES", "static dhcp", (AddressType.STATIC, AddressType.DHCP)),
    # seconds, each at both its bounds
    ("LARK_ACCOUNTING_INTERVAL", "0.05", 0.05),
    ("LARK_ACCOUNTING_INTERVAL", "86400", 86400.0),
    ("LARK_DHCP_TIMEOUT", "1", 1.0),
    ("LARK_DHCP_TIMEOUT", " 600 ", 600.0),
    ("LARK_SCRIPT_TIMEOUT", "1", 1.0),
    ("LARK_SCRIPT_TIMEOUT", "3600", 3600.0),
    ("LARK_BRIDGE_WAIT", "0", 0.0),
    ("LARK_BRIDGE_WAIT", "120", 120.0),
    ("LARK_KILL_GRACE", "0", 0.0),
    ("LARK_KILL_GRACE", "3600", 3600.0),
    # whole numbers, at their bounds
    ("LARK_MAX_JOBS_PER_USER", "1", 1),
    ("LARK_MAX_JOBS_PER_USER", "65536", 65536),
    ("LARK_JOB_MTU", "1280", 1280),
    ("LARK_JOB_MTU", " 65535 ", 65535),
    # sizes: bytes or a binary K, M, G, with or without B, in any case
    ("LARK_AUDIT_MAX_BYTES", "4096", 4096),
    ("LARK_AUDIT_MAX_BYTES", "4K", 4096),
    ("LARK_AUDIT_MAX_BYTES", "16m", 16 << 20),
    ("LARK_AUDIT_MAX_BYTES", " 2 mb ", 2 << 20),
    ("LARK_AUDIT_MAX_BYTES", "3Gb", 3 << 30),
    ("LARK_AUDIT_MAX_BYTES", "1024G", 1 << 40),
    # IPv6 prefixes
    ("LARK_LOCAL_NETWORK6", " fd12:3456:789a::/48 ", NET("fd12:3456:789a::/48")),
    ("LARK_LOCAL_NETWORK6", "fc00::/7", NET("fc00::/7")),
    ("LARK_ROUTED_PREFIX6", "2001:db8:7::/56", NET("2001:db8:7::/56")),
    ("LARK_ROUTED_PREFIX6", "fd00:1::/64", NET("fd00:1::/64")),  # a site may route a ULA
    ("LARK_ROUTED_PREFIX6", "", None),
    ("LARK_ROUTED_PREFIX6", " None ", None),
    # interfaces: 1 to 15 characters
    ("LARK_BRIDGE_NAME", "br-lan.5_x", "br-lan.5_x"),
    ("LARK_BRIDGE_NAME", " " + "b" * 15 + " ", "b" * 15),
    ("LARK_BRIDGE_DEVICE", "e", "e"),
    # a static address's prefix: a netmask or a length, /8 to /30
    ("LARK_SUBNET_MASK", "255.0.0.0", 8),
    ("LARK_SUBNET_MASK", "8", 8),
    ("LARK_SUBNET_MASK", " 255.255.255.252 ", 30),
    ("LARK_SUBNET_MASK", "30", 30),
    ("LARK_GATEWAY", " 10.0.0.1 ", IP("10.0.0.1")),
    ("NETWORK_NAMESPACE_CREATE_SCRIPT", " /usr/libexec/lark/up ", "/usr/libexec/lark/up"),
    # DNS servers: one to three, each once
    ("LARK_JOB_DNS", "10.0.0.53", (IP("10.0.0.53"),)),
    ("LARK_JOB_DNS", "10.0.0.53,10.0.0.54 10.0.0.53", (IP("10.0.0.53"), IP("10.0.0.54"))),
    ("LARK_JOB_DNS", "1.1.1.1, 8.8.8.8, 9.9.9.9", (IP("1.1.1.1"), IP("8.8.8.8"), IP("9.9.9.9"))),
    # a machine resource's attribute name
    ("LARK_BANDWIDTH_RESOURCE", " Net_Bw2 ", "Net_Bw2"),
    ("LARK_BANDWIDTH_RESOURCE", "_" + "a" * 99, "_" + "a" * 99),
    # networks of both families, each once
    ("LARK_BANDWIDTH_EXEMPT", "", ()),
    (
        "LARK_BANDWIDTH_EXEMPT",
        "10.1.0.0/16,2001:db8:5::/48 10.1.0.0/16",
        (NET("10.1.0.0/16"), NET("2001:db8:5::/48")),
    ),
    ("LARK_JOB_LOOPBACK_SERVICES", "tcp 127.0.0.1:3128", parse_services("tcp 127.0.0.1:3128")),
    ("LARK_NODE_PORTS", "udp 53, tcp 3128", parse_node_ports("udp 53, tcp 3128")),
    # rates in Mbit/s: anything above 0, up to a terabit
    ("LARK_BANDWIDTH_LIMIT", "0.5", 0.5),
    ("LARK_BANDWIDTH_LIMIT_EGRESS", "1e6", 1e6),
    # the agent's cgroup: none, or a path of up to 512 characters
    ("LARK_AGENT_CGROUP", "/" + "a" * 511, "/" + "a" * 511),
    ("LARK_AGENT_CGROUP", "../../lark.agents", "../../lark.agents"),
]


@pytest.mark.parametrize(("config", "text", "value"), ACCEPTED)
def test_a_good_value_in_the_config_becomes_the_setting(config, text, value):
    (found,) = [k for k in KNOBS if k.config == config]
    got = getattr(resolve(config={config: text}), found.field)
    assert got == value and type(got) is type(value)
    if isinstance(value, tuple):
        assert [type(v) for v in got] == [type(v) for v in value]


# -- values refused, each with the one line an admin reads ----------------------------------

REFUSED = [
    ("LARK_ALLOWED_NETWORK_TYPES", "nat, wifi", "is not a list of nat, bridge, none"),
    ("LARK_ALLOWED_NETWORK_TYPES", " , ", "is not a list of nat, bridge, none"),
    ("LARK_ALLOWED_ADDRESS_TYPES", "off", "is not a list of local, dhcp, static"),
    ("LARK_ACCOUNTING_INTERVAL", "0.049", "must be between 0.05 and 86400 seconds"),
    ("LARK_DHCP_TIMEOUT", "0.99", "must be between 1 and 600 seconds"),
    ("LARK_DHCP_TIMEOUT", "600.5", "must be between 1 and 600 seconds"),
    ("LARK_SCRIPT_TIMEOUT", "0.5", "must be between 1 and 3600 seconds"),
    ("LARK_SCRIPT_TIMEOUT", "3601", "must be between 1 and 3600 seconds"),
    ("LARK_BRIDGE_WAIT", "-0.1", "must be between 0 and 120 seconds"),
    ("LARK_BRIDGE_WAIT", "120.1", "must be between 0 and 120 seconds"),
    ("LARK_KILL_GRACE", "-1", "must be between 0 and 3600 seconds"),
    ("LARK_KILL_GRACE", "3600.01", "must be between 0 and 3600 seconds"),
    ("LARK_KILL_GRACE", "5s", "is not a number of seconds"),
    ("LARK_MAX_JOBS_PER_USER", "0", "must be between 1 and 65536"),
    ("LARK_MAX_JOBS_PER_USER", "65537", "must be between 1 and 65536"),
    ("LARK_MAX_JOBS_PER_USER", "1.5", "is not a whole number"),
    ("LARK_JOB_MTU", "1279", "must be between 1280 and 65535"),
    ("LARK_JOB_MTU", "65536", "must be between 1280 and 65535"),
    ("LARK_JOB_MTU", "jumbo", "is not a whole number"),
    ("LARK_AUDIT_MAX_BYTES", "4095", "must be between 4096 and 1099511627776 bytes"),
    ("LARK_AUDIT_MAX_BYTES", "1025G", "must be between 4096 and 1099511627776 bytes"),
    ("LARK_AUDIT_MAX_BYTES", "1.5M", "is not a size in bytes (e.g. 16777216 or 16M)"),
    ("LARK_AUDIT_MAX_BYTES", "16T", "is not a size in bytes (e.g. 16777216 or 16M)"),
    ("LARK_AUDIT_MAX_BYTES", "", "is not a size in bytes (e.g. 16777216 or 16M)"),
    ("LARK_LOCAL_NETWORK6", "fd00::x/64", "is not an IPv6 prefix like fd4c:6172:6b00::/64"),
    ("LARK_LOCAL_NETWORK6", "fd00::/65", "is too small: it needs a prefix of /64 or shorter"),
    (
        "LARK_LOCAL_NETWORK6",
        "2001:db8::/64",
        "is not a unique local prefix (fc00::/7), which NAT66 needs",
    ),
    (
        "LARK_ROUTED_PREFIX6",
        "ff05::/64",
        "is not a prefix a site can route (link-local, multicast, loopback)",
    ),
    ("LARK_ROUTED_PREFIX6", "2001:db8::/65", "is too small: it needs a prefix of /64 or shorter"),
    ("LARK_BRIDGE_NAME", ".", "is not an interface name (1-15 letters, digits, '_', '.', '-')"),
    ("LARK_BRIDGE_NAME", "..", "is not an interface name (1-15 letters, digits, '_', '.', '-')"),
    (
        "LARK_BRIDGE_NAME",
        "b" * 16,
        "is not an interface name (1-15 letters, digits, '_', '.', '-')",
    ),
    (
        "LARK_BRIDGE_DEVICE",
        "-eth0",
        "is not an interface name (1-15 letters, digits, '_', '.', '-')",
    ),
    ("LARK_SUBNET_MASK", "254.0.0.0", "is not a LAN's prefix (/8 to /30)"),
    ("LARK_SUBNET_MASK", "7", "is not a LAN's prefix (/8 to /30)"),
    ("LARK_SUBNET_MASK", "31", "is not a LAN's prefix (/8 to /30)"),
    ("LARK_SUBNET_MASK", "255.255.255.254", "is not a LAN's prefix (/8 to /30)"),
    (
        "LARK_SUBNET_MASK",
        "255.0.255.0",
        "is not a netmask (255.255.255.0) or prefix length (24)",
    ),
    ("LARK_GATEWAY", "gw", "is not an IPv4 address"),
    ("LARK_GATEWAY", "10.0.0.1/24", "is not an IPv4 address"),
    ("NETWORK_NAMESPACE_CREATE_SCRIPT", "up.sh", "is not an absolute path to a program"),
    ("NETWORK_NAMESPACE_DELETE_SCRIPT", "/bin/x\0y", "is not an absolute path to a program"),
    ("LARK_JOB_DNS", " ", "is empty: name one to three DNS servers"),
    (
        "LARK_JOB_DNS",
        "1.1.1.1 1.0.0.1 8.8.8.8 9.9.9.9",
        "names 4 servers; a resolver uses at most 3",
    ),
    ("LARK_JOB_DNS", "dns.example", "is not a list of IPv4 addresses"),
    ("LARK_JOB_DNS", "10.0.0.53, 2001:db8::53", "is not a list of IPv4 addresses"),
    ("LARK_JOB_DNS", "0.0.0.0", "names an address no DNS server has"),
    ("LARK_JOB_DNS", "10.0.0.53 224.0.0.251", "names an address no DNS server has"),
    ("LARK_BANDWIDTH_RESOURCE", "a" * 101, "is not a ClassAd attribute name"),
    ("LARK_BANDWIDTH_RESOURCE", "1Gbit", "is not a ClassAd attribute name"),
    (
        "LARK_BANDWIDTH_EXEMPT",
        "10.1.0.0/16, " + "x" * 70,
        f"names '{'x' * 60}', which is not a network like 10.1.0.0/16 or 2001:db8::/48",
    ),
    ("LARK_AGENT_CGROUP", "/" + "a" * 512, "is not none or a cgroup path"),
    ("LARK_AGENT_CGROUP", "/./", "is not none or a cgroup path"),
]


@pytest.mark.parametrize(("config", "text", "why"), REFUSED)
def test_a_bad_value_in_the_config_is_one_line_naming_knob_and_value(config, text, why):
    assert error_of(config={config: text}) == f'{config} "{text}" (HTCondor config) {why}'


@pytest.mark.parametrize(
    ("machine", "message"),
    [
        (
            '[LarkInnerAddressIPv4 = "10.0.0.300"]',
            'LarkInnerAddressIPv4 "10.0.0.300" (machine ad) is not an IPv4 address like'
            " 10.0.0.5 or 10.0.0.5/24",
        ),
        *(
            (
                f'[LarkInnerAddressIPv4 = "{address}"]',
                f'LarkInnerAddressIPv4 "{address}" (machine ad) is not a usable host address',
            )
            for address in ("0.0.0.0", "224.0.0.1/4", "127.0.0.2/8", "169.254.0.9/16")
        ),
        (
            "[LarkConnectionPolicy = 5]",
            "LarkConnectionPolicy 5 (machine ad) is not a string of entries",
        ),
    ],
)
def test_a_bad_value_in_the_machine_ad_is_one_line_naming_the_attribute(machine, message):
    assert error_of(machine=machine) == message


def test_a_static_address_without_a_prefix_keeps_it_open():
    """(The prefix then comes from LARK_SUBNET_MASK: decide/plan.py.)"""
    got = resolve(machine='[LarkInnerAddressIPv4 = " 10.0.0.5 "]').static_address
    assert got == ipaddress.IPv4Interface("10.0.0.5/32")
    assert resolve(machine='[LarkInnerAddressIPv4 = "10.0.0.5/24"]').static_address == (
        ipaddress.IPv4Interface("10.0.0.5/24")
    )


@pytest.mark.parametrize(
    ("cli", "message"),
    [
        # a setting without a flag, given by a caller of resolve_settings
        (
            {"use_network_namespaces": "maybe"},
            'USE_NETWORK_NAMESPACES "maybe" (command line) is not a boolean (true or false)',
        ),
        (
            {"bandwidth_limit": True},
            "LARK_BANDWIDTH_LIMIT True (command line --bandwidth-limit) is not a rate in Mbit/s",
        ),
        (
            {"kill_grace_s": [5]},
            "LARK_KILL_GRACE [5] (command line --kill-grace) is not a number of seconds",
        ),
    ],
)
def test_a_bad_value_from_the_command_line_says_so(cli, message):
    assert error_of(cli=cli) == message


# -- the table itself --------------------------------------------------------------------------


def test_a_declared_setting_carries_its_knob_and_its_default():
    @dataclasses.dataclass(frozen=True)
    class Table:
        size: int = settings._knob(
            3,
            int,
            "The size.",
            config="SIZE",
            machine="Size",
            flag="--size",
            metavar="N",
            help="how big",
            shown_default="three",
        )

    (declared,) = dataclasses.fields(Table)
    assert Table().size == 3
    assert declared.metadata["knob"] == Knob(
        int, "The size.", "SIZE", "Size", "--size", "N", "how big", "three"
    )


@pytest.mark.parametrize(
    ("field", "word", "member"),
    [
        ("network_type", "bridge", Net.BRIDGE),
        ("address_type", "dhcp", AddressType.DHCP),
        ("firewall_backend", "iptables", FirewallBackend.IPTABLES),
        ("ipv6", "off", IPv6Use.OFF),
        ("ipv6_mode", "routed", IPv6Mode.ROUTED),
        ("dhcp6", "on", Dhcp6Use.ON),
        ("allowed_network_types", ("bridge",), (Net.BRIDGE,)),
        ("allowed_address_types", ("static",), (AddressType.STATIC,)),
    ],
)
def test_settings_built_from_words_hold_the_modes_members(field, word, member):
    """Callers compare modes with ``is``: a word equal to the member is not enough."""
    got = getattr(Settings(**{field: word}), field)
    if isinstance(member, tuple):
        assert len(got) == len(member) and all(g is m for g, m in zip(got, member, strict=True))
    else:
        assert got is member


@pytest.mark.parametrize(
    ("field", "line"),
    [
        ("kill_grace_s", "LARK_KILL_GRACE: seconds between a forwarded TERM/INT and the agent's"
         " KILL (run only) (default: 5)"),
        ("network_type", "LarkNetworkType: nat, bridge or none (loopback only) (default: nat)"),
        ("audit_max_bytes", "LARK_AUDIT_MAX_BYTES: the cap of each job's audit log; past it"
         " decisions are only counted (default: 16M)"),
        ("bridge_device", "LARK_BRIDGE_DEVICE: the LAN device to make the bridge from when it"
         " does not exist (its addresses and routes move to the bridge)"),
    ],
)  # fmt: skip
def test_a_flags_help_names_the_knob_and_its_default(field, line):
    assert knob(field).flag_help() == line


def test_the_reference_never_breaks_a_line_inside_a_hyphenated_word(monkeypatch):
    doc = "word " * 14 + "ab-cd-hyphenated-word-near-the-end-of-a-line."
    monkeypatch.setattr(settings, "KNOBS", (dataclasses.replace(knob("kill_grace_s"), doc=doc),))
    text = settings.reference()
    assert "    ab-cd-hyphenated-word-near-the-end-of-a-line.\n" in text


def test_the_reference_command(capsys):
    assert settings.main(["--reference"]) == 0
    assert capsys.readouterr().out == settings.reference()
    for argv in ([], ["--reference", "--write"]):
        assert settings.main(argv) == 2
        out = capsys.readouterr()
        assert (out.out, out.err) == (
            "",
            "usage: python -m lark_async.decide.settings --reference\n",
        )


# -- under wrap: the machine attributes as config macros ----------------------------------------


def nested(depth: int) -> str:
    """An expression ``ads.expression_depth`` finds ``depth`` deep."""
    text = "+".join(["1"] * (depth + 1))
    assert ads.expression_depth(text) == depth
    return text


def test_a_machine_attribute_in_the_config_may_nest_as_deep_as_the_limit_and_no_deeper():
    deepest = nested(ads.MAX_EXPR_DEPTH)
    admin = settings.config_machine_ad({"LarkNetworkAccounting": deepest})
    assert list(admin.keys()) == ["LarkNetworkAccounting"]
    too_deep = nested(ads.MAX_EXPR_DEPTH + 1)
    with pytest.raises(ConfigError) as info:
        settings.config_machine_ad({"LarkNetworkAccounting": too_deep})
    assert str(info.value) == (
        f'LarkNetworkAccounting "{too_deep}" (HTCondor config) is not a ClassAd expression'
    )


# -- where the HTCondor config comes from -------------------------------------------------------


def test_without_a_config_file_there_is_no_config(monkeypatch, tmp_path):
    for path in (str(tmp_path / "missing"), os.devnull):
        monkeypatch.setenv("CONDOR_CONFIG", path)
        assert settings.htcondor_config() == {}
    monkeypatch.delenv("CONDOR_CONFIG")
    monkeypatch.setattr(settings, "CONDOR_CONFIG", str(tmp_path / "missing"))
    assert settings.htcondor_config() == {}


def test_condor_config_in_the_environment_names_the_file(monkeypatch, tmp_path):
    import htcondor2

    monkeypatch.setattr(htcondor2, "param", {"LARK_IPV6": "off"})
    (tmp_path / "condor_config").write_text("")
    monkeypatch.setenv("CONDOR_CONFIG", str(tmp_path / "condor_config"))
    monkeypatch.setattr(settings, "CONDOR_CONFIG", str(tmp_path / "missing"))
    assert settings.htcondor_config().get("LARK_IPV6") == "off"


def test_a_setting_with_no_config_knob_asks_htcondor_nothing(monkeypatch, tmp_path):
    """(htcondor2's param takes nothing but a knob's name: asked for None, it raises.)"""
    (tmp_path / "condor_config").write_text("")
    monkeypatch.setenv("CONDOR_CONFIG", str(tmp_path / "condor_config"))
    config = settings.htcondor_config()
    assert settings.config_setting(config, "static_address") is None
    assert settings.config_setting(config, "kill_grace_s") == 5.0


def test_with_a_config_file_htcondor_answers_for_each_knob(monkeypatch, tmp_path):
    import htcondor2

    monkeypatch.setattr(htcondor2, "param", {"LARK_IPV6": "off"})
    (tmp_path / "condor_config").write_text("LARK_IPV6 = off\n")
    monkeypatch.delenv("CONDOR_CONFIG", raising=False)
    monkeypatch.setattr(settings, "CONDOR_CONFIG", str(tmp_path / "condor_config"))
    config = settings.htcondor_config()
    assert config["LARK_IPV6"] == "off"
    assert config.get("LARK_DHCP6") is None
    with pytest.raises(KeyError, match="LARK_DHCP6"):
        config["LARK_DHCP6"]
    assert (len(config), list(config)) == (0, [])  # htcondor2 cannot list them: none are
    no_ad = classad2.ClassAd()
    assert resolve_settings({}, no_ad, no_ad, config).ipv6 is IPv6Use.OFF


@pytest.fixture
def read(monkeypatch):
    """What root_htcondor_config reads once it trusts the file: a marker, not HTCondor."""
    marker = {"LARK_IPV6": "off"}
    monkeypatch.setattr(settings, "htcondor_config", lambda: marker)
    return marker


def test_wrap_drops_htcondors_environment_settings(monkeypatch, read):
    monkeypatch.setenv("CONDOR_CONFIG", "ONLY_ENV")
    for name in ("_CONDOR_LARK_IPV6", "_condor_lark_dhcp6", "X_CONDOR_KEPT"):
        monkeypatch.setenv(name, "on")
    assert settings.root_htcondor_config() == {}
    assert "_CONDOR_LARK_IPV6" not in os.environ and "_condor_lark_dhcp6" not in os.environ
    assert os.environ["X_CONDOR_KEPT"] == "on"


def test_wrap_reads_no_config_where_there_is_none(monkeypatch, tmp_path, read):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ONLY_ENV").write_text("")  # HTCondor's word, not a file here
    for path in ("ONLY_ENV", str(tmp_path / "missing"), os.devnull):
        monkeypatch.setenv("CONDOR_CONFIG", path)
        assert settings.root_htcondor_config() == {}
    monkeypatch.delenv("CONDOR_CONFIG")
    monkeypatch.setattr(settings, "CONDOR_CONFIG", str(tmp_path / "missing"))
    assert settings.root_htcondor_config() == {}


def test_wrap_refuses_a_config_file_others_than_root_could_write(monkeypatch, tmp_path, read):
    path = tmp_path / "condor_config"
    path.write_text("")
    if os.geteuid() == 0:
        os.chown(path, 65534, 65534)
    monkeypatch.setenv("CONDOR_CONFIG", str(path))
    with pytest.raises(ConfigError, match=f"^HTCondor config {path}"):
        settings.root_htcondor_config()
    link = tmp_path / "dangling"
    link.symlink_to(tmp_path / "nowhere")
    monkeypatch.setenv("CONDOR_CONFIG", str(link))
    with pytest.raises(ConfigError, match=f"^HTCondor config {link}"):
        settings.root_htcondor_config()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs a file owned by root")
def test_wrap_reads_a_root_owned_config_file(monkeypatch, tmp_path, read):
    path = tmp_path / "condor_config"
    path.write_text("")
    monkeypatch.setenv("CONDOR_CONFIG", str(path))
    assert settings.root_htcondor_config() is read
    monkeypatch.delenv("CONDOR_CONFIG")
    monkeypatch.setattr(settings, "CONDOR_CONFIG", str(path))
    assert settings.root_htcondor_config() is read


def test_a_setting_read_before_the_ads_comes_from_the_config_alone():
    config = {"LARK_AGENT_CGROUP": "/lark.slice/agents", "LarkInnerAddressIPv4": "10.0.0.5"}
    assert settings.config_setting(config, "agent_cgroup") == "/lark.slice/agents"
    assert settings.config_setting(config, "static_address") is None  # a machine attribute
    with pytest.raises(ConfigError) as info:
        settings.config_setting({"LARK_KILL_GRACE": "soon"}, "kill_grace_s")
    assert str(info.value) == 'LARK_KILL_GRACE "soon" (HTCondor config) is not a number of seconds'


def test_wraps_config_snapshot_keeps_lark_settings_and_its_log_file_only():
    config = {
        "LARK_LOG_FILE": "/var/log/lark.log",
        "LARK_IPV6": "off",
        "LarkNetworkType": '"bridge"',
        "STARTD_ATTRS": "LarkNetworkType",
    }
    assert settings.config_snapshot(config) == {
        "LARK_LOG_FILE": "/var/log/lark.log",
        "LARK_IPV6": "off",
        "LarkNetworkType": '"bridge"',
    }
