"""Whether this node's starter can run jobs through Lark: ``startd-attrs``'s ``LarkUsable``.

A node that offers Lark but cannot start a job through it fails every job it matches; one
that says ``LarkUsable = false`` (and why, in ``LarkUnusableReason``) stops matching them
until its admin acts. Each check is one way the wrapper's path breaks on a real node. The
STARTD_CRON job that asks runs as the startd's child, so it shares what the starter's jobs
inherit from the startd: no_new_privs, the cgroup mounts, sudo and its rules.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from . import cgroup

# The agent as the job wrapper starts it: contrib/htcondor/lark-job-wrapper, 50-lark.sudoers
# and 50-lark.config name this path, and README.rst installs the link there.
AGENT_PATH = "/usr/local/sbin/lark-agent"
SUDO_BOUND_S = 5.0  # sudo may wait on a name service (LDAP, sssd) that does not answer
_REASON_CHARS = 160


# -- pure: what /proc says ----------------------------------------------------


def parse_no_new_privs(status: str) -> bool:
    """Whether /proc/PID/status says ``NoNewPrivs: 1`` (proc(5), Linux 4.10+)."""
    for line in status.splitlines():
        key, _, value = line.partition(":")
        if key == "NoNewPrivs":
            return value.strip() == "1"
    return False


def derive_read_only_cgroup(mountinfo: str, proc_cgroup: str) -> Path | None:
    """The read-only cgroup2 mount that shows this process's cgroup, if that is where it is.

    The agent starts in the job's cgroup (the starter puts the wrapper there, beside where
    this process is) and must make cgroups of its own next to it; on a read-only mount it
    cannot, so HTCondor's freeze and ``cgroup.kill`` of the job would hit the agent too. No
    cgroup v2 at all is no reason: Lark then finds the job's processes through its network
    namespace, as it always did.
    """
    path = cgroup.parse_v2_path(proc_cgroup)
    mount = cgroup.derive_mount(cgroup.parse_v2_mounts(mountinfo), path) if path else None
    return mount.point if mount is not None and mount.read_only else None


def _first_line(text: str) -> str:
    line = next((s.strip() for s in text.splitlines() if s.strip()), "")
    line = line.removeprefix("sudo: ")
    return line if len(line) <= _REASON_CHARS else line[: _REASON_CHARS - 3] + "..."


# -- the node -----------------------------------------------------------------


def check_no_new_privs() -> str | None:
    """no_new_privs is inherited and never cleared; HTCondor's master sets it on every
    daemon, and so every job, when DISABLE_SETUID = true, and then sudo cannot become root."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return None
    if parse_no_new_privs(status):
        return "no_new_privs is set (HTCondor's DISABLE_SETUID = true?), so sudo cannot work"
    return None


def check_sudo_rule(bound_s: float = SUDO_BOUND_S) -> str | None:
    """Whether sudo lets an ordinary user run ``AGENT_PATH wrap ...`` as root, as the
    wrapper asks. ``sudo -l COMMAND`` answers for exactly that command line (exit 0 when
    allowed; "command not found" when the agent's link is missing). Root asks for nobody,
    the most ordinary user there is; anyone else asks for itself."""
    sudo = shutil.which("sudo")
    if sudo is None:
        return "sudo is not installed"
    who = ["-U", "nobody"] if os.geteuid() == 0 else []
    argv = [sudo, "-n", "-l", *who, AGENT_PATH, "wrap", "--"]
    try:
        done = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=bound_s,
            env={**os.environ, "LC_ALL": "C"},
        )
    except subprocess.TimeoutExpired:
        return f"sudo -l gave no answer within {bound_s:g} s"
    except OSError as exc:
        return f"cannot run {sudo}: {exc.strerror}"
    if done.returncode == 0:
        return None
    why = _first_line(done.stderr)
    return f"sudo does not let users run {AGENT_PATH} wrap" + (f" ({why})" if why else "")


def check_cgroup() -> str | None:
    """A read-only cgroup2 mount where the agent's cgroup would be (see
    ``derive_read_only_cgroup``)."""
    try:
        mountinfo = Path("/proc/self/mountinfo").read_text()
        proc_cgroup = Path("/proc/self/cgroup").read_text()
    except OSError:
        return None
    point = derive_read_only_cgroup(mountinfo, proc_cgroup)
    return f"cgroup v2 at {point} is mounted read-only" if point is not None else None


def find_problems() -> list[str]:
    """Every failed check, in a fixed order; empty when jobs can run through Lark."""
    checks = (check_sudo_rule, check_no_new_privs, check_cgroup)
    return [why for why in (check() for check in checks) if why is not None]
