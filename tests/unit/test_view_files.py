"""backends/view.py's files (written in place, never through a link, readable by the job's
user) and job/world.py's reading of the node's and the admin's files (root's only), in a
tmp_path: no mount namespace, nothing in the node's /etc."""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import os
import socket
import stat
from pathlib import Path

import pytest

from lark_async.backends import view
from lark_async.backends.view import TARGETS, ViewFiles, discard, read_node_file, view_dir
from lark_async.decide.modes import NetworkType
from lark_async.decide.plan import Bridge, JobNetwork, derive_plan
from lark_async.decide.policy import Grant
from lark_async.decide.settings import Settings
from lark_async.errors import ConfigError, ResourceError
from lark_async.job import world

NOBODY = 65534
root_only = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to own files")


@pytest.fixture
def umask077():
    old = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


# --- ViewFiles ----------------------------------------------------------------------------


def test_the_view_directory_is_named_after_the_job(tmp_path):
    assert view_dir(tmp_path, "s1-123_0") == tmp_path / "s1-123_0.view"
    assert dict(TARGETS) == {
        "resolv.conf": Path("/etc/resolv.conf"),
        "hosts": Path("/etc/hosts"),
    }


def test_write_makes_the_directory_and_a_file_the_job_can_read_whatever_the_umask(
    tmp_path, umask077
):
    files = ViewFiles(tmp_path / "state" / "j.view")
    assert files.write("resolv.conf", "nameserver 10.0.0.1\n") is True
    path = files.dir / "resolv.conf"
    assert path.read_text() == "nameserver 10.0.0.1\n"
    assert mode(path) == 0o644
    assert stat.S_ISREG(os.lstat(path).st_mode)


def test_write_of_the_same_text_changes_nothing(tmp_path):
    files = ViewFiles(tmp_path / "j.view")
    assert files.write("hosts", "10.0.0.5\tjob7\n") is True
    path = files.dir / "hosts"
    before = os.stat(path)
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    assert files.write("hosts", "10.0.0.5\tjob7\n") is False
    after = os.stat(path)
    assert after.st_ino == before.st_ino
    assert after.st_mtime_ns == 1_000_000_000
    assert path.read_text() == "10.0.0.5\tjob7\n"


def test_a_rewrite_keeps_the_inode_and_truncates(tmp_path):
    """The bind mount holds the inode: a new file would never reach the job."""
    files = ViewFiles(tmp_path / "j.view")
    path = files.dir / "resolv.conf"
    files.write("resolv.conf", "nameserver 10.0.0.1\n")
    ino = os.stat(path).st_ino
    assert files.write("resolv.conf", "nameserver 10.0.0.1\nnameserver 10.0.0.2\n") is True
    assert path.read_text() == "nameserver 10.0.0.1\nnameserver 10.0.0.2\n"
    assert files.write("resolv.conf", "nameserver 10.0.0.3\n") is True
    assert path.read_bytes() == b"nameserver 10.0.0.3\n"
    assert os.stat(path).st_ino == ino


def test_a_shorter_text_that_begins_the_old_one_is_still_a_change(tmp_path):
    files = ViewFiles(tmp_path / "j.view")
    files.write("resolv.conf", "nameserver 10.0.0.1\nnameserver 10.0.0.2\n")
    assert files.write("resolv.conf", "nameserver 10.0.0.1\n") is True
    assert (files.dir / "resolv.conf").read_bytes() == b"nameserver 10.0.0.1\n"
    assert files.write("resolv.conf", "") is True
    assert (files.dir / "resolv.conf").read_bytes() == b""


def test_a_rewrite_makes_a_file_readable_again(tmp_path):
    files = ViewFiles(tmp_path / "j.view")
    files.dir.mkdir()
    path = files.dir / "hosts"
    path.write_text("old\n")
    path.chmod(0o600)
    assert files.write("hosts", "new\n") is True
    assert mode(path) == 0o644


def test_text_is_written_as_utf8(tmp_path):
    files = ViewFiles(tmp_path / "j.view")
    files.write("hosts", "# caf\u00e9\n")
    assert (files.dir / "hosts").read_bytes() == "# caf\u00e9\n".encode()
    assert files.write("hosts", "# caf\u00e9\n") is False


