"""Where the agent goes and where its job stays, from what /proc says (backends/placement.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from lark_async.backends import placement
from lark_async.backends.placement import Hierarchy
from lark_async.decide import settings
from lark_async.errors import ConfigError

# this test machine: v1 controllers beside cgroup v2 at /sys/fs/cgroup/unified
HYBRID = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
99 31 0:32 / /mnt/memory\\040again rw,relatime - cgroup cgroup rw,memory
"""
HYBRID_SELF = """\
9:name=systemd:/
4:memory:/process_api/be60345791180220170a69615b01e698
3:cpuset:/
2:cpuacct:/
1:cpu:/
0::/
"""
# EL8: cpu and cpuacct in one hierarchy, with options that are not controllers
EL8 = (
    "30 25 0:27 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:8 - cgroup cgroup "
    "rw,cpu,cpuacct\n"
    "31 25 0:28 / /sys/fs/cgroup/pids rw shared:9 - cgroup cgroup rw,noprefix,pids,"
    "release_agent=/x\n"
)
# Debian 12 / EL9: cgroup v2 only, with optional fields (shared:N) before the separator
UNIFIED = (
    "22 1 259:2 / / rw,relatime shared:1 - ext4 /dev/nvme0n1p2 rw,errors=remount-ro\n"
    "26 21 0:23 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 "
    "rw,nsdelegate,memory_recursiveprot\n"
)
# a container: a subtree of the host's hierarchy bind-mounted at /sys/fs/cgroup
CONTAINER = "1200 1100 0:23 /docker/abc /sys/fs/cgroup ro,nosuid master:9 - cgroup2 cgroup rw\n"

V2 = Hierarchy(2, frozenset(), Path("/sys/fs/cgroup"), "/")
MEMORY = Hierarchy(1, frozenset({"memory"}), Path("/sys/fs/cgroup/memory"), "/")


def test_hierarchies_are_read_from_mountinfo_each_once():
    found = placement.parse_hierarchies(HYBRID)
    assert [(h.version, sorted(h.controllers), str(h.point)) for h in found] == [
        (1, ["cpu"], "/sys/fs/cgroup/cpu"),
        (1, ["cpuacct"], "/sys/fs/cgroup/cpuacct"),
        (1, ["cpuset"], "/sys/fs/cgroup/cpuset"),
        (1, ["memory"], "/sys/fs/cgroup/memory"),  # its second mount is not another hierarchy
        (1, ["freezer"], "/sys/fs/cgroup/freezer"),
        (1, ["name=systemd"], "/sys/fs/cgroup/systemd"),
        (2, [], "/sys/fs/cgroup/unified"),
    ]
    assert [sorted(h.controllers) for h in placement.parse_hierarchies(EL8)] == [
        ["cpu", "cpuacct"],
        ["pids"],
    ]
    assert placement.parse_hierarchies(UNIFIED) == [V2]
    assert placement.parse_hierarchies(CONTAINER) == [
        Hierarchy(2, frozenset(), Path("/sys/fs/cgroup"), "/docker/abc")
    ]
    assert placement.parse_hierarchies("") == []
    assert placement.parse_hierarchies("garbage\n - cgroup2\n1 2 3 - cgroup\n") == []
    # a v1 mount line without controllers names no hierarchy
    assert placement.parse_hierarchies("9 1 0:9 / /a rw - cgroup none rw,xattr\n") == []
    # escapes in the mount point; the type is the field after the lone "-"
    line = r"9 1 0:9 / /mnt/my\040cg rw a:1 b:2 - cgroup2 none rw" + "\n"
    assert placement.parse_hierarchies(line)[0].point == Path("/mnt/my cg")


def test_a_process_cgroups_are_keyed_by_their_controllers():
    assert placement.parse_memberships(HYBRID_SELF) == {
        frozenset({"name=systemd"}): "/",
        frozenset({"memory"}): "/process_api/be60345791180220170a69615b01e698",
        frozenset({"cpuset"}): "/",
        frozenset({"cpuacct"}): "/",
        frozenset({"cpu"}): "/",
        frozenset(): "/",
    }
    assert placement.parse_memberships("5:cpu,cpuacct:/htcondor/x\n") == {
        frozenset({"cpu", "cpuacct"}): "/htcondor/x"
    }
    gone = "0::/system.slice/gone.scope (deleted)\n0:x:/a\n1::/b\nbad\n0::relative\n"
    assert placement.parse_memberships(gone) == {frozenset({"x"}): "/a"}


@pytest.mark.parametrize(
    ("hierarchy", "path", "where"),
    [
        (V2, "/", Path("/sys/fs/cgroup")),
        (V2, "/system.slice/condor.service", Path("/sys/fs/cgroup/system.slice/condor.service")),
        (Hierarchy(2, frozenset(), Path("/c"), "/docker/abc"), "/docker/abc", Path("/c")),
        (Hierarchy(2, frozenset(), Path("/c"), "/docker/abc"), "/docker/abc/j", Path("/c/j")),
        (Hierarchy(2, frozenset(), Path("/c"), "/docker/abc"), "/docker/abcd", None),
        (Hierarchy(2, frozenset(), Path("/c"), "/docker/abc"), "/", None),
    ],
)
def test_a_cgroup_is_found_under_the_mount_that_shows_it(hierarchy, path, where):
    assert placement.under(hierarchy, path) == where


