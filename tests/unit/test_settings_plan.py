"""Tables: (CLI, machine ad, job ad, config) -> Settings -> JobNetwork, or the exact error."""

from __future__ import annotations

import dataclasses
import ipaddress
import os
from pathlib import Path

import classad2
import pytest

from lark_async.backends.address import pool_size
from lark_async.decide.connpolicy import ConnectionPolicy, admin_policy, parse_rules
from lark_async.decide.modes import Dhcp6Use, IPv6Use
from lark_async.decide.plan import JobNetwork, derive_job_name
from lark_async.decide.plan import derive_plan as plan_of_grant
from lark_async.decide.policy import Grant, decide
from lark_async.decide.request import JobRequest, read_request
from lark_async.decide.settings import Settings, resolve_settings
from lark_async.errors import ConfigError, UsageError


def ad(text: str = "") -> classad2.ClassAd:
    return classad2.parseOne(text) if text else classad2.ClassAd()


def resolve(cli=None, machine: str = "", job: str = "", config=None) -> Settings:
    return resolve_settings(cli or {}, ad(machine), ad(job), config or {})


def derive_plan(settings: Settings, name: str) -> JobNetwork:
    """The plan of what the admin's settings give a job that asks for nothing."""
    return plan_of_grant(decide(settings, JobRequest()), name)


def error_of(**kwargs) -> str:
    with pytest.raises(ConfigError) as info:
        resolve(**kwargs)
    return str(info.value)


# -- settings: sources and precedence -------------------------------------------------------


def test_nothing_given_gives_the_defaults():
    settings = resolve()
    assert settings == Settings()
    assert settings.use_network_namespaces is True
    assert settings.network_type == "nat"
    assert settings.address_type is None
    assert settings.accounting is True
    assert settings.local_network == ipaddress.IPv4Network("192.168.181.0/24")
    assert settings.accounting_interval_s == 5.0
    assert settings.state_dir == Path("/run/lark/state")
    assert settings.lock_dir == Path("/run/lark/lock")


ACC = "LARK_NETWORK_ACCOUNTING"


@pytest.mark.parametrize(
    ("cli", "machine", "config", "expected"),
    [
        ({}, "", {}, True),
        ({}, "", {ACC: "false"}, False),
        ({}, "[LarkNetworkAccounting = true]", {ACC: "false"}, True),
        ({}, "[LarkNetworkAccounting = false]", {ACC: "true"}, False),
        ({"accounting": False}, "[LarkNetworkAccounting = true]", {ACC: "true"}, False),
        ({"accounting": True}, "[LarkNetworkAccounting = false]", {ACC: "false"}, True),
        ({"accounting": None}, "[LarkNetworkAccounting = false]", {ACC: "true"}, False),
        ({}, "[LarkNetworkAccounting = TARGET.Missing]", {ACC: "false"}, False),
        ({}, "[LarkNetworkAccounting = undefined]", {}, True),
    ],
)
def test_cli_beats_machine_ad_beats_config_beats_default(cli, machine, config, expected):
    assert resolve(cli, machine, config=config).accounting is expected


@pytest.mark.parametrize(
    ("cli", "machine", "expected"),
    [
        ({}, "", "nat"),
        ({}, '[LarkNetworkType = "none"]', "none"),
        ({}, '[LarkNetworkType = "NONE"]', "none"),
        ({"network_type": "nat"}, '[LarkNetworkType = "none"]', "nat"),
        ({"network_type": "Bridge"}, "", "bridge"),
    ],
)
def test_network_type_comes_from_cli_or_machine_ad(cli, machine, expected):
    assert resolve(cli, machine).network_type == expected


@pytest.mark.parametrize(
    ("cli", "config", "expected"),
    [
        ({}, {}, "192.168.181.0/24"),
        ({}, {"LARK_LOCAL_NETWORK": "10.1.0.0/16"}, "10.1.0.0/16"),
        ({}, {"LARK_LOCAL_NETWORK": " 10.9.0.0/29 "}, "10.9.0.0/29"),
        ({"local_network": "10.2.0.0/24"}, {"LARK_LOCAL_NETWORK": "10.1.0.0/16"}, "10.2.0.0/24"),
    ],
)
def test_local_network_comes_from_cli_or_config(cli, config, expected):
    assert resolve(cli, config=config).local_network == ipaddress.IPv4Network(expected)


