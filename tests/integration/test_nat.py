"""NAT mode end to end: real namespaces, real nftables, a real HTTP peer on the site."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

from helpers.agent import FETCH_JOB, cleanup, python_job, read_update_ad, run_fetch
from helpers.udp import exchange, start_echo
from sandbox import FILE_SIZES, SITE_ADDR, netns_list, nft_job_objects, sh, wait_for


def test_traffic_is_counted_to_the_byte(sandbox, host):
    """UDP datagrams of known sizes to an echo server on the site and back, one at a time:
    each is one IP packet each way, of 20 (IPv4) + 8 (UDP) + its payload bytes; the job
    sends nothing else, so both counters are exactly their sum."""
    start_echo(sandbox, SITE_ADDR)
    r, ad, sent = exchange(sandbox, host, SITE_ADDR)
    assert r.returncode == 0 and r.stdout.strip() == "echoed", r.stderr
    assert (ad["NetworkOutgoing"], ad["NetworkIncoming"]) == (sent, sent)


def test_a_download_is_counted_with_its_headers_and_named_in_the_update_ad(sandbox, host):
    """Not to the byte (test_traffic_is_counted_to_the_byte is): how many IP packets carry a
    TCP download, and so how many 20 + 32 byte headers are counted, is the kernel's choice
    (segmentation offloads hand the firewall up to 64 KiB in one packet with one header;
    ACKs are delayed and merged). So the counted bytes are bounded: more than the body; at
    most the body and the HTTP response header with a full header per 1448 bytes (the MSS
    at MTU 1500 with TCP timestamps) and per write of the server, and a few packets of
    connection set-up and close. The job sends its request and at most an ACK per segment."""
    result, ad_path = run_fetch(sandbox, host, "10m")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(FILE_SIZES["10m"])
    ad = read_update_ad(ad_path)
    body = FILE_SIZES["10m"]
    payload = body + 300  # and the server's status line and headers (about 200 bytes)
    segments = -(-payload // 1448) + -(-payload // 65536) + 1  # (a write per 64 KiB, headers)
    assert body < ad["NetworkIncoming"] <= payload + 52 * segments + 10 * 60
    assert 0 < ad["NetworkOutgoing"] <= 200 + 52 * segments + 10 * 60
    assert ad["NetworkInputMb"] == ad["NetworkIncoming"] / 1_000_000  # (as docker_proc.cpp)
    assert ad["AverageBandwidthUsageIncoming"] > 0
    name = sandbox.job_name()
    assert ad["LarkIptableName"] == f"LARK_{name}"
    assert ad["LarkExternalInterface"] == f"e_{name}"
    assert ad["LarkInternalInterface"] == f"i_{name}"
    assert ad["LarkNetworkType"] == "nat" and ad["LarkAddressType"] == "local"
    assert ad["LarkGateway"] == ad["LarkExternalAddressIPv4"]
    assert ad["LarkInnerAddressIPv4"].startswith("192.168.181.")


def test_job_sees_its_own_network_and_the_site_sees_the_host(sandbox, host):
    probe = (
        "import socket, subprocess\n"
        f"s = socket.create_connection(('{SITE_ADDR}', 8080)); print(s.getsockname()[0])\n"
    )
    result = sandbox.run_agent(host, *sandbox.who(sandbox.job_name()), "--", *python_job(probe))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().startswith("192.168.181.")


def test_exit_status_is_the_jobs(sandbox, host):
    r = sandbox.run_agent(host, *sandbox.who(sandbox.job_name()), "--", "/bin/sh", "-c", "exit 7")
    assert r.returncode == 7, r.stderr
    r = sandbox.run_agent(
        host,
        *sandbox.who(sandbox.job_name()),
        "--",
        "/bin/sh",
        "-c",
        "kill -USR1 $$",
    )
    assert r.returncode == 128 + signal.SIGUSR1


def test_job_runs_as_the_user_not_root(sandbox, host):
    r = sandbox.run_agent(host, *sandbox.who(sandbox.job_name()), "--", "id", "-u")
    assert r.returncode == 0 and r.stdout.strip() == sh("id", "-u", "nobody").stdout.strip()


def test_refuses_root_unless_asked(sandbox, host):
    r = sandbox.run_agent(host, "--user", "root", "--name", sandbox.job_name(), "--", "true")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "lark-agent: error: refusing to run the job as root; pass --allow-root if you mean it"
    ]
    r = sandbox.run_agent(
        host, "--user", "root", "--allow-root", "--name", sandbox.job_name(), "--", "id", "-u"
    )
    assert r.returncode == 0 and r.stdout.strip() == "0"


def test_signals_are_forwarded_to_the_job(sandbox, host):
    script = "trap 'echo got-term; exit 42' TERM; echo ready; while :; do sleep 0.05; done"
    proc = sandbox.start_agent(
        host, *sandbox.who(sandbox.job_name()), "--", "/bin/sh", "-c", script
    )
    assert sandbox.read_line(proc.stdout).strip() == "ready"
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 42, err
    assert "got-term" in out


def test_job_killed_by_forwarded_signal_gives_128_plus_n(sandbox, host):
    proc = sandbox.start_agent(
        host,
        *sandbox.who(sandbox.job_name()),
        "--",
        "/bin/sh",
        "-c",
        "echo ready; exec sleep 30",
    )
    assert sandbox.read_line(proc.stdout).strip() == "ready"
    proc.send_signal(signal.SIGHUP)
    proc.communicate(timeout=20)
    assert proc.returncode == 128 + signal.SIGHUP


def test_missing_job_binary_is_one_line_and_127(sandbox, host):
    err_file = sandbox.tmp / "wrapper.err"
    r = sandbox.run_agent(
        host,
        *sandbox.who(sandbox.job_name()),
        "--",
        "/nonexistent/job",
        env={"_CONDOR_WRAPPER_ERROR_FILE": str(err_file)},
    )
    assert r.returncode == 127
    assert r.stderr.strip().splitlines() == [
        "lark-agent: error: job command not found: /nonexistent/job"
    ]
    assert "job command not found" in err_file.read_text()


def test_malformed_job_ad_is_one_line_and_125(sandbox, host):
    bad = sandbox.tmp / "job.ad"
    bad.write_text('ClusterId = 5\nProcId = 0\nOwner = "alice\nCmd = (\n')
    err_file = sandbox.tmp / "wrapper.err"
    r = sandbox.run_agent(
        host,
        "--user",
        "nobody",
        "--job-ad",
        str(bad),
        "--",
        "true",
        env={"_CONDOR_WRAPPER_ERROR_FILE": str(err_file)},
    )
    assert r.returncode == 125
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"lark-agent: error: job ad {bad} line 3")
    assert err_file.read_text().startswith("lark-agent: job ad")


def test_unknown_network_type_names_setting_value_and_source(sandbox, host):
    machine = sandbox.tmp / "machine.ad"
    machine.write_text('Name = "slot1@node"\nLarkNetworkType = "brdige"\n')
    r = sandbox.run_agent(host, "--user", "nobody", "--machine-ad", str(machine), "--", "true")
    assert r.returncode == 125
    assert r.stderr.strip() == (
        'lark-agent: error: LarkNetworkType "brdige" (machine ad) is not one of nat, bridge, none'
    )


def test_job_ad_cannot_choose_settings_or_scripts(sandbox, host):
    job = sandbox.tmp / "job.ad"
    marker = sandbox.tmp / "pwned"
    job.write_text(
        f'ClusterId = 9\nProcId = 1\nLarkAllowedNetworkTypes = "bridge"\n'
        f'LarkStartupScript = "/bin/touch {marker}"\nLarkLocalNetwork = "10.0.0.0/8"\n'
    )  # (a job may *ask* for a network type: see test_job_policy.py)
    ad = sandbox.tmp / "u.ad"
    r = sandbox.run_agent(
        host,
        *sandbox.who(sandbox.job_name()),
        "--job-ad",
        str(job),
        "--update-ad",
        str(ad),
        "--",
        "true",
    )
    assert r.returncode == 0, r.stderr
    values = read_update_ad(ad)
    assert values["LarkNetworkType"] == "nat"
    assert values["LarkInnerAddressIPv4"].startswith("192.168.181.")
    assert not marker.exists()


def test_machine_ad_expression_may_look_at_the_job(sandbox, host):
    job = sandbox.tmp / "job.ad"
    job.write_text("ClusterId = 3\nProcId = 0\nWantNetwork = false\n")
    machine = sandbox.tmp / "machine.ad"
    machine.write_text(
        'Name = "slot1_1@node"\n'
        'LarkNetworkType = ifThenElse(TARGET.WantNetwork =?= false, "none", "nat")\n'
    )
    ad = sandbox.tmp / "u.ad"
    r = sandbox.run_agent(
        host,
        *sandbox.who(sandbox.job_name()),
        "--job-ad",
        str(job),
        "--machine-ad",
        str(machine),
        "--update-ad",
        str(ad),
        "--",
        *FETCH_JOB,
        sandbox.url("1k"),
    )
    assert r.returncode != 0  # mode none: loopback only, the site is unreachable
    assert read_update_ad(ad)["LarkNetworkType"] == "none"


def test_default_name_comes_from_slot_and_job_id(sandbox, host):
    job = sandbox.tmp / "job.ad"
    job.write_text("ClusterId = 12\nProcId = 3\n")
    machine = sandbox.tmp / "machine.ad"
    slot = int(sandbox.prefix[-4:], 16)  # random per test, so names never collide
    machine.write_text(f'Name = "slot{slot}_2@node"\n')
    ad = sandbox.tmp / "u.ad"
    r = sandbox.run_agent(
        host,
        "--user",
        "nobody",
        "--job-ad",
        str(job),
        "--machine-ad",
        str(machine),
        "--update-ad",
        str(ad),
        "--",
        "true",
    )
    assert r.returncode == 0, r.stderr
    assert read_update_ad(ad)["LarkExternalInterface"] == f"e_s{slot}_2-12_3"
    assert f"lark-s{slot}_2-12_3" not in netns_list()


def test_back_to_back_jobs_of_one_name_and_pairs_the_host_still_holds(sandbox, host):
    # A finished job's veth goes with its namespace, deleted by the kernel just after the
    # agent exits: the same name right away must still work, and a pair whose external
    # address is still on a link of the host (that veth, or an admin's) is not handed out.
    pool = ("--user", "nobody", "--local-network", "192.168.181.0/29")  # pairs .2/.3, .4/.5
    name = sandbox.job_name()
    for _ in range(4):
        r = sandbox.run_agent(host, *pool, "--name", name, "--", "true")
        assert r.returncode == 0, r.stderr
    sh("ip", "addr", "add", "192.168.181.2/32", "dev", "lo", netns=host.netns)
    ad = sandbox.tmp / "skip.ad"
    r = sandbox.run_agent(host, *pool, "--name", name, "--update-ad", str(ad), "--", "true")
    assert r.returncode == 0, r.stderr
    assert read_update_ad(ad)["LarkExternalAddressIPv4"] == "192.168.181.4"
    sh("ip", "addr", "add", "192.168.181.4/32", "dev", "lo", netns=host.netns)
    r = sandbox.run_agent(host, *pool, "--name", name, "--", "true")
    assert r.returncode == 125 and "is exhausted" in r.stderr
    sh("ip", "addr", "flush", "dev", "lo", "to", "192.168.181.0/29", netns=host.netns)
    assert not sandbox.wait_clean()


IN_PROCESS_TWICE = """
import ipaddress, sys, trio
from pathlib import Path
from lark_async.decide import plan, policy
from lark_async.job.process import JobUser
from lark_async.decide.request import JobRequest
from lark_async.decide.settings import Settings
from lark_async.job.supervisor import RunRequest, Supervisor

