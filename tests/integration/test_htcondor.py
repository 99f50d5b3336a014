"""What HTCondor sees of Lark: STARTD_CRON attributes, the starter's files and variables."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from pathlib import Path

import classad2
import pytest
from helpers.agent import NOBODY, python_job
from helpers.chirp import COOKIE as CHIRP_COOKIE
from helpers.chirp import job_scratch, start_fake_starter
from helpers.dns import needs_own_root
from helpers.scripts import recorder
from helpers.wrap import JOB, starter, wrap
from sandbox import SITE_ADDR, wait_for

from lark_async.backends import cgroup, placement
from lark_async.backends.usable import AGENT_PATH

CONTRIB = Path(__file__).resolve().parents[2] / "contrib" / "htcondor"


def startd_attrs(sandbox, host, *flags: str, before: tuple[str, ...] = ()) -> dict:
    """The attributes ``startd-attrs`` prints, run in ``host``'s network namespace (under
    ``before``, e.g. ``setpriv --no-new-privs``)."""
    lock = ("--lock-dir", str(sandbox.lock_dir))
    argv = sandbox.agent_argv(host, *lock, *flags, verb="startd-attrs")
    r = subprocess.run([*before, *argv], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return dict(classad2.parseOne(r.stdout, classad2.ParserType.Old).items())


def with_sudo_rule(
    sandbox, rule: str | None, agent: bool = True, read_only: Path | None = None
) -> tuple[str, ...]:
    """A private mount namespace where /etc/sudoers.d holds only ``rule`` (as ``50-lark``,
    mode 0440, root's), /usr/local/sbin only the agent's link (``sudo -l COMMAND`` says
    "command not found" without it) and the mount at ``read_only`` is read-only: the
    machine's own are never touched, and the mounts go with the namespace's last process."""
    needs_own_root()
    sudoers, sbin = sandbox.tmp / "sudoers.d", sandbox.tmp / "sbin"
    sudoers.mkdir(mode=0o755)
    sbin.mkdir(mode=0o755)
    if rule is not None:
        (sudoers / "50-lark").write_text(rule)
        (sudoers / "50-lark").chmod(0o440)
    if agent:
        (sbin / Path(AGENT_PATH).name).write_text("#!/bin/sh\nexit 99\n")  # never run
        (sbin / Path(AGENT_PATH).name).chmod(0o755)
    binds = 'mount --bind "$1" /etc/sudoers.d && mount --bind "$2" "$3" && shift 3 && '
    if read_only is not None:
        binds += f"mount -o remount,bind,ro {shlex.quote(str(read_only))} && "
    sh_argv = ("sh", "-c", binds + 'exec "$@"', "sh", str(sudoers), str(sbin))
    sh_argv += (str(Path(AGENT_PATH).parent),)
    return ("unshare", "--mount", "--propagation", "private", *sh_argv)


def test_startd_attrs_say_what_the_node_offers(sandbox, host):
    attrs = startd_attrs(sandbox, host)
    assert attrs["HasLark"] is True and attrs["LarkNetworkTypes"] == "nat,none"
    assert attrs["LarkLocalAddressesFree"] == 126 and attrs["LarkBridgeAvailable"] is False
    assert attrs["LarkDefaultNetworkType"] == "nat" and attrs["LarkFirewallBackend"] == "nftables"
    assert isinstance(attrs["LarkUsable"], bool)
    assert attrs["LarkUsable"] is ("LarkUnusableReason" not in attrs)
    offered = startd_attrs(
        sandbox, host, "--allowed-network-types", "nat,bridge,none", "--bridge-device", "uplink"
    )
    assert offered["LarkNetworkTypes"] == "nat,bridge,none" and offered["LarkBridgeAvailable"]
    agent = sandbox.start_agent(host, *sandbox.who(), "--", "sleep", "30")
    try:
        for _ in range(200):
            if startd_attrs(sandbox, host)["LarkLocalAddressesFree"] == 125:
                break
        else:
            raise AssertionError("a running job's address is not counted as taken")
    finally:
        agent.terminate()
        agent.communicate(timeout=30)


def test_with_no_new_privs_the_node_says_it_cannot_run_lark_jobs(sandbox, host):
    attrs = startd_attrs(sandbox, host, before=("setpriv", "--no-new-privs"))
    assert attrs["LarkUsable"] is False and attrs["HasLark"] is True
    assert "no_new_privs" in attrs["LarkUnusableReason"]
    assert "DISABLE_SETUID" in attrs["LarkUnusableReason"]


def test_startd_attrs_as_the_condor_user_leave_out_what_only_root_may_read(sandbox, host):
    """STARTD_CRON runs as HTCondor's user: the address locks (root's, mode 0700) are
    unreadable to it, and the rest is still published. Played by root without the
    capabilities that read past file modes, on a lock dir of another user's (the checkout,
    and so the agent, may be where the job user cannot read, such as /root)."""
    locks = sandbox.tmp / "others-locks"
    locks.mkdir(mode=0o700)
    (locks / "addr-192.168.181.2.lock").touch()
    os.chown(locks, NOBODY, NOBODY)
    argv = sandbox.agent_argv(host, "--lock-dir", str(locks), verb="startd-attrs")
    drop = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]
    try:
        r = subprocess.run([*argv[:2], *drop, *argv[2:]], capture_output=True, text=True)
    finally:
        shutil.rmtree(locks)
    assert r.returncode == 0, r.stderr
    attrs = dict(classad2.parseOne(r.stdout, classad2.ParserType.Old).items())
    assert attrs["HasLark"] is True and "LarkUsable" in attrs
    assert "LarkLocalAddressesFree" not in attrs


def test_with_the_shipped_sudo_rule_the_node_can_run_lark_jobs(sandbox, host):
    rule = (CONTRIB / "50-lark.sudoers").read_text()
    attrs = startd_attrs(sandbox, host, before=with_sudo_rule(sandbox, rule))
    assert attrs["LarkUsable"] is True and "LarkUnusableReason" not in attrs


def test_with_a_read_only_cgroup_the_node_says_it_cannot_run_lark_jobs(sandbox, host):
    mounts = cgroup.parse_v2_mounts(Path("/proc/self/mountinfo").read_text())
    own = placement.parse_memberships(Path("/proc/self/cgroup").read_text()).get(frozenset())
    mount = cgroup.derive_mount(mounts, own) if own else None
    if mount is None:
        pytest.skip("no cgroup v2 mount shows this process's cgroup here")
    rule = (CONTRIB / "50-lark.sudoers").read_text()
    attrs = startd_attrs(sandbox, host, before=with_sudo_rule(sandbox, rule, read_only=mount.point))
    assert attrs["LarkUsable"] is False
    assert attrs["LarkUnusableReason"] == f"cgroup v2 at {mount.point} is mounted read-only"
    after = cgroup.parse_v2_mounts(Path("/proc/self/mountinfo").read_text())
    assert mount in after and not mount.read_only  # the machine's mount is as it was


@pytest.mark.parametrize(
    ("rule", "agent", "why"),
    [
        (None, True, ""),  # no rule at all
        ("ALL ALL=(root) NOPASSWD: /usr/local/sbin/lark-agent cleanup *\n", True, ""),
        ("ALL ALL=(nobody) NOPASSWD: /usr/local/sbin/lark-agent wrap *\n", True, ""),
        ("ALL ALL=(root) NOPASSWD: /usr/local/bin/lark-agent wrap *\n", True, ""),
        ("root ALL=(root) NOPASSWD: /usr/local/sbin/lark-agent wrap *\n", True, ""),
        ((CONTRIB / "50-lark.sudoers").read_text(), False, "command not found"),
    ],
    ids=["absent", "other-verb", "runas-nobody", "other-path", "root-only", "no-agent-link"],
)
def test_without_a_sudo_rule_for_wrap_the_node_says_it_cannot_run_lark_jobs(
    sandbox, host, rule, agent, why
):
    attrs = startd_attrs(sandbox, host, before=with_sudo_rule(sandbox, rule, agent))
    assert attrs["LarkUsable"] is False
    reason = attrs["LarkUnusableReason"]
    assert reason.startswith(f"sudo does not let users run {AGENT_PATH} wrap") and why in reason
    assert ";" not in reason  # the only failed check


def test_the_job_wrapper_path_runs_the_job_as_its_user_with_root_owned_settings(sandbox, host):
    evil = recorder(sandbox, "evil")
    scratch, env = starter(
        sandbox,
        {
            ".job.ad": "ClusterId = 7\nProcId = 0\n",
            # written by the starter as the job user: not a source of settings
            ".machine.ad": f'LarkStartupScript = "{evil}"\nLarkNetworkType = "none"\n',
        },
    )
    r = wrap(sandbox, host, env, *python_job(JOB, SITE_ADDR), cwd=scratch)
    assert r.returncode == 0, r.stderr
    assert not r.stderr, r.stderr
    uid, foo, cwd, address = r.stdout.strip().split("|")
    assert (int(uid), foo, cwd) == (NOBODY, "bar baz", str(scratch))
    assert address.strip().startswith("192.168.181.")  # NAT: the machine ad did not say none
    update = scratch / ".lark.update.ad"
    assert update.stat().st_uid == NOBODY  # written as the job user
    ad = dict(classad2.parseOne(update.read_text(), classad2.ParserType.Old).items())
    assert ad["LarkNetworkType"] == "nat" and ad["NetworkIncoming"] > 0
    assert not list(sandbox.tmp.glob("evil.*"))


def test_the_wrapper_path_reads_and_writes_as_the_job_user_only(sandbox, host):
    _, env = starter(sandbox, {})
    secret = sandbox.tmp / "root-only.ad"
    secret.write_text("Secret = 1\n")
    secret.chmod(0o600)
    env["_CONDOR_JOB_AD"] = str(secret)
    r = wrap(sandbox, host, env, "true")
    assert r.returncode == 125
    assert r.stderr == f"lark-agent: error: job ad {secret}: Permission denied\n"
    error_file = env["_CONDOR_WRAPPER_ERROR_FILE"]
    assert "Permission denied" in Path(error_file).read_text()
    assert os.stat(error_file).st_uid == NOBODY
    env["_CONDOR_WRAPPER_ERROR_FILE"] = str(sandbox.tmp / "root-owned-dir" / "err")
    (sandbox.tmp / "root-owned-dir").mkdir(mode=0o755)
    r = wrap(sandbox, host, env, "true")
    assert r.returncode == 125 and not (sandbox.tmp / "root-owned-dir" / "err").exists()


def test_wrap_outside_sudo_and_the_shipped_files(sandbox, host):
    r = sandbox.run_agent(host, "--", "true", verb="wrap")
    assert r.returncode == 2
    assert "wrap is run through sudo by contrib/htcondor/lark-job-wrapper" in r.stderr
    sudoers = Path(__file__).resolve().parents[2] / "contrib" / "htcondor" / "50-lark.sudoers"
    if shutil.which("visudo"):
        check = subprocess.run(["visudo", "-cf", str(sudoers)], capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr


def chirp_pushes(record: Path) -> list[dict[str, str]]:
    """What the fake starter was told, one dict per connection's attributes."""
    pushes: list[dict[str, str]] = []
    for line in record.read_text().splitlines():
        if line == "connect":
            pushes.append({})
        elif line.startswith("attr ") and pushes:
            name, value = line.removeprefix("attr ").split(" = ", 1)
            pushes[-1][name] = value
    return pushes