def test_use_network_namespaces_comes_from_config():
    assert resolve(config={"USE_NETWORK_NAMESPACES": "false"}).use_network_namespaces is False
    assert resolve(
        {"use_network_namespaces": True}, config={"USE_NETWORK_NAMESPACES": "false"}
    ).use_network_namespaces


def test_state_and_lock_dirs_come_from_config():
    settings = resolve(config={"LARK_STATE_DIR": "/var/lark/s", "LARK_LOCK_DIR": "/var/lark/l"})
    assert settings.state_dir == Path("/var/lark/s")
    assert settings.lock_dir == Path("/var/lark/l")


def test_the_job_ad_is_never_a_source():
    job = (
        '[LarkNetworkType = "none"; LarkAddressType = "dhcp"; LarkNetworkAccounting = false;'
        ' USE_NETWORK_NAMESPACES = false; LARK_LOCAL_NETWORK = "10.0.0.0/8";'
        ' LarkStartupScript = "/tmp/x"]'
    )
    assert resolve(job=job) == Settings()


def test_config_knobs_in_the_machine_ad_are_ignored():
    machine = '[USE_NETWORK_NAMESPACES = false; LARK_LOCAL_NETWORK = "10.0.0.0/8"]'
    assert resolve(machine=machine) == Settings()


# -- machine-ad expressions see the job as TARGET --------------------------------------------

EXPR = '[LarkNetworkType = ifThenElse(TARGET.WantNoNet =?= true, "none", "nat")]'


@pytest.mark.parametrize(
    ("job", "expected"),
    [("[WantNoNet = true]", "none"), ("[WantNoNet = false]", "nat"), ("", "nat")],
)
def test_machine_ad_expression_is_evaluated_against_the_job_ad(job, expected):
    assert resolve(machine=EXPR, job=job).network_type == expected


def test_machine_ad_expression_can_read_its_own_attributes():
    machine = '[Kind = "none"; LarkNetworkType = MY.Kind]'
    assert resolve(machine=machine).network_type == "none"


@pytest.mark.parametrize(
    "expr", ['1/"x"', "error", 'TARGET.X + "a"', 'ifThenElse(TARGET.WantNoNet, error, "nat")']
)
def test_machine_ad_expression_evaluating_to_an_error_is_a_config_error(expr):
    assert (
        error_of(machine=f"[LarkNetworkType = {expr}]", job="[WantNoNet = true; X = 1]")
        == "LarkNetworkType (machine ad) evaluates to an error"
    )


def test_cli_value_wins_over_a_machine_ad_error():
    assert resolve({"network_type": "none"}, '[LarkNetworkType = 1/"x"]').network_type == "none"


# -- booleans --------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["true", "TRUE", "yes", "1", "on", " On ", "True"])
def test_boolean_true_spellings(text):
    assert resolve(config={ACC: text}).accounting is True


@pytest.mark.parametrize("text", ["false", "FALSE", "no", "0", "off", " Off "])
def test_boolean_false_spellings(text):
    assert resolve(config={ACC: text}).accounting is False


def test_machine_ad_integer_one_and_zero_are_booleans():
    assert resolve(machine="[LarkNetworkAccounting = 1]").accounting is True
    assert resolve(machine="[LarkNetworkAccounting = 0]").accounting is False


