"""What HTCondor sees of Lark: STARTD_CRON attributes, the starter's files and variables."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import classad2
from sandbox import SITE_ADDR, sh
from test_chirp import COOKIE as CHIRP_COOKIE
from test_chirp import job_scratch, start_fake_starter
from test_scripts import recorder


def startd_attrs(sandbox, host, *flags: str) -> dict:
    lock = ("--lock-dir", str(sandbox.lock_dir))
    argv = sandbox.agent_argv(host, *lock, *flags, verb="startd-attrs")
    out = sh(*argv[2:], netns=host.netns).stdout
    return dict(classad2.parseOne(out, classad2.ParserType.Old).items())


def test_startd_attrs_say_what_the_node_offers(sandbox, host):
    attrs = startd_attrs(sandbox, host)
    assert attrs["HasLark"] is True and attrs["LarkNetworkTypes"] == "nat,none"
    assert attrs["LarkLocalAddressesFree"] == 126 and attrs["LarkBridgeAvailable"] is False
    assert attrs["LarkDefaultNetworkType"] == "nat" and attrs["LarkFirewallBackend"] == "nftables"
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


NOBODY = 65534
JOB = (
    "import os, socket, sys\n"
    "me = socket.create_connection((sys.argv[1], 8080)).getsockname()[0]\n"
    "print(os.getuid(), os.environ.get('FOO'), os.getcwd(), me, sep='|')\n"
)


def starter(sandbox, ads_text: dict[str, str]) -> tuple[os.PathLike, dict[str, str]]:
    """A scratch dir owned by the job user with the starter's files, and the job's env."""
    scratch = sandbox.tmp / "scratch"
    scratch.mkdir(exist_ok=True)
    os.chown(scratch, NOBODY, NOBODY)
    sandbox.tmp.chmod(0o711)  # the job user may reach its scratch dir, and nothing else here
    for name, text in ads_text.items():
        path = scratch / name
        path.write_text(text)
        os.chown(path, NOBODY, NOBODY)
    env = {
        "PATH": "/usr/bin:/bin",
        "FOO": "bar baz",
        "_CONDOR_SCRATCH_DIR": str(scratch),
        "_CONDOR_JOB_AD": str(scratch / ".job.ad"),
        "_CONDOR_MACHINE_AD": str(scratch / ".machine.ad"),
        "_CONDOR_WRAPPER_ERROR_FILE": str(scratch / ".wrapper_error"),
    }
    return scratch, env


def wrap_command(
    sandbox, host, job_env: dict[str, str], *job: str, config: str = "", sudo_env=None
):
    """What sudo does for lark-job-wrapper: a reset environment, SUDO_* set, fd 3 kept.
    Returns (argv, env, fd) for subprocess; ``fd`` is the read end of the job's environment."""
    path = sandbox.tmp / "condor_config"
    path.write_text(
        f"LARK_STATE_DIR = {sandbox.state_dir}\nLARK_LOCK_DIR = {sandbox.lock_dir}\n"
        f"LARK_LOG_FILE = {sandbox.log_file}\n"
        # htcondor2 resolves the host's name when it loads; a sandbox has no DNS
        "NO_DNS = true\nDEFAULT_DOMAIN_NAME = lark.invalid\n" + config
    )
    payload = b"".join(f"{k}={v}".encode() + b"\0" for k, v in job_env.items())
    read, write = os.pipe()
    os.write(write, payload)
    os.close(write)
    env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "SUDO_UID": str(NOBODY),
        "SUDO_GID": str(NOBODY),
        "SUDO_USER": "nobody",
        "CONDOR_CONFIG": str(path),
        **(sudo_env or {}),
    }
    argv = ["nsenter", f"--net=/run/netns/{host.netns}", sys.executable, "-I", "-m"]
    argv += ["lark_async.cli", "wrap", "--", *job]
    return argv, env, read


def start_wrap(sandbox, host, job_env, *job: str, cwd=None, config: str = "", sudo_env=None):
    argv, env, read = wrap_command(sandbox, host, job_env, *job, config=config, sudo_env=sudo_env)
    try:
        return subprocess.Popen(
            argv,
            env=env,
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            pass_fds=(read, 3),
            preexec_fn=lambda: os.dup2(read, 3),
        )
    finally:
        os.close(read)


def wrap(sandbox, host, job_env, *job: str, cwd=None, config: str = "", sudo_env=None):
    proc = start_wrap(sandbox, host, job_env, *job, cwd=cwd, config=config, sudo_env=sudo_env)
    try:
        out, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


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
    r = wrap(sandbox, host, env, "/usr/bin/python3", "-I", "-c", JOB, SITE_ADDR, cwd=scratch)
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


def test_with_an_io_proxy_the_attributes_go_to_the_job_ad_by_chirp(sandbox, host):
    """A stand-in for the starter's chirp server (the protocol htcondor2.htchirp speaks)."""
    port, record = start_fake_starter(sandbox, host)
    scratch = job_scratch(sandbox, f"127.0.0.1 {port} {CHIRP_COOKIE}\n")
    r = sandbox.run_agent(
        host,
        *sandbox.who(),
        "--accounting-interval",
        "0.2",
        "--",
        "/usr/bin/python3",
        "-I",
        "-c",
        "import sys, time, urllib.request; urllib.request.urlopen(sys.argv[1]).read(); "
        "time.sleep(0.5)",
        sandbox.url("1m"),
        env={"_CONDOR_SCRATCH_DIR": str(scratch)},
    )
    assert r.returncode == 0, r.stderr
    text = (scratch / ".lark.update.ad").read_text()
    final = dict(classad2.parseOne(text, classad2.ParserType.Old).items())
    pushed: dict = {}
    for line in record.read_text().splitlines():
        if line.startswith("attr "):
            name, value = line.removeprefix("attr ").split(" = ", 1)
            pushed[name] = value
    assert int(pushed["NetworkIncoming"]) == final["NetworkIncoming"] > 1_000_000
    assert "NetworkOutgoing" in pushed and "AverageBandwidthUsageIncoming" in pushed
    assert not any(name.startswith("Lark") for name in pushed)