def test_with_an_io_proxy_the_attributes_go_to_the_job_ad_by_chirp(sandbox, host):
    """A stand-in for the starter's chirp server (the protocol htcondor2.htchirp speaks). The
    job downloads and waits for the test: the download reaches the job ad while the job
    runs (two pushes in a row show the same count: nothing more is coming), and the last
    push is the final update ad's."""
    port, record = start_fake_starter(sandbox, host)
    scratch = job_scratch(sandbox, f"127.0.0.1 {port} {CHIRP_COOKIE}\n")
    agent = sandbox.start_agent(
        host,
        *sandbox.who(),
        "--accounting-interval",
        "0.2",
        "--",
        *python_job(
            "import sys, urllib.request; urllib.request.urlopen(sys.argv[1]).read(); "
            "sys.stdin.readline()",
            sandbox.url("1m"),
        ),
        env={"_CONDOR_SCRATCH_DIR": str(scratch)},
        stdin=subprocess.PIPE,
    )

    def settled() -> bool:
        counts = [p.get("NetworkIncoming") for p in chirp_pushes(record)[-2:]]
        return len(counts) == 2 and counts[0] == counts[1] and int(counts[0] or 0) > 1_000_000

    try:
        assert wait_for(settled, 20), f"no push of the download while it ran: {record.read_text()}"
        assert agent.poll() is None
    finally:
        if agent.poll() is None:
            sandbox.release(agent)
        _, err = agent.communicate(timeout=30)
    assert agent.returncode == 0, err
    text = (scratch / ".lark.update.ad").read_text()
    final = dict(classad2.parseOne(text, classad2.ParserType.Old).items())
    pushed = {name: value for push in chirp_pushes(record) for name, value in push.items()}
    assert int(pushed["NetworkIncoming"]) == final["NetworkIncoming"] > 1_000_000
    assert "NetworkOutgoing" in pushed and "AverageBandwidthUsageIncoming" in pushed
    assert not any(name.startswith("Lark") for name in pushed)