# -- exact error lines -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"machine": '[LarkNetworkType = "brdige"]'},
            'LarkNetworkType "brdige" (machine ad) is not one of nat, bridge, none',
        ),
        (
            {"machine": "[LarkNetworkType = 3]"},
            "LarkNetworkType 3 (machine ad) is not one of nat, bridge, none",
        ),
        (
            {"cli": {"network_type": "brdige"}},
            'network_type "brdige" (command line --network-type) is not one of nat, bridge, none',
        ),
        (
            {"machine": '[LarkAddressType = "dynamic"]'},
            'LarkAddressType "dynamic" (machine ad) is not one of local, dhcp, static',
        ),
        (
            {"config": {"USE_NETWORK_NAMESPACES": "maybe"}},
            'USE_NETWORK_NAMESPACES "maybe" (HTCondor config) is not a boolean (true or false)',
        ),
        (
            {"config": {"USE_NETWORK_NAMESPACES": ""}},
            'USE_NETWORK_NAMESPACES "" (HTCondor config) is not a boolean (true or false)',
        ),
        (
            {"machine": "[LarkNetworkAccounting = 2]"},
            "LarkNetworkAccounting 2 (machine ad) is not a boolean (true or false)",
        ),
        (
            {"cli": {"accounting": "maybe"}},
            'LARK_NETWORK_ACCOUNTING "maybe" (command line --accounting) is not a boolean'
            " (true or false)",
        ),
        (
            {"config": {"LARK_LOCAL_NETWORK": "banana"}},
            'LARK_LOCAL_NETWORK "banana" (HTCondor config) is not an IPv4 network like'
            " 192.168.181.0/24",
        ),
        (
            {"config": {"LARK_LOCAL_NETWORK": "10.0.0.1/24"}},
            'LARK_LOCAL_NETWORK "10.0.0.1/24" (HTCondor config) is not an IPv4 network like'
            " 192.168.181.0/24",
        ),
        (
            {"config": {"LARK_LOCAL_NETWORK": "2001:db8::/64"}},
            'LARK_LOCAL_NETWORK "2001:db8::/64" (HTCondor config) is not an IPv4 network like'
            " 192.168.181.0/24",
        ),
        (
            {"config": {"LARK_LOCAL_NETWORK": "10.0.0.0/30"}},
            'LARK_LOCAL_NETWORK "10.0.0.0/30" (HTCondor config) is too small: it needs a prefix'
            " of /29 or shorter",
        ),
        (
            {"config": {"LARK_LOCAL_NETWORK": "10.0.0.7"}},
            'LARK_LOCAL_NETWORK "10.0.0.7" (HTCondor config) is too small: it needs a prefix'
            " of /29 or shorter",
        ),
        (
            {"config": {"LARK_LOCAL_NETWORK": "10.0.0.0/15"}},
            'LARK_LOCAL_NETWORK "10.0.0.0/15" (HTCondor config) is too large: use a prefix'
            " of /16 (32766 jobs) or longer",
        ),
        (
            {"config": {"LARK_LOCAL_NETWORK": "10.0.0.0/8"}},
            'LARK_LOCAL_NETWORK "10.0.0.0/8" (HTCondor config) is too large: use a prefix'
            " of /16 (32766 jobs) or longer",
        ),
        (
            {"config": {"LARK_LOCAL_NETWORK": "0.0.0.0/0"}},
            'LARK_LOCAL_NETWORK "0.0.0.0/0" (HTCondor config) is too large: use a prefix'
            " of /16 (32766 jobs) or longer",
        ),
        (
            {"cli": {"local_network": "172.16.0.0/12"}},
            'LARK_LOCAL_NETWORK "172.16.0.0/12" (command line --local-network) is too large:'
            " use a prefix of /16 (32766 jobs) or longer",
        ),
        (
            {"config": {"LARK_ACCOUNTING_INTERVAL": "soon"}},
            'LARK_ACCOUNTING_INTERVAL "soon" (HTCondor config) is not a number of seconds',
        ),
        (
            {"config": {"LARK_STATE_DIR": "rel/dir"}},
            'LARK_STATE_DIR "rel/dir" (HTCondor config) is not an absolute path',
        ),
        (
            {"config": {"LARK_LOCK_DIR": "lock"}},
            'LARK_LOCK_DIR "lock" (HTCondor config) is not an absolute path',
        ),
    ],
)
def test_a_bad_value_names_setting_value_and_source(kwargs, message):
    assert error_of(**kwargs) == message


def test_error_message_is_one_line_even_for_a_multi_line_value():
    message = error_of(machine='[LarkNetworkType = "na\\nt"]')
    assert "\n" not in message
    assert message == 'LarkNetworkType "na t" (machine ad) is not one of nat, bridge, none'


@pytest.mark.parametrize("seconds", ["0.05", "1", "86400", " 2.5 "])
def test_accounting_interval_within_bounds_is_accepted(seconds):
    assert resolve(config={"LARK_ACCOUNTING_INTERVAL": seconds}).accounting_interval_s == float(
        seconds
    )


@pytest.mark.parametrize("seconds", ["0.049", "0", "-1", "86400.5", "nan", "inf"])
def test_accounting_interval_out_of_bounds_is_rejected(seconds):
    assert error_of(config={"LARK_ACCOUNTING_INTERVAL": seconds}) == (
        f'LARK_ACCOUNTING_INTERVAL "{seconds}" (HTCondor config) must be between 0.05 and'
        " 86400 seconds"
    )


