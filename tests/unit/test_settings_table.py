"""The settings table (``Settings``) is the one declaration: flags, sources and README follow it."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import subprocess
import sys
from pathlib import Path

import pytest

from lark_async import cli
from lark_async.decide import settings
from lark_async.decide.settings import KNOBS, Settings, flag_values
from lark_async.errors import UsageError

README = Path(__file__).resolve().parents[2] / "README.rst"
BEGIN = "   fails when they differ.\n\n"
END = "\n.. End of the generated entries.\n"
SETTINGS_VERBS = ("run", "startd-attrs", "netns-test")  # the verbs that take the flags


def readme_reference() -> str:
    text = README.read_text()
    start = text.index(BEGIN, text.index("Configuration reference\n")) + len(BEGIN)
    return text[start : text.index(END, start)]


def parse(*argv: str):
    return cli.build_parser().parse_args(list(argv))


def help_of(verb: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        parse(verb, "--help")
    return "".join(out.getvalue().split())  # argparse wraps lines, also at hyphens


def test_the_readme_reference_is_the_tables_rendering():
    assert readme_reference() == settings.reference(), (
        "README.rst's configuration reference differs from lark_async/decide/settings.py: "
        "paste the output of `python -m lark_async.decide.settings --reference` between its markers"
    )


def test_every_settings_field_is_a_setting():
    names = [f.name for f in dataclasses.fields(Settings)]
    assert [k.field for k in KNOBS] == names
    assert all(getattr(Settings(), k.field) == k.default for k in KNOBS)


def test_every_setting_has_a_source_a_text_and_unique_names():
    for knob in KNOBS:
        assert knob.config or knob.machine, knob.field  # a flag alone is no admin setting
        assert knob.doc.strip(), knob.field
        assert (knob.flag is None) == (knob.help is None), knob.field
        assert knob.flag is None or knob.flag.startswith("--"), knob.field
    for names in (
        [k.config for k in KNOBS if k.config],
        [k.machine for k in KNOBS if k.machine],
        [k.flag for k in KNOBS if k.flag],
    ):
        assert len(names) == len(set(names))


@pytest.mark.parametrize("verb", SETTINGS_VERBS)
def test_each_flag_is_explained_in_help(verb):
    text = help_of(verb)
    for knob in KNOBS:
        if knob.flag:
            choices = "{" + ",".join(knob.choices) + "}" if knob.choices else ""
            shown = knob.metavar or choices
            assert "".join([knob.flag, shown, *knob.flag_help().split()]) in text
    assert "--no-accountingLARK_NETWORK_ACCOUNTINGoff" in text


@pytest.mark.slow
@pytest.mark.parametrize("verb", SETTINGS_VERBS)
def test_each_flag_lands_in_its_field_as_given(verb):
    """Values stay text: resolve_settings parses them, naming the flag when one is bad."""
    required = ["--target", "http://x"] if verb == "netns-test" else []
    for knob in KNOBS:
        if knob.flag is None:
            continue
        if knob.switch:
            assert flag_values(parse(verb, *required, knob.flag))[knob.field] is True
            no = f"--no-{knob.flag[2:]}"
            assert flag_values(parse(verb, *required, no))[knob.field] is False
            continue
        value = knob.choices[-1] if knob.choices else "some text"
        given = flag_values(parse(verb, *required, knob.flag, value))
        assert given == {k.field: value if k is knob else None for k in KNOBS if k.flag}


@pytest.mark.parametrize("knob", [k for k in KNOBS if k.choices], ids=lambda k: k.field)
def test_a_choice_flag_takes_only_its_choices(knob):
    for value in knob.choices:
        assert flag_values(parse("run", knob.flag, value, "--", "x"))[knob.field] == value
    for value in (knob.choices[0].upper(), "", "x\0y", knob.choices[0] + " "):
        with pytest.raises(UsageError, match="invalid choice"):
            parse("run", knob.flag, value, "--", "x")


def test_flags_beat_the_machine_ad_and_the_config():
    import classad2

    args = parse("run", "--network-type", "none", "--local-network", "10.2.0.0/24", "--", "x")
    machine = classad2.parseOne('[LarkNetworkType = "bridge"]')
    config = {"LARK_LOCAL_NETWORK": "10.1.0.0/16", "LARK_STATE_DIR": "/s"}
    resolved = settings.resolve_settings(flag_values(args), machine, classad2.ClassAd(), config)
    assert (resolved.network_type, str(resolved.local_network)) == ("none", "10.2.0.0/24")
    assert resolved.state_dir == Path("/s")


def test_wrap_takes_no_setting_flags():
    """wrap's caller is any local user: its settings come from the HTCondor config alone."""
    with pytest.raises(UsageError, match="unrecognized arguments: --network-type"):
        parse("wrap", "--network-type", "bridge", "--", "x")
    args = parse("wrap", "--", "x")
    assert set(flag_values(args).values()) == {None}


def test_dump_firewall_takes_the_iptables_builds_of_the_setting():
    (iptables,) = [k for k in KNOBS if k.field == "iptables_command"]
    for build in iptables.choices or ():
        assert parse("dump-firewall", "--iptables", build).iptables_command == build
    assert parse("dump-firewall").iptables_command == "iptables"
    with pytest.raises(UsageError, match="invalid choice"):
        parse("dump-firewall", "--iptables", "ip6tables")


def test_other_verbs_do_not_load_the_settings_table():
    """dhcp-test's start-up is measured against other clients'; the table costs milliseconds."""
    code = (
        "import sys; from lark_async import cli; "
        "cli.build_parser().parse_args(['dhcp-test', '--interface', 'x']); "
        "print('lark_async.decide.settings' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout == "False\n"


def test_the_reference_keeps_literals_and_links_on_one_line():
    for line in settings.reference().splitlines():
        assert line.count("``") % 2 == 0, line
        assert line.count("`_") <= line.count("`") // 2, line


def test_the_reference_command_line():
    out = subprocess.run(
        [sys.executable, "-m", "lark_async.decide.settings", "--reference"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout == settings.reference()
    bad = subprocess.run(
        [sys.executable, "-m", "lark_async.decide.settings", "--write"],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2
    assert bad.stderr == "usage: python -m lark_async.decide.settings --reference\n"