def test_a_new_empty_file_is_readable_whatever_the_umask(tmp_path, umask077):
    files = ViewFiles(tmp_path / "j.view")
    files.write("resolv.conf", "")
    assert mode(files.dir / "resolv.conf") == 0o644


@pytest.mark.parametrize("dangling", [False, True], ids=["to-a-file", "dangling"])
def test_a_symlink_planted_at_the_file_is_refused(tmp_path, dangling):
    files = ViewFiles(tmp_path / "j.view")
    files.dir.mkdir()
    target = tmp_path / "elsewhere"
    if not dangling:
        target.write_text("someone else's\n")
        target.chmod(0o600)
    (files.dir / "resolv.conf").symlink_to(target)
    with pytest.raises(ResourceError, match=r"write the job's resolv.conf .*resolv.conf"):
        files.write("resolv.conf", "nameserver 10.0.0.1\n")
    assert os.path.islink(files.dir / "resolv.conf")
    if dangling:
        assert not os.path.lexists(target)
    else:
        assert target.read_text() == "someone else's\n"
        assert mode(target) == 0o600


def test_a_directory_at_the_file_is_refused(tmp_path):
    files = ViewFiles(tmp_path / "j.view")
    (files.dir / "hosts").mkdir(parents=True)
    with pytest.raises(ResourceError, match="write the job's hosts"):
        files.write("hosts", "x\n")


def test_only_the_two_files_are_written(tmp_path):
    files = ViewFiles(tmp_path / "j.view")
    with pytest.raises(AssertionError):
        files.write("../passwd", "x\n")
    assert not files.dir.exists()


def test_binds_are_the_files_written_so_far(tmp_path):
    files = ViewFiles(tmp_path / "j.view")
    assert files.binds() == []
    files.write("hosts", "x\n")
    assert files.binds() == [(files.dir / "hosts", Path("/etc/hosts"))]
    files.write("resolv.conf", "")
    assert files.binds() == [
        (files.dir / "resolv.conf", Path("/etc/resolv.conf")),
        (files.dir / "hosts", Path("/etc/hosts")),
    ]


def test_discard_removes_the_files_and_the_directory_and_is_idempotent(tmp_path):
    files = ViewFiles(tmp_path / "j.view")
    files.write("resolv.conf", "a\n")
    files.write("hosts", "b\n")
    discard(files.dir)
    assert not files.dir.exists()
    assert tmp_path.exists()
    discard(files.dir)
    discard(tmp_path / "never.view")
    assert files.binds() == []


def test_discard_of_a_directory_with_one_file(tmp_path):
    files = ViewFiles(tmp_path / "j.view")
    files.write("hosts", "b\n")
    discard(files.dir)
    assert not files.dir.exists()
    files.dir.mkdir()
    discard(files.dir)
    assert not files.dir.exists()


def test_a_write_after_discard_starts_afresh(tmp_path):
    files = ViewFiles(tmp_path / "j.view")
    files.write("hosts", "b\n")
    discard(files.dir)
    assert files.write("hosts", "b\n") is True
    assert (files.dir / "hosts").read_text() == "b\n"


# --- read_node_file -----------------------------------------------------------------------


def test_a_node_file_is_read_bounded_and_decoded(tmp_path):
    path = tmp_path / "resolv.conf"
    assert read_node_file(path) is None
    path.write_bytes(b"nameserver 10.0.0.1\n# \xff\n")
    assert read_node_file(path) == "nameserver 10.0.0.1\n# \ufffd\n"
    path.write_bytes(b"#" * (64 * 1024) + b"\nnameserver 10.0.0.9\n")
    assert read_node_file(path) == "#" * (64 * 1024)
    path.write_bytes(b"")
    assert read_node_file(path) == ""


def test_an_unreadable_node_file_is_none_with_a_warning(tmp_path, caplog):
    (tmp_path / "hosts").mkdir()
    with caplog.at_level(logging.WARNING, logger="lark.view"):
        assert read_node_file(tmp_path / "hosts") is None
    assert "cannot read" in caplog.text and "the job gets the node's" in caplog.text


