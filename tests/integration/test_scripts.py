"""Admin callout scripts: arguments, stdin, failures, timeouts, counted rules, examples."""

from __future__ import annotations

import contextlib
import os
import signal
import stat
from pathlib import Path

from helpers.agent import python_job, read_update_ad, run_fetch
from helpers.scripts import calls, contrib_script, recorder, script
from sandbox import FILE_SIZES, SITE_ADDR, wait_for


def ads(sandbox) -> tuple[Path, Path]:
    job, machine = sandbox.tmp / "job.ad", sandbox.tmp / "machine.ad"
    job.write_text('ClusterId = 42\nProcId = 0\nOwner = "alice"\n')
    machine.write_text('Name = "slot1@node"\nLarkStartupScript = undefined\n')
    return job, machine


def test_scripts_get_the_original_arguments_and_the_ads_on_stdin(sandbox, host):
    create, delete = recorder(sandbox, "create"), recorder(sandbox, "delete")
    job_ad, machine_ad = ads(sandbox)
    update = sandbox.tmp / "update.ad"
    name = sandbox.job_name()
    r = sandbox.run_agent(
        host,
        *sandbox.who(),
        "--job-ad",
        str(job_ad),
        "--machine-ad",
        str(machine_ad),
        "--update-ad",
        str(update),
        "--create-script",
        str(create),
        "--delete-script",
        str(delete),
        "--",
        "true",
    )
    assert r.returncode == 0, r.stderr
    ad = read_update_ad(update)
    ext, inner = ad["LarkExternalAddressIPv4"], ad["LarkInnerAddressIPv4"]
    [(args, stdin)] = calls(sandbox, "create")
    assert args == [ext, inner, f"LARK_{name}", f"e_{name}"]
    job_part, machine_part = stdin.split("------\n")
    assert "ClusterId = 42" in job_part and 'Owner = "alice"' in job_part
    assert 'Name = "slot1@node"' in machine_part
    [(args, stdin_d)] = calls(sandbox, "delete")
    assert args == [f"LARK_{name}", f"e_{name}", inner]
    assert stdin_d == stdin
    log = sandbox.log_file.read_text()
    assert "create script" in log and "succeeded" in log


def test_a_failing_create_script_stops_the_job_and_cleans_up(sandbox, host):
    create = script(
        sandbox, "create", "#!/bin/sh\necho 'no route to the licence server' >&2\nexit 3\n"
    )
    delete = recorder(sandbox, "delete")
    marker = sandbox.tmp / "job-ran"
    err_file = sandbox.tmp / "wrapper.err"
    r = sandbox.run_agent(
        host,
        *sandbox.who(),
        "--create-script",
        str(create),
        "--delete-script",
        str(delete),
        "--",
        "/bin/touch",
        str(marker),
        env={"_CONDOR_WRAPPER_ERROR_FILE": str(err_file)},
    )
    assert r.returncode == 125
    message = f"create script {create} failed (exit 3): no route to the licence server"
    assert r.stderr.strip() == f"lark-agent: error: {message}"
    assert err_file.read_text().strip() == f"lark-agent: {message}"
    assert not marker.exists()
    assert len(calls(sandbox, "delete")) == 1  # delete runs even though create failed
    assert "stderr: no route to the licence server" in sandbox.log_file.read_text()


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting for its parent's reaping has died)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return fields.rsplit(")", 1)[1].split()[0] != "Z"


def test_a_script_that_hangs_is_killed_at_the_timeout(sandbox, host):
    """The script and both of its children (which hold none of its pipes, so only a kill of
    the whole process group ends them) are gone when the agent has given up on it."""
    pids = sandbox.tmp / "pids"
    create = script(
        sandbox,
        "create",
        f"#!/bin/sh\necho $$ > {pids}\n"
        + f"sleep 30 >/dev/null 2>&1 </dev/null &\necho $! >> {pids}\n" * 2
        + "wait\n",
    )
    r = sandbox.run_agent(
        host, *sandbox.who(), "--create-script", str(create), "--script-timeout", "1", "--", "true"
    )
    started = [int(pid) for pid in pids.read_text().split()]
    try:
        assert r.returncode == 125
        assert r.stderr.strip() == (
            f"lark-agent: error: create script {create} did not finish within 1 s and was killed"
        )
        assert len(started) == 3  # the script, then its two children
        if not wait_for(lambda: not any(alive(pid) for pid in started), 2):
            raise AssertionError(f"still running: {[pid for pid in started if alive(pid)]}")
    finally:
        for pid in started:  # (what a failure left: the test's own sleeps)
            with contextlib.suppress(ProcessLookupError, FileNotFoundError):
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                if alive(pid) and (b"sleep" in cmdline or bytes(create) in cmdline):
                    os.kill(pid, signal.SIGKILL)