async def once(tmp):
    settings = Settings(state_dir=tmp / "state", lock_dir=tmp / "lock",
                        local_network=ipaddress.IPv4Network("192.168.181.0/29"))
    job = plan.derive_plan(policy.decide(settings, JobRequest()), sys.argv[2])
    sup = Supervisor(RunRequest(job, ["true"], JobUser("nobody", 65534, 65534, ()), {}, None, None))
    await sup.setup_network()
    assert not await sup.teardown()

for _ in range(3):
    trio.run(once, Path(sys.argv[1]))
"""


def test_the_same_name_right_after_teardown_waits_for_the_old_veth(sandbox, host):
    # in-process, the next setup comes while the kernel is still deleting the old veth
    argv = ["nsenter", f"--net=/run/netns/{host.netns}", sys.executable, "-c", IN_PROCESS_TWICE]
    argv += [str(sandbox.tmp), sandbox.job_name()]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert not sandbox.wait_clean()


def test_exhausted_pool_is_a_clear_error(sandbox, host):
    # a /29 holds two pairs; two running jobs use them up
    args = ("--user", "nobody", "--local-network", "192.168.181.0/29")
    running = [
        sandbox.start_agent(
            host,
            *args,
            "--name",
            sandbox.job_name(f"r{i}"),
            "--",
            "/bin/sh",
            "-c",
            "echo ready; exec sleep 30",
        )
        for i in range(2)
    ]
    try:
        for proc in running:
            assert sandbox.read_line(proc.stdout).strip() == "ready"
        r = sandbox.run_agent(host, *args, "--name", sandbox.job_name("x"), "--", "true")
        assert r.returncode == 125
        assert r.stderr.strip() == (
            "lark-agent: error: address pool LARK_LOCAL_NETWORK 192.168.181.0/29 is exhausted: "
            "all 2 pairs are in use (pairs of dead agents come back with `lark-agent cleanup "
            "--orphans`)"
        )
    finally:
        for proc in running:
            proc.send_signal(signal.SIGTERM)
            proc.communicate(timeout=20)


def test_concurrent_jobs_get_distinct_addresses(sandbox, host):
    """Six jobs each print the address they reach the site from and wait for the test: all
    six run at once when the last has printed."""
    probe = (
        "import socket, sys\n"
        f"print(socket.create_connection(('{SITE_ADDR}', 8080)).getsockname()[0], flush=True)\n"
        "sys.stdin.readline()\n"
    )
    procs = [
        sandbox.start_agent(
            host,
            *sandbox.who(sandbox.job_name(f"c{i}")),
            "--",
            *python_job(probe),
            stdin=subprocess.PIPE,
        )
        for i in range(6)
    ]
    try:
        addresses = [sandbox.read_line(proc.stdout).strip() for proc in procs]
        assert all(proc.poll() is None for proc in procs)
        for proc in procs:
            sandbox.release(proc)
        for proc in procs:
            _, err = proc.communicate(timeout=30)
            assert proc.returncode == 0, err
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
                proc.communicate(timeout=30)
    assert len(set(addresses)) == 6, addresses
    assert all(address.startswith("192.168.181.") for address in addresses), addresses


def test_sigterm_during_setup_cleans_up(sandbox, host):
    for step in ("address", "netns", "firewall"):
        proc = sandbox.start_agent(
            host,
            *sandbox.who(sandbox.job_name()),
            "--",
            "true",
            env={"_LARK_TEST_PAUSE_AFTER": step},
        )
        line = sandbox.read_line(proc.stderr)
        assert f"test pause after {step}" in line
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
        assert proc.returncode == 128 + signal.SIGTERM
        assert err.splitlines() == ["lark-agent: error: interrupted by SIGTERM during setup"]
        assert not sandbox.wait_clean(), step


def test_cleanup_removes_what_a_killed_agent_left(sandbox, host):
    name = sandbox.job_name()
    proc = sandbox.start_agent(
        host,
        *sandbox.who(name),
        "--",
        "true",
        env={"_LARK_TEST_PAUSE_AFTER": "firewall"},
    )
    assert "test pause after firewall" in sandbox.read_line(proc.stderr)
    proc.kill()
    proc.communicate(timeout=20)
    assert f"lark-{name}" in netns_list() and nft_job_objects(host.netns)
    for _ in range(2):  # idempotent: the second run finds nothing to do
        r = cleanup(sandbox, host)
        assert r.returncode == 0, r.stderr


def test_update_ad_is_refreshed_while_the_job_runs(sandbox, host):
    """The job downloads, then waits for the test: the ad shows the download while the job
    (and so the agent) still runs, not only once it has exited."""
    ad = sandbox.tmp / "u.ad"
    job = (
        "import sys, urllib.request\n"
        f"urllib.request.urlopen('{sandbox.url('1m')}').read()\n"
        "print('fetched', flush=True); sys.stdin.readline()\n"
    )
    proc = sandbox.start_agent(
        host,
        *sandbox.who(sandbox.job_name()),
        "--accounting-interval",
        "0.2",
        "--update-ad",
        str(ad),
        "--",
        *python_job(job),
        stdin=subprocess.PIPE,
    )
    try:
        assert sandbox.read_line(proc.stdout).strip() == "fetched"

        def counted() -> bool:
            return ad.exists() and read_update_ad(ad).get("NetworkIncoming", 0) >= FILE_SIZES["1m"]

        assert wait_for(counted, 10), f"the running job's download never reached {ad}"
        assert proc.poll() is None  # (the job waits for the test: nothing has exited)
        sandbox.release(proc)
        _, err = proc.communicate(timeout=20)
        assert proc.returncode == 0, err
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.communicate(timeout=30)


def test_deleted_veth_stops_the_job_says_why_and_cleans_up(sandbox, host):
    name = sandbox.job_name()
    proc = sandbox.start_agent(
        host, *sandbox.who(name), "--", "/bin/sh", "-c", "echo ready; exec sleep 60"
    )
    assert sandbox.read_line(proc.stdout).strip() == "ready"
    started = time.monotonic()
    sh("ip", "link", "del", f"e_{name}", netns=host.netns)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 128 + signal.SIGTERM and time.monotonic() - started < 5
    assert f"the veth pair e_{name}/i_{name} was deleted while the job ran; stopping the job" in err


def test_a_namespace_removed_from_outside_stops_the_job(sandbox, host):
    name = sandbox.job_name()
    proc = sandbox.start_agent(
        host,
        *sandbox.who(name),
        "--accounting-interval",
        "0.1",
        "--",
        "/bin/sh",
        "-c",
        "echo ready; exec sleep 60",
    )
    assert sandbox.read_line(proc.stdout).strip() == "ready"
    sh("ip", "netns", "del", f"lark-{name}")
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 128 + signal.SIGTERM
    assert f"network namespace lark-{name} was removed; stopping the job" in err


def test_leftover_daemons_in_the_job_namespace_are_killed(sandbox, host):
    name = sandbox.job_name()
    nap = f"300.{os.getpid()}{sandbox.prefix[-4:].encode().hex()}"  # ours alone, for pgrep
    r = sandbox.run_agent(
        host,
        *sandbox.who(name),
        "--",
        "/bin/sh",
        "-c",
        f"setsid sleep {nap} >/dev/null 2>&1 < /dev/null & "
        f"setsid sh -c 'trap \"\" TERM; sleep {nap}' >/dev/null 2>&1 < /dev/null & "
        # (both sleeps run, the second's shell with it, before the job exits)
        f"until [ \"$(pgrep -c -f '^sleep {nap}$')\" = 2 ]; do sleep 0.02; done; echo started",
    )
    assert r.returncode == 0, r.stderr
    assert f"lark-{name}" not in netns_list()
    # killed with the job, through its cgroup (without one: TERM, then KILL after a grace period)
    assert "killed 3 process(es)" in sandbox.log_file.read_text()
    assert not sh("pgrep", "-f", f"^sleep {nap}$", check=False).stdout.strip()


def test_table_has_nothing_of_the_job_afterwards(sandbox, host):
    result, _ = run_fetch(sandbox, host, "1k")
    assert result.returncode == 0, result.stderr
    assert nft_job_objects(host.netns) == []
    out = sh("nft", "list", "table", "inet", "lark", netns=host.netns).stdout
    assert "jobs" in out  # the shared table stays, empty


def test_netns_test_tool_fetches_and_prints_counts(sandbox, host):
    r = sandbox.run_agent(
        host, "--target", sandbox.url("1m"), "--name", sandbox.job_name(), verb="netns-test"
    )
    assert r.returncode == 0, r.stderr
    assert f"fetched {FILE_SIZES['1m']} bytes" in r.stdout
    incoming = [ln for ln in r.stdout.splitlines() if ln.startswith("NetworkIncoming")]
    assert incoming and int(incoming[0].split("=")[1]) >= FILE_SIZES["1m"]


def test_ip_lock_test_holds_a_pair(sandbox, host):
    lock_dir = sandbox.lock_dir
    args = ["--lock-dir", str(lock_dir)]
    holder = subprocess.Popen(
        sandbox.agent_argv(host, "192.168.181.0/29", "--hold", "5", *args, verb="ip-lock-test"),
        stdout=subprocess.PIPE,
        text=True,
    )
    first = sandbox.read_line(holder.stdout).split()
    second = sandbox.run_agent(host, "192.168.181.0/29", *args, verb="ip-lock-test")
    assert second.returncode == 0
    assert second.stdout.split() != first and len(first) == 2
    holder.terminate()
    assert holder.wait(10) == 128 + signal.SIGTERM  # released on SIGTERM: no file left


def test_ns_exec_runs_in_fresh_namespaces(sandbox, host):
    r = sandbox.run_agent(host, "--net", "--uts", "--", "ip", "-o", "link", verb="ns-exec")
    assert r.returncode == 0, r.stderr
    assert [ln.split(":")[1].strip() for ln in r.stdout.splitlines()] == ["lo"]


def test_a_name_in_use_is_refused_and_the_running_job_is_untouched(sandbox, host):
    name = sandbox.job_name()
    running = sandbox.start_agent(
        host,
        *sandbox.who(name),
        "--",
        "/bin/sh",
        "-c",
        "echo ready; read line; echo done",  # (runs until the test has tried the name)
        stdin=subprocess.PIPE,
    )
    assert sandbox.read_line(running.stdout).strip() == "ready"
    r = sandbox.run_agent(host, *sandbox.who(name), "--", "true")
    assert r.returncode == 125
    assert r.stderr.strip() == (
        f"lark-agent: error: job name {name} is in use by a running agent (it holds "
        f"{sandbox.lock_dir}/job-{name}.lock)"
    )
    sandbox.release(running)
    out, err = running.communicate(timeout=20)
    assert running.returncode == 0 and out.strip() == "done", err


def test_a_foreign_namespace_with_our_name_is_left_alone(sandbox, host):
    name = sandbox.job_name()
    sh("ip", "netns", "add", f"lark-{name}")
    try:
        r = sandbox.run_agent(host, *sandbox.who(name), "--", "true")
        assert r.returncode == 125
        assert r.stderr.strip() == (
            f"lark-agent: error: create network namespace lark-{name}: File exists"
        )
        assert f"lark-{name}" in netns_list()
    finally:
        sh("ip", "netns", "del", f"lark-{name}")


def test_fast_path_rules_read_like_nft_text_and_admin_counters_are_published(sandbox, host):
    name = sandbox.job_name()
    ad = sandbox.tmp / "u.ad"
    fetch = f"urllib.request.urlopen('{sandbox.url('1m')}').read()"
    job = f"import sys, urllib.request; print('ready', flush=True); sys.stdin.readline(); {fetch}"
    proc = sandbox.start_agent(
        host, *sandbox.who(name), "--update-ad", str(ad), "--", *python_job(job),
        stdin=subprocess.PIPE,
    )  # fmt: skip
    assert sandbox.read_line(proc.stdout).strip() == "ready"
    listed = sh("nft", "list", "chain", "inet", "lark", f"LARK_{name}", netns=host.netns).stdout
    inner = read_update_ad(ad)["LarkInnerAddressIPv4"]
    rules = [
        re.sub(r"packets \d+ bytes \d+", "packets 0 bytes 0", ln.strip())
        for ln in listed.splitlines()[2:-2]
    ]
    node = "fib daddr type != unicast"
    assert rules == [
        f'iifname "e_{name}" counter packets 0 bytes 0 comment "Outgoing"',
        f'oifname "e_{name}" counter packets 0 bytes 0 comment "Incoming"',
        f'iifname "e_{name}" ip saddr != {inner} drop',
        f'iifname "e_{name}" {node} ct state established,related return',
        f'iifname "e_{name}" icmpv6 type nd-neighbor-solicit {node} return',
        f'iifname "e_{name}" icmpv6 type nd-neighbor-advert {node} return',
        f'iifname "e_{name}" {node} drop',
        f'iifname "e_{name}" oifname "e_*" ct state ! established,related drop',
    ]
    sh(
        "nft",
        "add",
        "rule",
        "inet",
        "lark",
        f"LARK_{name}",
        "oifname",
        f"e_{name}",
        "ip",
        "saddr",
        SITE_ADDR,
        "counter",
        "comment",
        '"FromSite"',
        netns=host.netns,
    )
    sandbox.release(proc)  # the job downloads once the admin's counter is in
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    values = read_update_ad(ad)
    assert FILE_SIZES["1m"] <= values["NetworkFromSite"] <= values["NetworkIncoming"]
