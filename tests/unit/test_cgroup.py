"""What /proc says about cgroups: the v2 mount, a process's cgroup, its events, job names."""

from __future__ import annotations

from pathlib import Path

import pytest

from lark_async.backends import cgroup
from lark_async.backends.cgroup import Mount

# this test machine: v1 controllers beside cgroup v2 at /sys/fs/cgroup/unified
HYBRID = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""
HYBRID_SELF = """\
9:name=systemd:/
4:memory:/process_api/be60345791180220170a69615b01e698
1:cpu:/
0::/
"""
# Debian 12 / EL9: cgroup v2 only, with optional fields (shared:N) before the separator
UNIFIED = (
    "22 1 259:2 / / rw,relatime shared:1 - ext4 /dev/nvme0n1p2 rw,errors=remount-ro\n"
    "26 21 0:23 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 "
    "rw,nsdelegate,memory_recursiveprot\n"
)
UNIFIED_SELF = "0::/system.slice/condor.service\n"
# a container: a subtree of the host's hierarchy bind-mounted at /sys/fs/cgroup
CONTAINER = "1200 1100 0:23 /docker/abc /sys/fs/cgroup ro,nosuid master:9 - cgroup2 cgroup rw\n"


@pytest.mark.parametrize(
    ("mountinfo", "mounts"),
    [
        (HYBRID, [Mount(Path("/sys/fs/cgroup/unified"), "/")]),
        (UNIFIED, [Mount(Path("/sys/fs/cgroup"), "/")]),
        (CONTAINER, [Mount(Path("/sys/fs/cgroup"), "/docker/abc", read_only=True)]),
        (HYBRID.replace("cgroup2 cgroup2", "tmpfs tmpfs"), []),  # a v1-only node
        ("", []),
        ("garbage\n - cgroup2\n1 2 3 - cgroup2\n", []),  # too few fields: not a mount line
        # octal escapes in a mount point (a space); " - " in a path is always escaped
        (
            r"9 1 0:9 / /mnt/my\040cg rw shared:2 - cgroup2 none rw" + "\n",
            [Mount(Path("/mnt/my cg"), "/")],
        ),
        # no optional fields, several of them: the type is the field after the lone "-"
        ("9 1 0:9 / /a rw a:1 b:2 c:3 - cgroup2 none rw\n", [Mount(Path("/a"), "/")]),
        ("9 1 0:9 / /a rw - cgroup2-not none rw\n", []),
    ],
)
def test_cgroup2_mounts_are_read_from_mountinfo(mountinfo, mounts):
    assert cgroup.parse_v2_mounts(mountinfo) == mounts


@pytest.mark.parametrize(
    ("text", "path"),
    [
        (HYBRID_SELF, "/"),
        (UNIFIED_SELF, "/system.slice/condor.service"),
        ("4:memory:/x\n1:cpu:/\n", None),  # v1 only
        ("0::/system.slice/gone.scope (deleted)\n", None),
        ("0::relative\n", None),
        ("", None),
        ("10::/not-v2\n0::/a/b\n", "/a/b"),
    ],
)
def test_a_process_cgroup_v2_path_is_its_0_line(text, path):
    assert cgroup.parse_v2_path(text) == path


@pytest.mark.parametrize(
    ("options", "super_options", "read_only"),
    [
        ("rw,nosuid,nodev,noexec,relatime", "rw,nsdelegate,memory_recursiveprot", False),
        ("ro,nosuid,nodev,noexec,relatime", "rw", True),  # a read-only bind (a container)
        ("rw,relatime", "ro", True),  # the file system itself read-only
        ("rw,errors=remount-ro", "rw,errors=remount-ro", False),  # "ro" inside an option
        ("rw", "", False),
    ],
)
def test_a_mount_is_read_only_when_either_option_list_says_ro(options, super_options, read_only):
    assert cgroup.parse_read_only(options, super_options) is read_only


def test_the_mount_that_shows_a_cgroup_carries_its_read_only_flag():
    rw_root = "9 1 0:9 / /sys/fs/cgroup rw shared:2 - cgroup2 cgroup2 rw\n"
    ro_subtree = "10 1 0:9 /jobs /mnt/jobs ro shared:2 - cgroup2 cgroup2 rw\n"
    mounts = cgroup.parse_v2_mounts(rw_root + ro_subtree)
    assert cgroup.derive_mount(mounts, "/jobs/a") == Mount(Path("/mnt/jobs"), "/jobs", True)
    assert cgroup.derive_mount(mounts, "/other") == Mount(Path("/sys/fs/cgroup"), "/", False)
    assert cgroup.derive_mount(cgroup.parse_v2_mounts(CONTAINER), "/") is None


def test_cgroup_events_are_keys_and_counts():
    assert cgroup.parse_events("populated 1\nfrozen 0\n") == {"populated": 1, "frozen": 0}
    assert cgroup.parse_events("populated\nx y\n\n") == {}


@pytest.mark.parametrize(
    ("dirname", "job"),
    [
        ("lark-s1_2-123_0", "s1_2-123_0"),
        ("lark-hqzv5k2m4x7ab", "hqzv5k2m4x7ab"),
        ("lark-cleanup.service", None),  # the shipped systemd unit's cgroup is not a job's
        ("lark-agent.scope", None),
        ("lark-", None),
        ("lark-../x", None),
        ("lark-" + "x" * 14, None),  # longer than any job name
        ("system.slice", None),
        ("LARK-x", None),
    ],
)
def test_only_lark_job_names_are_job_cgroups(dirname, job):
    assert cgroup.job_of(dirname) == job


def test_discard_refuses_what_is_not_a_job_cgroup(tmp_path):
    """A damaged state record cannot make cleanup remove an arbitrary directory."""
    with pytest.raises(cgroup.KernelError, match="not a Lark job's cgroup"):
        cgroup.discard(tmp_path)
    job = tmp_path / "lark-x"
    job.mkdir()
    with pytest.raises(cgroup.KernelError, match="not a cgroup"):
        cgroup.discard(job)
    assert job.is_dir()
    assert cgroup.discard(tmp_path / "lark-gone") == 0  # missing is done