# --- job/world.py: read_sources -----------------------------------------------------------


@pytest.fixture
def etc(tmp_path, monkeypatch):
    """A root's /etc/netns of the test's own, and node files read from a dict, not /etc."""
    netns_etc = tmp_path / "netns"
    netns_etc.mkdir(mode=0o755)
    for parent in (tmp_path, *tmp_path.parents):
        assert os.stat(parent).st_uid == 0 or parent == parent.parent
    monkeypatch.setattr(world, "NETNS_ETC", netns_etc)
    node = {
        Path("/etc/resolv.conf"): "nameserver 127.0.0.53\n",
        Path("/etc/hosts"): "127.0.0.1 localhost\n",
    }
    read: list[Path] = []

    def fake_read(path: Path) -> str | None:
        read.append(path)
        return node.get(path)

    monkeypatch.setattr(view, "read_node_file", fake_read)
    return netns_etc, read


def nat_plan(**changes: object) -> JobNetwork:
    plan = derive_plan(Grant(Settings(), None), "x")
    return dataclasses.replace(plan, **changes)  # type: ignore[arg-type]


def bridge_plan(static: str | None = None, **changes: object) -> JobNetwork:
    bridge = Bridge(
        "br0",
        None,
        ipaddress.IPv4Interface(static) if static else None,
        ipaddress.IPv4Address("10.0.0.1") if static else None,
        10.0,
        1.0,
    )
    return nat_plan(mode=NetworkType.BRIDGE, bridge=bridge, **changes)


def netns_file(etc_dir: Path, plan: JobNetwork, name: str, text: str | bytes) -> Path:
    d = etc_dir / plan.netns
    d.mkdir(mode=0o755, exist_ok=True)
    path = d / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    path.chmod(0o644)
    return path


@root_only
def test_read_sources_of_a_nat_job_without_admin_files(etc):
    _, read = etc
    src = world.read_sources(nat_plan())
    assert src.node_resolv_conf == "nameserver 127.0.0.53\n"
    assert src.node_hosts is None
    assert read == [Path("/etc/resolv.conf")]  # a NAT job keeps the node's hosts
    assert (src.admin_resolv_conf, src.netns_resolv_conf, src.netns_hosts) == (None, None, None)
    assert (src.bridged, src.networked, src.static, src.job_dns) == (False, True, False, None)
    assert src.node_hostname == socket.gethostname()


@root_only
def test_read_sources_of_bridged_and_loopback_only_jobs(etc):
    src = world.read_sources(bridge_plan())
    assert src.node_hosts == "127.0.0.1 localhost\n"
    assert (src.bridged, src.networked, src.static) == (True, True, False)
    dns = (ipaddress.IPv4Address("192.0.2.53"),)
    src = world.read_sources(bridge_plan("10.0.0.5/24", job_dns=dns))
    assert (src.bridged, src.static, src.job_dns) == (True, True, dns)
    src = world.read_sources(nat_plan(mode=NetworkType.NONE))
    assert (src.bridged, src.networked, src.node_hosts) == (False, False, None)


@root_only
def test_read_sources_reads_the_admins_root_files(etc, tmp_path):
    etc_dir, _ = etc
    plan = nat_plan()
    netns_file(etc_dir, plan, "resolv.conf", "nameserver 192.0.2.9\n")
    netns_file(etc_dir, plan, "hosts", b"10.9.9.9 x # \xff\n")
    admin = tmp_path / "job-resolv.conf"
    admin.write_text("nameserver 192.0.2.1\n")
    admin.chmod(0o644)
    src = world.read_sources(dataclasses.replace(plan, job_resolv_conf=admin))
    assert src.admin_resolv_conf == "nameserver 192.0.2.1\n"
    assert src.netns_resolv_conf == "nameserver 192.0.2.9\n"
    assert src.netns_hosts == "10.9.9.9 x # \ufffd\n"