@pytest.mark.parametrize(
    ("start", "root"),
    [
        # HTCondor 24.x and later: the job in <X>.scope, limits, freeze and kill at <X>.slice
        ("/system.slice/condor.service/htcondor/e_slot1.slice/e_slot1.scope",
         "/system.slice/condor.service/htcondor/e_slot1.slice"),
        # 24.0, and v1: the job's cgroup is where it starts
        ("/s/condor.service/htcondor/e_slot1", "/s/condor.service/htcondor/e_slot1"),
        ("/htcondor/e_slot1", "/htcondor/e_slot1"),
        # a scope in another slice is a scope, not HTCondor's job
        ("/user.slice/session-4.scope", "/user.slice/session-4.scope"),
        ("/a.slice/b.scope", "/a.slice/b.scope"),
        ("/b.scope", "/b.scope"),
        ("/", "/"),
    ],
)  # fmt: skip
def test_the_job_cgroup_is_the_slice_around_htcondors_scope(start, root):
    assert placement.job_root(start) == root


@pytest.mark.parametrize(
    ("start", "setting", "home"),
    [
        ("/c/htcondor/x.slice/x.scope", "../lark.agents", "/c/htcondor/lark.agents"),
        ("/htcondor/x", "../lark.agents", "/htcondor/lark.agents"),
        ("/htcondor/x", "/lark.slice/agents", "/lark.slice/agents"),
        ("/htcondor/x", "../../a/./b/", "/a/b"),
        ("/htcondor/x", "..", "/htcondor"),  # the parent: outside the job's cgroup
        ("/htcondor/x", "/", "/"),
    ],
)
def test_the_agent_cgroup_is_resolved_from_the_job_cgroup(start, setting, home):
    assert placement.resolve_home(start, setting) == home


@pytest.mark.parametrize(
    ("start", "setting", "error"),
    [
        ("/htcondor/x", "../../../up", "climbs above the hierarchy's root"),
        ("/htcondor/x", "agents", "is inside the job.s cgroup"),
        ("/htcondor/x", ".", "is inside"),
        ("/htcondor/x", "/htcondor/x/sub", "is inside"),
        ("/c/x.slice/x.scope", "agents", "is inside"),  # in the slice: killed with the job
        ("/c/x.slice/x.scope", "/c/x.slice/y", "is inside"),
        ("/htcondor/x", "/htcondor/x", "is inside"),
    ],
)
def test_an_agent_cgroup_in_reach_of_the_starter_is_refused(start, setting, error):
    with pytest.raises(ValueError, match=error):
        placement.resolve_home(start, setting)


def test_the_hierarchies_the_agent_leaves():
    def v1(*names: str) -> Hierarchy:
        return Hierarchy(1, frozenset(names), Path("/x"), "/")

    assert placement.moved(V2) and placement.moved(MEMORY)
    assert placement.moved(v1("freezer")) and placement.moved(v1("cpu", "cpuacct"))
    assert not placement.moved(v1("name=systemd"))
    assert not placement.moved(v1("cpuset")) and not placement.moved(v1("devices"))
    assert not placement.moved(v1("pids")) and not placement.moved(v1("blkio"))


def test_a_stopped_job_is_seen_whatever_its_command_name():
    """SIGSTOP is HTCondor's suspend without cgroups; the state follows the last ')'."""
    proc = subprocess.Popen(["sleep", "30"], executable="sleep", stdin=subprocess.DEVNULL)
    try:
        assert not placement.stopped(proc.pid)
        os.kill(proc.pid, signal.SIGSTOP)
        deadline = time.monotonic() + 5
        while not placement.stopped(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert placement.stopped(proc.pid)
        os.kill(proc.pid, signal.SIGCONT)
        while placement.stopped(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not placement.stopped(proc.pid)
    finally:
        proc.kill()
        proc.wait()
    assert not placement.stopped(proc.pid)  # gone


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        ("none", None),
        ("NONE", None),
        ("../lark.agents", "../lark.agents"),
        ("/lark.slice/agents", "/lark.slice/agents"),
        (" ../x ", "../x"),
    ],
)
def test_the_agent_cgroup_setting(value, parsed):
    assert settings.config_setting({"LARK_AGENT_CGROUP": value}, "agent_cgroup") == parsed


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ("", "is not none or a cgroup path"),
        ("/", "is not none or a cgroup path"),
        ("./.", "is not none or a cgroup path"),
        ("../lark-x", "'lark-x', which is not a name for the agent's own cgroup"),  # a job's
        ("/a/cgroup.procs", "'cgroup.procs'"),
        ("../a\nb", "which is not a name"),
        ("a/" * 300, "is not none or a cgroup path"),
    ],
)
def test_a_bad_agent_cgroup_setting_is_one_line(value, error):
    with pytest.raises(ConfigError, match=error) as caught:
        settings.config_setting({"LARK_AGENT_CGROUP": value}, "agent_cgroup")
    assert str(caught.value).startswith("LARK_AGENT_CGROUP")


def test_the_agent_cgroup_default():
    assert settings.config_setting({}, "agent_cgroup") == "../lark.agents"
