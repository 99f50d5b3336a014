"""Promises of the README about a NAT job that no other test held the agent to (issue 21):
forwarding, exit 126, ``-v``, the upload figures of the update ad, the wrapper error file on
a signal during setup, and the kernel check for nfnetlink_queue."""

from __future__ import annotations

import os
import signal
import tempfile
import time

from helpers.agent import python_job, read_update_ad, run_fetch
from sandbox import FILE_SIZES, SITE_ADDR, sh


def one_line(r, status: int) -> str:
    assert r.returncode == status, (r.returncode, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    return lines[0]


def test_nat_turns_on_ipv4_forwarding_in_the_nodes_namespace(sandbox, host):
    """README, Configuration reference: "NAT mode turns on IPv4 forwarding in the node's
    namespace". A node that has it off (a fresh namespace, a hardened host) still gets the
    job its download."""
    forwarding = "/proc/sys/net/ipv4/ip_forward"
    sh("sh", "-c", f"echo 0 > {forwarding}", netns=host.netns)
    assert sh("cat", forwarding, netns=host.netns).stdout.strip() == "0"
    r, _ = run_fetch(sandbox, host, "1k")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(FILE_SIZES["1k"])
    assert sh("cat", forwarding, netns=host.netns).stdout.strip() == "1"


def test_a_job_command_that_cannot_be_executed_is_one_line_and_126(sandbox, host):
    """README, Exit status of ``run``: 126, "the job command exists but cannot be executed",
    with the reason on stderr and in $_CONDOR_WRAPPER_ERROR_FILE, and nothing left."""
    err_file = sandbox.tmp / "wrapper.err"
    with tempfile.TemporaryDirectory(prefix=f"{sandbox.prefix}-") as where:
        os.chmod(where, 0o755)  # the job user (nobody) may look in
        plain = os.path.join(where, "not-executable")  # a regular file without x
        with open(plain, "w") as f:
            f.write("#!/bin/sh\nexit 0\n")
        os.chmod(plain, 0o644)
        garbage = os.path.join(where, "no-format")  # executable, but no format execve knows
        with open(garbage, "wb") as f:
            f.write(b"\x7fELF\x00garbage")
        os.chmod(garbage, 0o755)
        for command, why in ((plain, "Permission denied"), (garbage, "Exec format error")):
            r = sandbox.run_agent(
                host,
                *sandbox.who(),
                "--",
                command,
                env={"_CONDOR_WRAPPER_ERROR_FILE": str(err_file)},
            )
            line = one_line(r, 126)
            assert line.startswith("lark-agent: error: ") and command in line, line
            assert why in line, line
            assert not sandbox.wait_clean(), command
    written = err_file.read_text().splitlines()
    assert len(written) == 2 and all(w.startswith("lark-agent: ") for w in written), written


def test_verbose_logs_progress_to_stderr_and_quiet_only_warnings(sandbox, host):
    """README, Options of ``lark-agent run``: "``-v`` also logs progress to stderr (warnings
    and errors always go there)"; the log file has the progress either way."""
    name = sandbox.job_name()
    quiet = sandbox.run_agent(host, *sandbox.who(), "--", "true")
    assert quiet.returncode == 0, quiet.stderr
    said = quiet.stderr.splitlines()
    assert not any(ln.startswith("lark-agent: INFO: ") for ln in said), said
    loud = sandbox.run_agent(host, *sandbox.who(), "-v", "--", "true")
    assert loud.returncode == 0, loud.stderr
    lines = loud.stderr.splitlines()
    assert any(ln.startswith(f"lark-agent: INFO: {name}: network ready") for ln in lines), lines
    assert len([ln for ln in lines if not ln.startswith("lark-agent: INFO: ")]) == len(said)
    assert sandbox.log_file.read_text().count(f"{name}: network ready") == 2


UPLOAD = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(int(sys.argv[2])):
    s.sendto(b"x" * 1400, (sys.argv[1], 9))
    if i % 20 == 19:
        time.sleep(0.002)
time.sleep(float(sys.argv[3]))
"""


def test_upload_figures_of_the_update_ad_follow_the_bytes_counted(sandbox, host):
    """README, Attributes in the update ad: ``NetworkOutputMb`` is ``NetworkOutgoing`` in
    megabytes (bytes / 1,000,000) and ``AverageBandwidthUsageOutgoing`` its bytes per second
    since the job started, in the ad of a real job that sends a known amount."""
    ad_path = sandbox.tmp / "upload.ad"
    datagrams, rest_s = 400, 1.5
    started = time.monotonic()
    r = sandbox.run_agent(
        host,
        *sandbox.who(),
        "--update-ad",
        str(ad_path),
        "--",
        *python_job(UPLOAD, SITE_ADDR, str(datagrams), str(rest_s)),
    )
    lived = time.monotonic() - started
    assert r.returncode == 0, r.stderr
    ad = read_update_ad(ad_path)
    sent = datagrams * (20 + 8 + 1400)  # IP bytes: IPv4 and UDP headers, no Ethernet
    assert sent * 0.98 <= ad["NetworkOutgoing"] <= sent, ad
    assert ad["NetworkOutputMb"] == ad["NetworkOutgoing"] / 1_000_000
    assert ad["NetworkInputMb"] == ad["NetworkIncoming"] / 1_000_000
    # bytes over the job's life so far: at least the rest it took after sending, at most
    # the agent's whole run
    assert ad["NetworkOutgoing"] / lived <= ad["AverageBandwidthUsageOutgoing"]
    assert ad["AverageBandwidthUsageOutgoing"] <= ad["NetworkOutgoing"] / rest_s
    assert ad["AverageBandwidthUsageIncoming"] <= ad["NetworkIncoming"] / rest_s


def test_a_signal_during_setup_is_written_to_the_wrapper_error_file(sandbox, host):
    """README, Exit status of ``run``: "on a signal during setup, the reason is one line on
    stderr ... and is also appended to $_CONDOR_WRAPPER_ERROR_FILE", so HTCondor returns
    the job to idle; nothing is left."""
    err_file = sandbox.tmp / "wrapper.err"
    for step, signum in (("netns", signal.SIGTERM), ("firewall", signal.SIGINT)):
        proc = sandbox.start_agent(
            host,
            *sandbox.who(),
            "--",
            "true",
            env={"_LARK_TEST_PAUSE_AFTER": step, "_CONDOR_WRAPPER_ERROR_FILE": str(err_file)},
        )
        assert f"test pause after {step}" in sandbox.read_line(proc.stderr)
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=20)
        name = signal.Signals(signum).name
        assert proc.returncode == 128 + signum, err
        assert err.splitlines() == [f"lark-agent: error: interrupted by {name} during setup"]
        assert err_file.read_text().splitlines()[-1] == (
            f"lark-agent: interrupted by {name} during setup"
        )
        assert not sandbox.wait_clean(), step
    assert len(err_file.read_text().splitlines()) == 2


POLICY = ("--connection-policy", f"allow tcp {SITE_ADDR}:8080")


def test_a_kernel_without_nfnetlink_queue_refuses_only_a_job_with_a_connection_policy(
    sandbox, host
):
    """README, Running a job: the agent asks the kernel for nfnetlink_queue before anything
    is created; a kernel without it is one line and exit 125 for a job whose connections
    are decided (the queue is what decides them), and no matter to a job without a policy."""
    lacks = {"_LARK_TEST_KERNEL_LACKS": "nfqueue"}
    r = sandbox.run_agent(host, *sandbox.who(), *POLICY, "--", "true", env=lacks)
    assert one_line(r, 125) == (
        "lark-agent: error: this kernel lacks nfnetlink_queue "
        "(CONFIG_NETFILTER_NETLINK_QUEUE); nothing was created"
    )
    assert sandbox.leftovers() == []
    assert not (sandbox.log_file.exists() and "network ready" in sandbox.log_file.read_text())
    r = sandbox.run_agent(host, *sandbox.who(), "--", "true", env=lacks)
    assert r.returncode == 0, r.stderr
