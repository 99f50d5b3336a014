"""The sudo boundary: whatever the caller of ``wrap`` names or writes is data, never a setting.

Every test here plays a hostile local user (nobody) calling ``lark-agent wrap`` the way the
sudo rule lets anyone call it (reset environment, ``SUDO_UID``/``SUDO_GID``, the job's
environment on fd 3).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import classad2
from helpers.agent import NOBODY, cleanup, python_job
from helpers.scripts import calls, recorder
from helpers.wrap import JOB, start_wrap, starter, wrap
from sandbox import SITE_ADDR

JOB_ADS = {".job.ad": "ClusterId = 7\nProcId = 0\n", ".machine.ad": 'Name = "slot1@node"\n'}


def update_ad(scratch) -> dict:
    return dict(classad2.parseOne((scratch / ".lark.update.ad").read_text()).items())


def test_a_root_owned_machine_ad_the_caller_names_gives_no_settings(sandbox, host):
    """The old trust rule ("a root-owned machine-ad file is the admin's") let a caller point
    at a root-owned file it had arranged, or swap one in; now no machine-ad file is a source."""
    evil = recorder(sandbox, "evil")
    scratch, env = starter(sandbox, JOB_ADS)
    root_owned = sandbox.tmp / "root-owned.ad"  # what the swap makes root read
    root_owned.write_text(f'LarkStartupScript = "{evil}"\nLarkNetworkType = "none"\n')
    root_owned.chmod(0o644)
    env["_CONDOR_MACHINE_AD"] = str(root_owned)
    r = wrap(sandbox, host, env, *python_job(JOB, SITE_ADDR), cwd=scratch)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("|")[3].startswith("192.168.181.")  # NAT, not "none"
    assert update_ad(scratch)["LarkNetworkType"] == "nat"
    assert not calls(sandbox, "evil")


def test_a_fifo_behind_a_symlink_swapped_to_a_root_file_is_refused(sandbox, host):
    """The reported attack: the ad is served through a FIFO behind a symlink, which is swapped
    to a root-owned file before the FIFO closes. Root must not read it at all."""
    evil = recorder(sandbox, "evil")
    scratch, env = starter(sandbox, JOB_ADS)
    fifo, link = scratch / "ad.fifo", scratch / "machine.ad"
    os.mkfifo(fifo)
    os.chown(fifo, NOBODY, NOBODY)
    link.symlink_to(fifo)
    env["_CONDOR_MACHINE_AD"] = str(link)

    def serve() -> None:  # what the user's helper process does
        try:
            fd = os.open(fifo, os.O_WRONLY)  # blocks until root opens the FIFO
        except OSError:
            return
        try:
            os.write(fd, f'LarkStartupScript = "{evil}"\n'.encode())
            link.unlink()
            link.symlink_to("/etc/passwd")
        except OSError:  # root did not wait for it
            pass
        os.close(fd)

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    r = wrap(sandbox, host, env, "true", cwd=scratch)
    assert r.returncode == 125
    assert r.stderr == f"lark-agent: error: machine ad {link}: is a symbolic link\n"
    env["_CONDOR_MACHINE_AD"] = str(fifo)  # the FIFO itself: not a regular file, no wait
    r = wrap(sandbox, host, env, "true", cwd=scratch)
    assert r.returncode == 125
    assert r.stderr == f"lark-agent: error: machine ad {fifo}: not a regular file\n"
    assert not calls(sandbox, "evil")
    os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # let the helper thread finish


def test_machine_attributes_come_from_the_htcondor_config(sandbox, host):
    """Where the startd takes them: an admin's STARTD_ATTRS expression in the config, evaluated
    by Lark against the job ad (the job only supplies data to it)."""
    config = 'LarkNetworkType = ifThenElse(TARGET.WantsNoNet =?= true, "none", "nat")\n'
    scratch, env = starter(
        sandbox, {**JOB_ADS, ".job.ad": "ClusterId = 7\nProcId = 0\nWantsNoNet = true\n"}
    )
    r = wrap(sandbox, host, env, "true", cwd=scratch, config=config)
    assert r.returncode == 0, r.stderr
    assert update_ad(scratch)["LarkNetworkType"] == "none"
    bad = 'LarkNetworkType = "brdige"\n'
    r = wrap(sandbox, host, env, "true", cwd=scratch, config=bad)
    assert r.returncode == 125
    assert r.stderr == (
        'lark-agent: error: LarkNetworkType "brdige" (HTCondor config) is not one of nat, '
        "bridge, none\n"
    )


def test_the_bandwidth_share_is_the_jobs_request_within_the_configs_cap(sandbox, host):
    """The slot's share in the machine ad is the caller's to forge: wrap takes the job's
    request instead (the caller's too), bounded by the admin's per-slot cap from the
    HTCondor config, and says which decided."""
    forged = {".machine.ad": 'Name = "slot1@node"\nNetworkBandwidth = 7\n'}
    job_ad = "ClusterId = 7\nProcId = 0\nRequestNetworkBandwidth = {}\n"
    scratch, env = starter(sandbox, {**forged, ".job.ad": job_ad.format(5000)})
    r = wrap(sandbox, host, env, "true", cwd=scratch, config="LARK_BANDWIDTH_SLOT_CAP = 20\n")
    assert r.returncode == 0, r.stderr
    assert update_ad(scratch)["LarkBandwidthLimitMbit"] == 20
    log = sandbox.log_file.read_text()
    assert "the slot's NetworkBandwidth in the caller's machine ad is not a source" in log
    assert (
        "bandwidth 20 Mbit/s towards the job, 20 from it (the per-slot cap 20 "
        "(LARK_BANDWIDTH_SLOT_CAP), under the job's RequestNetworkBandwidth 5000;" in log
    )
    # no LARK_BANDWIDTH_SLOT_CAP: the node's total bounds it
    scratch, env = starter(sandbox, {**forged, ".job.ad": job_ad.format(30)})
    config = "MACHINE_RESOURCE_NetworkBandwidth = 1000\n"
    r = wrap(sandbox, host, env, "true", cwd=scratch, config=config)
    assert r.returncode == 0, r.stderr
    assert update_ad(scratch)["LarkBandwidthLimitMbit"] == 30
    assert (
        "bandwidth 30 Mbit/s towards the job, 30 from it (the job's RequestNetworkBandwidth 30, "
        "under the per-slot cap 1000 (the node's MACHINE_RESOURCE_NetworkBandwidth);"
        in sandbox.log_file.read_text()
    )
    # a request that is not a rate is one line, and nothing is set up
    scratch, env = starter(sandbox, {**forged, ".job.ad": job_ad.format('"lots"')})
    r = wrap(sandbox, host, env, "true", cwd=scratch, config=config)
    assert r.returncode == 125
    assert r.stderr == (
        'lark-agent: error: RequestNetworkBandwidth "lots" (job ad) is not a rate in Mbit/s\n'
    )


def test_condor_variables_the_caller_smuggles_through_sudo_are_ignored(sandbox, host):
    """A site whose sudoers keeps some environment must not hand the caller HTCondor's
    ``_CONDOR_<KNOB>`` overrides or a config file of its own."""
    evil = recorder(sandbox, "evil")
    scratch, env = starter(sandbox, JOB_ADS)
    smuggled = {"_CONDOR_NETWORK_NAMESPACE_CREATE_SCRIPT": str(evil)}
    r = wrap(sandbox, host, env, "true", cwd=scratch, sudo_env=smuggled)
    assert r.returncode == 0, r.stderr
    assert not calls(sandbox, "evil")
    own = sandbox.tmp / "users_config"  # the caller's file, in a directory of root's
    own.write_text(f"NETWORK_NAMESPACE_CREATE_SCRIPT = {evil}\n")
    os.chown(own, NOBODY, NOBODY)
    r = wrap(sandbox, host, env, "true", cwd=scratch, sudo_env={"CONDOR_CONFIG": str(own)})
    assert r.returncode == 125
    assert r.stderr == f"lark-agent: error: HTCondor config {own} is not owned by root\n"
    own = scratch / "condor_config"  # root's file, in a directory the caller owns
    own.write_text(f"NETWORK_NAMESPACE_CREATE_SCRIPT = {evil}\n")
    r = wrap(sandbox, host, env, "true", cwd=scratch, sudo_env={"CONDOR_CONFIG": str(own)})
    assert r.returncode == 125
    assert r.stderr == (
        f"lark-agent: error: HTCondor config {own}: directory {scratch} is not owned by root\n"
    )
    assert not calls(sandbox, "evil")


def test_a_caller_cannot_squat_another_jobs_name(sandbox, host):
    """The ads' ids are the caller's to write: two agents claiming job 42.0 in slot1_1 both
    run, under names that carry their own pids."""
    ads = {".job.ad": "ClusterId = 42\nProcId = 0\n", ".machine.ad": 'Name = "slot1_1@node"\n'}
    scratch, env = starter(sandbox, ads)
    squatter = start_wrap(sandbox, host, env, "sleep", "30", cwd=scratch)
    sandbox.procs.append(squatter)
    try:
        deadline = time.monotonic() + 20
        while not sandbox.logged_job_names() and time.monotonic() < deadline:
            time.sleep(0.05)
        (squatted,) = sandbox.logged_job_names()
        r = wrap(sandbox, host, env, "true", cwd=scratch)
        assert r.returncode == 0, r.stderr
        names = sandbox.logged_job_names()
        assert len(names) == 2 and all(n.startswith("42_0-w") for n in names)
        assert squatted in names
    finally:
        squatter.terminate()
        squatter.communicate(timeout=30)


def test_one_user_holds_at_most_its_share_of_agents(sandbox, host):
    config = "LARK_MAX_JOBS_PER_USER = 2\n"
    scratch, env = starter(sandbox, JOB_ADS)
    holders = [start_wrap(sandbox, host, env, "sleep", "30", cwd=scratch, config=config)]
    holders.append(start_wrap(sandbox, host, env, "sleep", "30", cwd=scratch, config=config))
    sandbox.procs.extend(holders)
    try:
        deadline = time.monotonic() + 20
        while len(sandbox.logged_job_names()) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        r = wrap(sandbox, host, env, "true", cwd=scratch, config=config)
        assert r.returncode == 125
        assert r.stderr == (
            "lark-agent: error: user nobody already runs 2 jobs through Lark on this node "
            "(LARK_MAX_JOBS_PER_USER)\n"
        )
        assert "already runs 2 jobs" in (scratch / ".wrapper_error").read_text()
        holders[0].terminate()
        holders[0].communicate(timeout=30)
        r = wrap(sandbox, host, env, "true", cwd=scratch, config=config)
        assert r.returncode == 0, r.stderr
    finally:
        for proc in holders:
            proc.terminate()
            proc.communicate(timeout=30)


def test_the_job_environment_pipe_held_open_is_bounded(sandbox, host):
    """fd 3 is the caller's: a pipe it never closes is one line after a few seconds."""
    read, write = os.pipe()
    config = sandbox.tmp / "condor_config"  # (started from the test's cgroups: stay there)
    config.write_text("LARK_AGENT_CGROUP = none\nNO_DNS = true\nDEFAULT_DOMAIN_NAME = x.invalid\n")
    argv = ["nsenter", f"--net=/run/netns/{host.netns}", sys.executable, "-I", "-m"]
    argv += ["lark_async.cli", "wrap", "--", "true"]
    proc = subprocess.run(
        argv,
        env={
            "PATH": "/usr/bin:/bin",
            "SUDO_UID": str(NOBODY),
            "SUDO_GID": str(NOBODY),
            "CONDOR_CONFIG": str(config),
        },
        capture_output=True,
        text=True,
        timeout=30,
        pass_fds=(read, 3),
        preexec_fn=lambda: os.dup2(read, 3),
    )
    os.close(read)
    os.close(write)
    assert proc.returncode == 2
    assert proc.stderr == "lark-agent: error: the job's environment (fd 3) did not arrive in time\n"


def test_a_killed_agents_user_slot_is_swept_and_a_held_one_stays(sandbox, host):

    from lark_async.backends import locks

    sandbox.lock_dir.mkdir(mode=0o700)
    stale, held = sandbox.lock_dir / "user-65534.0.lock", sandbox.lock_dir / "user-65534.1.lock"
    stale.write_text("4242\n")  # its agent was SIGKILLed: the file stays, unlocked
    fd = locks.try_lock(held)
    assert fd is not None
    try:
        r = cleanup(sandbox, host, "--orphans")
        assert r.returncode == 0, r.stderr
        assert not stale.exists() and held.exists()
    finally:
        locks.release(held, fd)