@root_only
def test_an_admin_file_of_exactly_64_kib_is_read_and_one_byte_more_refused(etc):
    etc_dir, _ = etc
    plan = nat_plan()
    text = "#" * (64 * 1024 - 1) + "\n"
    netns_file(etc_dir, plan, "resolv.conf", text)
    assert world.read_sources(plan).netns_resolv_conf == text
    netns_file(etc_dir, plan, "resolv.conf", text + "\n")
    with pytest.raises(ConfigError, match="is over 65536 bytes"):
        world.read_sources(plan)


@root_only
@pytest.mark.parametrize("name", ["resolv.conf", "hosts"])
@pytest.mark.parametrize(
    ("owner", "perm", "why"),
    [
        (NOBODY, 0o644, "is not owned by root"),
        (0, 0o666, "is writable by others than root"),
        (0, 0o646, "is writable by others than root"),
        (0, 0o664, None),  # root's group may write: trusted
    ],
)
def test_a_netns_file_others_could_write_is_refused(etc, name, owner, perm, why):
    etc_dir, _ = etc
    plan = nat_plan()
    path = netns_file(etc_dir, plan, name, "nameserver 192.0.2.9\n")
    os.chown(path, owner, 0 if perm == 0o664 else owner)
    path.chmod(perm)
    if why is None:
        assert world.read_sources(plan) is not None
        return
    with pytest.raises(ConfigError, match=f"/etc/netns file {name} .*{why}"):
        world.read_sources(plan)


@root_only
@pytest.mark.parametrize(("owner", "perm"), [(NOBODY, 0o755), (0, 0o777)])
def test_a_netns_directory_others_could_write_is_refused(etc, owner, perm):
    etc_dir, _ = etc
    plan = nat_plan()
    netns_file(etc_dir, plan, "hosts", "10.9.9.9 x\n")
    os.chown(etc_dir / plan.netns, owner, owner)
    (etc_dir / plan.netns).chmod(perm)
    with pytest.raises(ConfigError, match="directory"):
        world.read_sources(plan)


@root_only
def test_a_netns_symlink_to_a_users_file_is_refused(etc, tmp_path):
    etc_dir, _ = etc
    plan = nat_plan()
    user = tmp_path / "users"
    user.write_text("nameserver 6.6.6.6\n")
    os.chown(user, NOBODY, NOBODY)
    (etc_dir / plan.netns).mkdir()
    (etc_dir / plan.netns / "resolv.conf").symlink_to(user)
    with pytest.raises(ConfigError, match="is not owned by root"):
        world.read_sources(plan)
    (etc_dir / plan.netns / "resolv.conf").unlink()
    (etc_dir / plan.netns / "resolv.conf").symlink_to(tmp_path / "nothing")
    with pytest.raises(ConfigError, match=r"/etc/netns file resolv\.conf"):
        world.read_sources(plan)  # a dangling link is no absent file


@root_only
@pytest.mark.parametrize(
    ("owner", "perm", "why"),
    [(NOBODY, 0o644, "is not owned by root"), (0, 0o666, "is writable by others than root")],
)
def test_a_job_resolv_conf_others_could_write_is_refused(etc, tmp_path, owner, perm, why):
    admin = tmp_path / "job-resolv.conf"
    admin.write_text("nameserver 6.6.6.6\n")
    os.chown(admin, owner, owner)
    admin.chmod(perm)
    with pytest.raises(ConfigError, match=f"LARK_JOB_RESOLV_CONF .*{why}"):
        world.read_sources(nat_plan(job_resolv_conf=admin))


@root_only
def test_a_missing_or_oversized_job_resolv_conf_is_refused(etc, tmp_path):
    admin = tmp_path / "job-resolv.conf"
    with pytest.raises(ConfigError, match="LARK_JOB_RESOLV_CONF"):
        world.read_sources(nat_plan(job_resolv_conf=admin))
    admin.write_bytes(b"#" * (64 * 1024 + 1))
    with pytest.raises(ConfigError, match=r"LARK_JOB_RESOLV_CONF .* is over 65536 bytes"):
        world.read_sources(nat_plan(job_resolv_conf=admin))
