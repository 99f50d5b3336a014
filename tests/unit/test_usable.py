"""What decides ``LarkUsable``: no_new_privs in /proc/self/status, a read-only cgroup2 mount
where the agent's cgroup would be, and the one agent path the shipped files name."""

from __future__ import annotations

from pathlib import Path

import pytest

from lark_async.backends import usable

STATUS = "Name:\tpython3\nUmask:\t0022\nState:\tR (running)\nNoNewPrivs:\t{}\nSeccomp:\t0\n"
CONTRIB = Path(__file__).resolve().parents[2] / "contrib" / "htcondor"


@pytest.mark.parametrize(
    ("status", "nnp"),
    [
        (STATUS.format(0), False),
        (STATUS.format(1), True),
        ("Name:\tx\n", False),  # a kernel older than 4.10 has no such line
        ("", False),
        ("NoNewPrivs:1\n", True),
        ("XNoNewPrivs:\t1\nNoNewPrivs:\t0\n", False),  # the key, not a suffix of another
    ],
)
def test_no_new_privs_is_read_from_proc_status(status, nnp):
    assert usable.parse_no_new_privs(status) is nnp


V2 = "41 31 0:38 / /sys/fs/cgroup rw,relatime - cgroup2 cgroup2 rw\n"
V2_RO = "41 31 0:38 / /sys/fs/cgroup ro,nosuid,relatime master:9 - cgroup2 cgroup2 rw\n"
V1_ONLY = "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n"
# a read-only subtree elsewhere, and the hierarchy read-write where this process is
SPLIT = V2 + "50 1 0:38 /other /mnt/other ro - cgroup2 cgroup2 rw\n"


@pytest.mark.parametrize(
    ("mountinfo", "proc_cgroup", "read_only"),
    [
        (V2, "0::/system.slice/condor.service\n", None),
        (V2_RO, "0::/system.slice/condor.service\n", Path("/sys/fs/cgroup")),
        (V2_RO, "0::/\n", Path("/sys/fs/cgroup")),  # a container's own cgroup namespace
        (V1_ONLY, "1:cpu:/\n", None),  # no cgroup v2 at all: Lark works without it
        ("", "", None),
        (V2_RO, "0::/gone (deleted)\n", None),
        (SPLIT, "0::/condor\n", None),
        (SPLIT, "0::/other/job\n", Path("/mnt/other")),
    ],
)
def test_only_a_read_only_mount_showing_our_cgroup_makes_the_node_unusable(
    mountinfo, proc_cgroup, read_only
):
    assert usable.derive_read_only_cgroup(mountinfo, proc_cgroup) == read_only


@pytest.mark.parametrize("name", ["lark-job-wrapper", "50-lark.sudoers", "50-lark.config"])
def test_the_shipped_files_name_the_agent_where_the_check_looks(name):
    assert usable.AGENT_PATH in (CONTRIB / name).read_text()
