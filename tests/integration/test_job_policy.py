"""Policy: job requests within the admin's limits, and the admin's policy script."""

from __future__ import annotations

from helpers.agent import python_job, read_update_ad
from helpers.scripts import script

SHOW_LINKS = python_job("import socket; print(sorted(n for _, n in socket.if_nameindex()))")


def run(sandbox, host, *flags: str, job_ad: str | None = None, env=None):
    extra: list[str] = []
    if job_ad is not None:
        path = sandbox.tmp / "job.ad"
        path.write_text(job_ad)
        extra += ["--job-ad", str(path)]
    update = sandbox.tmp / "update.ad"
    r = sandbox.run_agent(
        host, *sandbox.who(), "--update-ad", str(update), *extra, *flags, "--", *SHOW_LINKS, env=env
    )
    return r, update


def test_a_job_that_wants_no_network_gets_loopback_only(sandbox, host):
    r, update = run(sandbox, host, job_ad="WantJobNetworking = false\n")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "['lo']"
    assert read_update_ad(update)["LarkNetworkType"] == "none"


def test_a_job_asking_for_a_mode_the_node_does_not_allow_is_refused(sandbox, host):
    err = sandbox.tmp / "wrapper.err"
    r, _ = run(
        sandbox,
        host,
        job_ad='LarkNetworkType = "bridge"\n',
        env={"_CONDOR_WRAPPER_ERROR_FILE": str(err)},
    )
    assert r.returncode == 125
    reason = (
        'the job asks for network type "bridge", which this node does not allow '
        "(allowed: nat, none)"
    )
    assert r.stderr.strip() == f"lark-agent: error: {reason}"
    assert reason in err.read_text()


def test_the_policy_script_has_the_last_word(sandbox, host):
    policy = script(
        sandbox,
        "policy",
        "#!/bin/sh\n"
        "if grep -q '^Owner = \"mallory\"' ; then echo 'LarkNetworkType = \"none\"'; fi\n",
    )
    r, update = run(sandbox, host, "--policy-script", str(policy), job_ad='Owner = "mallory"\n')
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "['lo']"
    assert read_update_ad(update)["LarkNetworkType"] == "none"
    r, update = run(sandbox, host, "--policy-script", str(policy), job_ad='Owner = "alice"\n')
    assert r.returncode == 0, r.stderr
    assert read_update_ad(update)["LarkNetworkType"] == "nat"


def test_a_failing_or_confused_policy_script_refuses_the_job(sandbox, host):
    before = sandbox.leftovers()
    failing = script(
        sandbox, "fails", "#!/bin/sh\necho 'policy database unreachable' >&2\nexit 2\n"
    )
    r, _ = run(sandbox, host, "--policy-script", str(failing))
    assert r.returncode == 125
    assert r.stderr.strip() == (
        f"lark-agent: error: policy script {failing} failed (exit 2): policy database unreachable"
    )
    garbage = script(sandbox, "garbage", "#!/bin/sh\necho 'LarkBridgeDevice = \"eth0\"'\n")
    r, _ = run(sandbox, host, "--policy-script", str(garbage))
    assert r.returncode == 125
    assert r.stderr.strip() == (
        f"lark-agent: error: policy script {garbage} printed LarkBridgeDevice; it may set only "
        "LarkNetworkType, LarkAddressType, LarkNetworkAccounting"
    )
    slow = script(sandbox, "slow", "#!/bin/sh\nsleep 30\n")
    r, _ = run(sandbox, host, "--policy-script", str(slow), "--script-timeout", "1")
    assert r.returncode == 125
    assert "did not finish within 1 s and was killed" in r.stderr
    assert sandbox.leftovers() == before


def test_hostile_job_ad_values_change_nothing(sandbox, host):
    """Names, devices, pools, scripts and shell metacharacters from the job side: the job
    runs NATed from the admin's pool under a name Lark derived itself."""
    job_ad = (
        'LarkBridgeDevice = "uplink"\nLarkBridgeName = "$(reboot)"\n'
        'LARK_LOCAL_NETWORK = "10.77.0.0/24"\nLarkStartupScript = "/bin/sh"\n'
        'LarkIptableName = "INPUT"\nLarkExternalInterface = "uplink"\n'
        'ClusterId = "1; rm -rf /"\nProcId = 0\nLarkInnerAddressIPv4 = "10.77.0.1"\n'
    )
    path = sandbox.tmp / "job.ad"
    path.write_text(job_ad)
    update = sandbox.tmp / "update.ad"
    r = sandbox.run_agent(
        host, "--user", "nobody", "--job-ad", str(path), "--update-ad", str(update), "--", "true"
    )
    assert r.returncode == 0, r.stderr
    ad = read_update_ad(update)
    assert ad["LarkNetworkType"] == "nat" and ad["LarkInnerAddressIPv4"].startswith("192.168.181.")
    assert ad["LarkIptableName"].startswith("LARK_p") and ad["LarkExternalInterface"].startswith(
        "e_p"
    )