def test_a_script_that_is_not_root_only_is_refused_before_anything_exists(sandbox, host):
    create = recorder(sandbox, "create")
    create.chmod(0o777)
    r = sandbox.run_agent(host, *sandbox.who(), "--create-script", str(create), "--", "true")
    assert r.returncode == 125
    assert r.stderr.strip() == (
        f"lark-agent: error: create script {create} is writable by others than root"
    )
    create.chmod(0o755)  # root's own file, but in a directory others may write: swappable
    shared = sandbox.tmp / "shared"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)
    link = shared / "create"
    link.symlink_to(create)
    r = sandbox.run_agent(host, *sandbox.who(), "--create-script", str(link), "--", "true")
    assert r.stderr.strip() == (  # the link is resolved; its directory is what is checked
        f"lark-agent: error: create script {link}: directory {shared} is writable by others "
        "than root"
    )
    r = sandbox.run_agent(
        host, *sandbox.who(), "--create-script", str(sandbox.tmp / "nope"), "--", "true"
    )
    assert r.stderr.strip() == (
        f"lark-agent: error: create script {sandbox.tmp / 'nope'}: No such file or directory"
    )
    assert not calls(sandbox, "create")


def test_a_script_runs_in_an_empty_private_directory_removed_after_it(sandbox, host):
    """Its arguments are names, never paths: a script writing relative paths (``tee CHAIN``)
    writes into a fresh directory of root's, not into ``/``."""
    out = sandbox.tmp / "where"
    create = script(sandbox, "create", f'#!/bin/sh\npwd > {out}\nls -A >> {out}\ntee "$3"\n')
    r = sandbox.run_agent(host, *sandbox.who(), "--create-script", str(create), "--", "true")
    assert r.returncode == 0, r.stderr
    workdir, *listing = out.read_text().splitlines()
    assert Path(workdir).parent == sandbox.state_dir and listing == []
    assert not Path(workdir).exists() and not Path("/", f"LARK_{sandbox.job_name()}").exists()


def test_a_delete_script_runs_again_from_cleanup_when_it_failed(sandbox, host):
    flag = sandbox.tmp / "fail-once"
    flag.touch()
    delete = recorder(sandbox, "delete", extra=f"[ -e {flag} ] && rm {flag} && exit 1\nexit 0")
    name = sandbox.job_name()
    r = sandbox.run_agent(host, *sandbox.who(), "--delete-script", str(delete), "--", "true")
    assert r.returncode == 0
    assert f"cleanup of {name} incomplete" in r.stderr
    again = sandbox.run_agent(host, name, "--state-dir", str(sandbox.state_dir), verb="cleanup")
    assert again.returncode == 0, again.stderr
    assert len(calls(sandbox, "delete")) == 2


def test_a_rule_a_script_adds_with_a_comment_is_published(sandbox, host):
    create = script(
        sandbox,
        "create",
        "#!/bin/sh\n"
        f'nft add rule inet lark "$3" iifname "$4" ip daddr {SITE_ADDR} counter '
        "comment '\"OutgoingSite\"'\n"
        f'nft add rule inet lark "$3" oifname "$4" ip saddr {SITE_ADDR} counter '
        "comment '\"IncomingSite\"'\n",
    )
    r, update = run_fetch(sandbox, host, "1m", "--create-script", str(create))
    assert r.returncode == 0, r.stderr
    ad = read_update_ad(update)
    assert FILE_SIZES["1m"] <= ad["NetworkIncomingSite"] == ad["NetworkIncoming"]
    assert 0 < ad["NetworkOutgoingSite"] == ad["NetworkOutgoing"]