def test_smallest_allowed_local_network_is_a_29():
    assert resolve(config={"LARK_LOCAL_NETWORK": "10.0.0.8/29"}).local_network.prefixlen == 29


def test_largest_allowed_local_network_is_a_16_of_32766_pairs():
    network = resolve(config={"LARK_LOCAL_NETWORK": "10.7.0.0/16"}).local_network
    assert network == ipaddress.IPv4Network("10.7.0.0/16")
    assert pool_size(network) == 32766  # the job count the error message promises


# -- plan -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "mode", "address_type", "accounting"),
    [
        (Settings(), "nat", "local", True),
        (Settings(address_type="local"), "nat", "local", True),
        (Settings(accounting=False), "nat", "local", False),
        (Settings(network_type="none"), "none", None, False),
        (Settings(network_type="none", address_type="dhcp"), "none", None, False),
        (Settings(use_network_namespaces=False), "off", None, False),
        (Settings(use_network_namespaces=False, network_type="bridge"), "off", None, False),
        (Settings(use_network_namespaces=False, address_type="static"), "off", None, False),
    ],
)
def test_settings_give_mode_address_type_and_accounting(settings, mode, address_type, accounting):
    plan = derive_plan(settings, "s1-123_0")
    assert (plan.mode, plan.address_type, plan.accounting) == (mode, address_type, accounting)


@pytest.mark.parametrize("address_type", ["dhcp", "static"])
def test_nat_with_a_non_local_address_type_is_a_config_error(address_type):
    with pytest.raises(ConfigError) as info:
        derive_plan(Settings(address_type=address_type), "x")
    assert str(info.value) == (
        f'LarkAddressType "{address_type}" is not available in NAT mode (only "local")'
    )


def test_bridge_mode_defaults_to_dhcp_on_the_lark_bridge():
    plan = derive_plan(Settings(network_type="bridge"), "x")
    assert plan.mode == "bridge" and plan.address_type == "dhcp"
    assert plan.bridge is not None and plan.bridge.name == "lark" and plan.bridge.device is None
    assert plan.bridge.static is None and plan.bridge.dhcp_timeout_s == 30


def test_bridge_settings_come_from_the_machine_ad_or_the_config():
    s = resolve(
        machine='LarkNetworkType = "bridge"\nLarkBridgeName = "br0"\n'
        'LarkAddressType = "static"\nLarkInnerAddressIPv4 = "10.77.0.60"\n'
        'LarkGateway = "10.77.0.1"',
        config={"LARK_BRIDGE_DEVICE": "eth1", "LARK_SUBNET_MASK": "255.255.255.0"},
    )
    plan = derive_plan(s, "x")
    assert plan.bridge is not None
    assert (plan.bridge.name, plan.bridge.device) == ("br0", "eth1")
    assert plan.bridge.static == ipaddress.IPv4Interface("10.77.0.60/24")
    assert str(plan.bridge.gateway) == "10.77.0.1"


