"""trust.py: a file is root's only if nobody else could have written or swapped it."""

from __future__ import annotations

import os

import pytest
from helpers.rootfiles import NOBODY, make_root_dir, program

from lark_async.errors import ConfigError
from lark_async.trust import check_root_file, open_root_file

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to own files")


@pytest.fixture
def root_dir(tmp_path):
    return make_root_dir(tmp_path)


def error(path: str) -> str:
    with pytest.raises(ConfigError) as info:
        check_root_file(path, "create script")
    return str(info.value)


def test_a_root_file_in_root_directories_is_trusted(root_dir):
    path = program(root_dir / "s")
    assert check_root_file(str(path), "x").st_ino == os.stat(path).st_ino
    fd = open_root_file(str(path), "x")
    try:
        assert os.read(fd, 2) == b"#!"
    finally:
        os.close(fd)


def test_system_programs_behind_merged_usr_links_are_trusted():
    assert check_root_file("/bin/sh", "x")  # /bin -> usr/bin, sh -> dash on Debian


@pytest.mark.parametrize(
    ("mode", "uid", "gid", "why"),
    [
        (0o775, 0, NOBODY, "is writable by others than root"),  # its group is nogroup
        (0o757, 0, 0, "is writable by others than root"),
        (0o755, NOBODY, 0, "is not owned by root"),
    ],
)
def test_the_file_itself_must_be_roots_alone(root_dir, mode, uid, gid, why):
    path = program(root_dir / "s", mode)
    os.chown(path, uid, gid)
    assert error(str(path)) == f"create script {path} {why}"


@pytest.mark.parametrize(
    ("mode", "owner", "why"),
    [
        (0o777, 0, "is writable by others than root"),
        (0o775, NOBODY, "is writable by others than root"),
        (0o755, NOBODY, "is not owned by root"),
    ],
)
def test_every_directory_on_the_way_must_be_roots_alone(root_dir, mode, owner, why):
    inner = root_dir / "inner"
    inner.mkdir()
    path = program(inner / "s")
    inner.chmod(mode)
    os.chown(inner, 0, owner)
    if mode == 0o755:
        os.chown(inner, owner, owner)
    assert error(str(path)) == f"create script {path}: directory {inner} {why}"


def test_roots_group_may_write_as_root_may(root_dir):
    inner = root_dir / "inner"
    inner.mkdir()
    inner.chmod(0o775)  # root:root, group-writable: only root's group
    assert check_root_file(str(program(inner / "s", 0o775)), "x")


def test_a_sticky_directory_is_fine_as_tmp_is(root_dir):
    sticky = root_dir / "sticky"
    sticky.mkdir()
    sticky.chmod(0o1777)
    assert check_root_file(str(program(sticky / "s")), "x")


def test_a_link_in_a_directory_others_may_write_is_not_followed(root_dir):
    """Resolving first would check the target and run whatever the link names later."""
    target = program(root_dir / "s")
    shared = root_dir / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    (shared / "link").symlink_to(target)
    assert error(str(shared / "link")) == (
        f"create script {shared / 'link'}: directory {shared} is writable by others than root"
    )


def test_a_link_in_a_root_directory_is_followed_and_its_target_checked(root_dir):
    shared = root_dir / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    target = program(shared / "s")
    (root_dir / "link").symlink_to(target)
    assert error(str(root_dir / "link")) == (
        f"create script {root_dir / 'link'}: directory {shared} is writable by others than root"
    )
    (root_dir / "rel").symlink_to("./s2")
    program(root_dir / "s2")
    assert check_root_file(str(root_dir / "rel"), "x")


@pytest.mark.parametrize("path", ["relative/x", "", "/a\0b"])
def test_only_absolute_paths(path):
    with pytest.raises(ConfigError, match="is not an absolute path"):
        check_root_file(path, "x")


def test_what_is_not_a_regular_file_or_not_there(root_dir):
    assert error(str(root_dir)) == f"create script {root_dir} is not a regular file"
    assert error(str(root_dir / "nope")) == (
        f"create script {root_dir / 'nope'}: No such file or directory"
    )
    loop = root_dir / "loop"
    loop.symlink_to(loop)
    assert "too many symbolic links" in error(str(loop))