def test_the_job_ad_cannot_name_a_script(sandbox, host):
    evil = recorder(sandbox, "evil")
    job_ad = sandbox.tmp / "job.ad"
    job_ad.write_text(
        f'LarkStartupScript = "{evil}"\nLarkCleanupScript = "{evil}"\n'
        'NETWORK_NAMESPACE_CREATE_SCRIPT = "/bin/sh -c reboot"\n'
    )
    r = sandbox.run_agent(host, *sandbox.who(), "--job-ad", str(job_ad), "--", "true")
    assert r.returncode == 0, r.stderr
    assert not calls(sandbox, "evil")


def test_the_machine_ad_may_name_the_scripts(sandbox, host):
    create, delete = recorder(sandbox, "create"), recorder(sandbox, "delete")
    machine = sandbox.tmp / "machine.ad"
    machine.write_text(f'LarkStartupScript = "{create}"\nLarkCleanupScript = "{delete}"\n')
    r = sandbox.run_agent(host, *sandbox.who(), "--machine-ad", str(machine), "--", "true")
    assert r.returncode == 0, r.stderr
    assert len(calls(sandbox, "create")) == len(calls(sandbox, "delete")) == 1
    assert stat.S_IMODE(create.stat().st_mode) == 0o755


CONNECT = (
    "import socket, sys\n"
    "try:\n"
    "    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1).close()\n"
    "    print('connected')\n"
    "except OSError:\n"
    "    print('blocked')\n"
)


def test_contrib_examples_split_accounting_block_and_log(sandbox, host):
    split = contrib_script(sandbox, "lark-split-accounting", "INTERNAL", f"{SITE_ADDR}/32")
    log = sandbox.tmp / "counters.log"
    logger = contrib_script(sandbox, "lark-log-counters", "LOG", str(log))
    job_ad = sandbox.tmp / "job.ad"
    job_ad.write_text('GlobalJobId = "schedd#42.0#1"\n')
    r, update = run_fetch(
        sandbox,
        host,
        "1m",
        "--job-ad",
        str(job_ad),
        "--create-script",
        str(split),
        "--delete-script",
        str(logger),
    )
    assert r.returncode == 0, r.stderr
    ad = read_update_ad(update)
    assert ad["NetworkIncomingInternal"] == ad["NetworkIncoming"] >= FILE_SIZES["1m"]
    assert ad["NetworkOutgoingInternal"] == ad["NetworkOutgoing"] > 0
    [line] = log.read_text().splitlines()
    assert "job=schedd#42.0#1" in line and f"chain=LARK_{sandbox.job_name()}" in line
    assert f"Incoming={ad['NetworkIncoming']}" in line
    assert f"IncomingInternal={ad['NetworkIncomingInternal']}" in line

    block = contrib_script(sandbox, "lark-block-networks", "BLOCKED", f"{SITE_ADDR}/32")
    r = sandbox.run_agent(
        host,
        *sandbox.who(sandbox.job_name("j2")),
        "--update-ad",
        str(update),
        "--create-script",
        str(block),
        "--",
        *python_job(CONNECT, SITE_ADDR, "8080"),
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "blocked"
    assert read_update_ad(update)["NetworkOutgoingBlocked"] > 0


def test_contrib_split_accounting_in_bridge_mode(sandbox, host):
    sandbox.kept_links.add("lark")
    split = contrib_script(sandbox, "lark-split-accounting", "INTERNAL", f"{SITE_ADDR}/32")
    r, update = run_fetch(
        sandbox,
        host,
        "1m",
        "--network-type",
        "bridge",
        "--bridge-device",
        "uplink",
        "--address-type",
        "static",
        "--static-address",
        "10.77.0.60/24",
        "--create-script",
        str(split),
    )
    assert r.returncode == 0, r.stderr
    ad = read_update_ad(update)
    # on a LAN a few other packets may reach the job; the site's are nearly all of it
    assert FILE_SIZES["1m"] <= ad["NetworkIncomingInternal"] <= ad["NetworkIncoming"]