def test_the_job_ad_cannot_choose_a_bridge_device_or_a_static_address():
    s = resolve(
        machine='LarkNetworkType = "bridge"',
        job='LarkBridgeDevice = "eth0"\nLarkBridgeName = "evil"\nLarkInnerAddressIPv4 = "10.0.0.1"',
    )
    plan = derive_plan(s, "x")
    assert plan.bridge is not None
    assert (plan.bridge.name, plan.bridge.device, plan.bridge.static) == ("lark", None, None)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (
            Settings(network_type="bridge", address_type="local"),
            'LarkAddressType "local" is for NAT mode; in bridge mode use "dhcp" or "static"',
        ),
        (
            Settings(network_type="bridge", address_type="static"),
            'LarkAddressType "static" needs LarkInnerAddressIPv4 in the machine ad',
        ),
        (
            Settings(
                network_type="bridge",
                address_type="static",
                static_address=ipaddress.IPv4Interface("10.0.0.5"),
            ),
            "static address 10.0.0.5 has no prefix: write it as 10.0.0.5/24 or set LarkSubnetMask",
        ),
        (
            Settings(
                network_type="bridge",
                address_type="static",
                static_address=ipaddress.IPv4Interface("10.0.0.0/24"),
            ),
            "static address 10.0.0.0/24 is not a host address of its network",
        ),
        (
            Settings(
                network_type="bridge",
                address_type="static",
                static_address=ipaddress.IPv4Interface("10.0.0.5/24"),
                gateway=ipaddress.IPv4Address("10.1.0.1"),
            ),
            "gateway 10.1.0.1 is not another host on 10.0.0.0/24",
        ),
    ],
)
def test_bad_bridge_settings_are_one_clear_error(settings, message):
    with pytest.raises(ConfigError) as info:
        derive_plan(settings, "x")
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("machine", "message"),
    [
        ('LarkBridgeName = "br0; rm -rf /"', "is not an interface name"),
        ('LarkBridgeDevice = "averyveryverylongname"', "is not an interface name"),
        ('LarkInnerAddressIPv4 = "10.0.0.300"', "is not an IPv4 address like"),
        ('LarkInnerAddressIPv4 = "127.0.0.1/8"', "is not a usable host address"),
        ('LarkSubnetMask = "255.0.255.0"', "is not a netmask"),
        ('LarkGateway = "gw"', "is not an IPv4 address"),
    ],
)
def test_malformed_bridge_settings_name_the_attribute(machine, message):
    with pytest.raises(ConfigError) as info:
        resolve(machine=machine)
    assert message in str(info.value) and machine.split(" ")[0] in str(info.value)


def test_plan_carries_the_derived_names_and_the_settings():
    settings = Settings(
        local_network=ipaddress.IPv4Network("10.5.0.0/16"),
        accounting_interval_s=0.5,
        state_dir=Path("/s"),
        lock_dir=Path("/l"),
    )
    assert derive_plan(settings, "s1-123_0") == JobNetwork(
        name="s1-123_0",
        mode="nat",
        address_type="local",
        netns="lark-s1-123_0",
        external_interface="e_s1-123_0",
        internal_interface="i_s1-123_0",
        chain="LARK_s1-123_0",
        local_network=ipaddress.IPv4Network("10.5.0.0/16"),
        accounting=True,
        accounting_interval_s=0.5,
        state_dir=Path("/s"),
        lock_dir=Path("/l"),
        ipv6="auto",
    )


def test_a_nat_job_may_have_ipv6_and_the_other_modes_have_none():
    assert derive_plan(Settings(), "x").ipv6 is IPv6Use.AUTO
    assert derive_plan(Settings(ipv6="on"), "x").ipv6 is IPv6Use.ON
    assert derive_plan(Settings(ipv6="off"), "x").ipv6 is IPv6Use.OFF
    assert derive_plan(Settings(network_type="none", ipv6="on"), "x").ipv6 is IPv6Use.OFF


def test_ipv6_pools_by_mode():
    routed = ipaddress.IPv6Network("2001:db8:7::/64")
    nat66 = derive_plan(Settings(routed_prefix6=routed), "x")
    assert nat66.network6 == ipaddress.IPv6Network("fd4c:6172:6b00::/64")
    assert derive_plan(Settings(ipv6_mode="routed", routed_prefix6=routed), "x").network6 == routed


def test_routed_ipv6_without_a_prefix_is_refused_unless_ipv6_is_off():
    with pytest.raises(ConfigError, match="LARK_ROUTED_PREFIX6"):
        derive_plan(Settings(ipv6_mode="routed"), "x")
    assert derive_plan(Settings(ipv6_mode="routed", ipv6="off"), "x").ipv6 is IPv6Use.OFF


@pytest.mark.parametrize("ipv6", ["auto", "on", "off"])
def test_the_iptables_backend_gives_ipv6_as_nftables_does(ipv6):
    """(Its ip6tables build is the driver's to look for, with the node's IPv6.)"""
    iptables = derive_plan(Settings(firewall_backend="iptables", ipv6=ipv6), "x")
    assert iptables.ipv6 is derive_plan(Settings(ipv6=ipv6), "x").ipv6 is IPv6Use(ipv6)


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ("192.168.0.0/24", "is not an IPv6 prefix"),
        ("fd00::1/64", "is not an IPv6 prefix"),  # host bits set
        ("fd00::/65", "/64 or shorter"),
        ("2001:db8::/64", "not a unique local prefix"),
        ("fe80::/64", "not a unique local prefix"),
        ("fd00::/64%eth0", "is not an IPv6 prefix"),
        ("x" * 5000, "is not an IPv6 prefix"),
    ],
)
def test_hostile_nat66_pools_are_refused(value, error):
    with pytest.raises(ConfigError, match=error):
        resolve(config={"LARK_LOCAL_NETWORK6": value})


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ("fe80::/64", "a site can route"),
        ("ff02::/64", "a site can route"),
        ("::/64", "a site can route"),
        ("2001:db8::/96", "/64 or shorter"),
    ],
)
def test_routed_prefixes_a_site_cannot_route_are_refused(value, error):
    with pytest.raises(ConfigError, match=error):
        resolve(config={"LARK_ROUTED_PREFIX6": value})


def test_ipv6_words():
    assert resolve(config={"LARK_IPV6": "ON"}).ipv6 is IPv6Use.ON
    assert resolve(config={"LARK_ROUTED_PREFIX6": "none"}).routed_prefix6 is None
    with pytest.raises(ConfigError, match="LARK_IPV6"):
        resolve(config={"LARK_IPV6": "yes please"})


def test_dhcp6_words_and_a_job_cannot_choose_them():
    assert resolve(config={"LARK_DHCP6": "On"}).dhcp6 is Dhcp6Use.ON
    assert resolve(cli={"dhcp6": "off"}, config={"LARK_DHCP6": "on"}).dhcp6 is Dhcp6Use.OFF
    for hostile in ("yes please", "on\noff", "", "a" * 10000):
        with pytest.raises(ConfigError, match="LARK_DHCP6"):
            resolve(config={"LARK_DHCP6": hostile})
    # a job's ad naming the setting is no source (the default stays)
    assert resolve(job='[LarkDHCP6 = "off"; LARK_DHCP6 = "off"]').dhcp6 is Dhcp6Use.AUTO
    settings = resolve(cli={"network_type": "bridge"}, config={"LARK_DHCP6": "on"})
    bridge = derive_plan(settings, "x").bridge
    assert bridge is not None and bridge.dhcp6 is Dhcp6Use.ON


def test_plan_is_frozen():
    plan = derive_plan(Settings(), "x")
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.mode = "none"  # type: ignore[misc]


def test_settings_to_plan_end_to_end_with_a_job_dependent_machine_ad():
    settings = resolve(machine=EXPR, job="[WantNoNet = true]")
    plan = derive_plan(settings, "j")
    assert (plan.mode, plan.address_type, plan.accounting) == ("none", None, False)


# -- job name ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("explicit", "job", "machine", "expected"),
    [
        ("myjob", "[ClusterId = 1; ProcId = 0]", '[Name = "slot1@n"]', "myjob"),
        (None, "[ClusterId = 123; ProcId = 0]", '[Name = "slot1_2@node"]', "s1_2-123_0"),
        (None, "[ClusterId = 123; ProcId = 4]", "", "123_4"),
        (None, "", '[Name = "slot7@node"]', "s7"),
        (None, "", "", "p4242"),
        (None, "[ClusterId = 5]", "", "p4242"),
        (None, "[ClusterId = -1; ProcId = 0]", "", "p4242"),
        (None, '[ClusterId = "5"; ProcId = 0]', "", "p4242"),
        (None, "[ClusterId = 5; ProcId = 1.5]", "", "p4242"),
        (None, "", "[Name = 5]", "p4242"),
        (None, "", '[Name = strcat("slot", "3")]', "s3"),
        (None, "[ClusterId = true; ProcId = 0]", "", "p4242"),
        (None, "[ClusterId = 5; ProcId = false]", "", "p4242"),
        (None, "[ClusterId = true; ProcId = true]", '[Name = "slot2@n"]', "s2"),
        (None, "[ClusterId = 2 + 3; ProcId = 0]", "", "5_0"),
        (None, "", '[Name = "@node"]', "p4242"),
    ],
)
def test_job_name_from_explicit_name_or_ads(explicit, job, machine, expected):
    assert derive_job_name(explicit, read_request(ad(job)), ad(machine), 4242) == expected


@pytest.mark.parametrize("explicit", ["../x", "", "a" * 14])
def test_explicit_job_name_is_validated(explicit):
    with pytest.raises(UsageError) as info:
        derive_job_name(
            explicit, read_request(ad("[ClusterId = 1; ProcId = 0]")), ad('[Name = "slot1@n"]'), 1
        )
    assert str(info.value).startswith(f"job name {explicit!r} must be 1-13 characters")


def test_long_slot_and_job_id_give_a_hashed_13_character_name():
    name = derive_job_name(
        None,
        read_request(ad("[ClusterId = 1234567; ProcId = 12]")),
        ad('[Name = "slot1_2@node"]'),
        1,
    )
    assert len(name) == 13
    assert name.startswith("h")


@pytest.mark.parametrize(
    "job", ["[ClusterId = 123; ProcId = 0]", "[ClusterId = 1234567; ProcId = 0]"]
)
def test_two_slots_running_the_same_job_id_get_two_names(job):
    """The name is the slot's and the job's: slot1_1 and slot1_2 of one node (or the same
    job run again in another slot while the first run's agent still cleans up) never share
    a namespace, a veth or a chain, whether the name is readable or hashed."""
    request = read_request(ad(job))
    one = derive_job_name(None, request, ad('[Name = "slot1_1@node"]'), 1)
    two = derive_job_name(None, request, ad('[Name = "slot1_2@node"]'), 1)
    assert one != two and len(one) <= 13 and len(two) <= 13


def test_the_connection_policy_comes_from_config_or_machine_ad_and_makes_the_plans_queue():
    config = {
        "LARK_CONNECTION_POLICY": "allow tcp 10.1.0.0/16:443,\n deny any 0.0.0.0/0",
        "LARK_AUDIT_DIR": "/srv/audit",
    }
    s = resolve(config=config)
    assert [r.text for r in s.connection_rules] == [
        "allow tcp 10.1.0.0/16:443",
        "deny any 0.0.0.0/0",
    ]
    plan = derive_plan(s, "j1")
    assert plan.connections is not None and plan.audit_dir == Path("/srv/audit")
    assert not plan.connections.default_allow
    machine = 'LarkConnectionPolicy = "deny udp 0.0.0.0/0:53"\nLarkConnectionDefault = "allow"\n'
    s = resolve(machine=machine, config=config)
    assert [r.text for r in s.connection_rules] == ["deny udp 0.0.0.0/0:53"]
    assert derive_plan(s, "j1").connections.default_allow
    assert derive_plan(resolve(), "j1").connections is None  # no policy: no queue
    none_mode = resolve(cli={"network_type": "none"}, config=config)
    assert derive_plan(none_mode, "j1").connections is None  # loopback only: nothing to guard
    with pytest.raises(ConfigError, match=r"LARK_CONNECTION_POLICY .* \(HTCondor config\) entry 1"):
        resolve(config={"LARK_CONNECTION_POLICY": "permit tcp 10.0.0.1"})


def test_wrap_takes_machine_attributes_from_the_config():
    from lark_async.decide.settings import config_machine_ad

    config = {
        "LarkNetworkType": 'ifThenElse(TARGET.Inbound =?= true, "bridge", "nat")',
        "LarkStartupScript": '"/usr/local/libexec/lark/create"',
        "NOT_A_MACHINE_ATTRIBUTE": '"x"',
        "LARK_ALLOWED_NETWORK_TYPES": "nat, bridge",
    }
    admin = config_machine_ad(config)
    assert sorted(admin.keys()) == ["LarkNetworkType", "LarkStartupScript"]
    resolved = resolve_settings({}, admin, ad("[Inbound = true]"), config, "HTCondor config")
    assert resolved.network_type == "bridge"
    assert resolved.create_script == "/usr/local/libexec/lark/create"
    with pytest.raises(ConfigError) as info:
        resolve_settings({}, config_machine_ad({"LarkNetworkType": '"brdige"'}), ad("[]"), {},
                         "HTCondor config")  # fmt: skip
    assert str(info.value) == (
        'LarkNetworkType "brdige" (HTCondor config) is not one of nat, bridge, none'
    )
    with pytest.raises(ConfigError, match=r"^LarkNetworkType \"\(\(\(\" \(HTCondor config\) "):
        config_machine_ad({"LarkNetworkType": "((("})
    with pytest.raises(ConfigError, match="is not a ClassAd expression"):
        config_machine_ad({"LarkNetworkType": "+".join(["1"] * 2000)})


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, None), ("3", 3), ("65536", 65536)],
)
def test_max_jobs_per_user(value, expected):
    config = {} if value is None else {"LARK_MAX_JOBS_PER_USER": value}
    resolved = resolve_settings({}, ad("[]"), ad("[]"), config)
    assert resolved.max_jobs_per_user == expected
    assert resolved.jobs_per_user == (expected or os.cpu_count())


@pytest.mark.parametrize("value", ["0", "-1", "two", "1.5", "65537"])
def test_max_jobs_per_user_must_be_a_sane_count(value):
    with pytest.raises(ConfigError, match=f'^LARK_MAX_JOBS_PER_USER "{value}" '):
        resolve_settings({}, ad("[]"), ad("[]"), {"LARK_MAX_JOBS_PER_USER": value})


@pytest.mark.parametrize(
    ("text", "size"), [("4096", 4096), ("16M", 16 << 20), (" 8k ", 8192), ("1GB", 1 << 30)]
)
def test_the_audit_log_cap_is_a_size_in_bytes(text, size):
    s = resolve(config={"LARK_AUDIT_MAX_BYTES": text})
    assert s.audit_max_bytes == size and derive_plan(s, "j1").audit_max_bytes == size
    assert resolve().audit_max_bytes == 16 << 20


@pytest.mark.parametrize(
    ("text", "why"),
    [("4095", "must be between 4096"), ("1.5M", "is not a size"), ("-1", "is not a size")],
)
def test_a_bad_audit_log_cap_is_one_line(text, why):
    assert error_of(config={"LARK_AUDIT_MAX_BYTES": text}).startswith(
        f'LARK_AUDIT_MAX_BYTES "{text}" (HTCondor config) {why}'
    )


@pytest.mark.parametrize(
    ("source", "mode", "planned"),
    [
        ({"config": {"LARK_JOB_MTU": "1400"}}, "nat", 1400),
        ({"cli": {"job_mtu": "9000"}, "config": {"LARK_JOB_MTU": "1400"}}, "nat", 9000),
        ({"config": {"LARK_JOB_MTU": "1400"}}, "bridge", None),  # a LAN has one frame size
        ({}, "nat", None),
    ],
)
def test_the_job_mtu_cap_is_for_nat_jobs(source, mode, planned):
    s = dataclasses.replace(resolve(**source), network_type=mode)
    assert derive_plan(s, "j1").job_mtu == planned


@pytest.mark.parametrize("value", ["1279", "65536", "jumbo", "1500.5"])
def test_a_bad_job_mtu_is_one_line(value):
    assert error_of(config={"LARK_JOB_MTU": value}) in (
        f'LARK_JOB_MTU "{value}" (HTCondor config) must be between 1280 and 65535',
        f'LARK_JOB_MTU "{value}" (HTCondor config) is not a whole number',
    )


def test_the_plan_takes_the_granted_connection_policy_as_it_is():
    # what policy.decide granted, not something the plan builds again from the settings:
    # neither the admin's unnarrowed policy nor, without one, no queue at all
    admin = Settings(connection_rules=parse_rules("allow tcp 10.0.0.0/8:443"))
    given = admin_policy(admin.connection_rules, "deny").narrowed(
        parse_rules("tcp 10.0.0.5:443", job=True)
    )
    assert plan_of_grant(Grant(admin, given), "j1").connections is given
    open_ = ConnectionPolicy((), True, parse_rules("udp 10.0.0.53:53", job=True))
    assert plan_of_grant(Grant(Settings(), open_), "j1").connections is open_
    assert plan_of_grant(Grant(admin, None), "j1").connections is None
    # a mode with no queue drops it (a policy script may have chosen that mode)
    none_mode = Settings(network_type="none")
    assert plan_of_grant(Grant(none_mode, given), "j1").connections is None


def test_a_jobs_allow_list_reaches_the_plans_queue():
    s = resolve(config={"LARK_CONNECTION_POLICY": "allow tcp 10.0.0.0/8:443"})
    job_ad = ad('[LarkAllowedConnections = "tcp 10.0.0.5:443"]')
    plan = plan_of_grant(decide(s, read_request(job_ad)), "j1")
    assert plan.connections is not None
    assert [r.text for r in plan.connections.job_rules or ()] == ["tcp 10.0.0.5:443"]
