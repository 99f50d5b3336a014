"""The local address pool: pairs of a network, and lock files in a per-test directory."""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lark_async.backends.address import (
    allocate,
    is_locked,
    lock_path,
    pool_pair,
    pool_pairs,
    pool_size,
)
from lark_async.backends.netns import Addresses
from lark_async.errors import ResourceError

REPO = Path(__file__).resolve().parents[2]
NET29 = ipaddress.IPv4Network("10.7.0.0/29")
A = ipaddress.IPv4Address


def test_a_24_has_126_pairs_without_network_and_broadcast():
    pairs = pool_pairs(ipaddress.IPv4Network("192.168.181.0/24"))
    assert len(pairs) == 126
    assert pairs[0] == Addresses(A("192.168.181.2"), A("192.168.181.3"))
    assert pairs[-1] == Addresses(A("192.168.181.252"), A("192.168.181.253"))
    used = {a for pair in pairs for a in (pair.external, pair.internal)}
    assert A("192.168.181.0") not in used
    assert A("192.168.181.1") not in used
    assert A("192.168.181.254") not in used
    assert A("192.168.181.255") not in used
    assert len(used) == 252


def test_a_29_has_2_pairs():
    assert pool_pairs(NET29) == [
        Addresses(A("10.7.0.2"), A("10.7.0.3")),
        Addresses(A("10.7.0.4"), A("10.7.0.5")),
    ]


@pytest.mark.parametrize("prefix", ["10.0.0.0/30", "10.0.0.0/31", "10.0.0.0/32"])
def test_networks_smaller_than_a_29_have_no_pairs(prefix):
    assert pool_pairs(ipaddress.IPv4Network(prefix)) == []


def test_every_pair_is_inside_the_network_and_external_is_even():
    net = ipaddress.IPv4Network("10.9.8.0/26")
    for pair in pool_pairs(net):
        assert pair.external in net and pair.internal in net
        assert int(pair.internal) == int(pair.external) + 1
        assert int(pair.external) % 2 == 0


@pytest.mark.slow
@pytest.mark.parametrize("prefix", range(16, 31))
def test_pool_size_and_pool_pair_agree_with_pool_pairs(prefix):
    net = ipaddress.IPv4Network(f"10.4.0.0/{prefix}")
    pairs = pool_pairs(net)
    assert pool_size(net) == len(pairs) == max(net.num_addresses // 2 - 2, 0)
    for k in range(0, len(pairs), max(len(pairs) // 50, 1)):  # a sample of a /16 is enough
        assert pool_pair(net, k) == pairs[k]
    if pairs:
        assert pool_pair(net, len(pairs) - 1) == pairs[-1]


@pytest.mark.parametrize("prefix", ["10.0.0.0/30", "10.0.0.0/31", "10.0.0.0/32"])
def test_networks_smaller_than_a_29_have_no_pool_size(prefix):
    assert pool_size(ipaddress.IPv4Network(prefix)) <= 0


def test_a_16_has_32766_pairs():
    net = ipaddress.IPv4Network("10.5.0.0/16")
    assert pool_size(net) == 32766
    assert pool_pair(net, 0) == Addresses(A("10.5.0.2"), A("10.5.0.3"))
    assert pool_pair(net, 32765) == Addresses(A("10.5.255.252"), A("10.5.255.253"))


def test_pool_pair_does_not_build_the_pool():
    """A /0 would be 2**31 pairs: only lazily computed pairs can answer this at once."""
    net = ipaddress.IPv4Network("0.0.0.0/0")
    assert pool_size(net) == 2**31 - 2
    assert pool_pair(net, 0) == Addresses(A("0.0.0.2"), A("0.0.0.3"))
    assert pool_pair(net, 2**31 - 3) == Addresses(A("255.255.255.252"), A("255.255.255.253"))


def test_allocate_in_a_huge_network_is_lazy(tmp_path):
    net = ipaddress.IPv4Network("0.0.0.0/0")
    lease = allocate(net, tmp_path, "job")
    try:
        assert int(lease.addresses.external) % 2 == 0
        assert int(lease.addresses.internal) == int(lease.addresses.external) + 1
        assert lease.addresses.external != A("0.0.0.0")
        assert lease.addresses.internal != A("255.255.255.255")
        assert [p.name for p in tmp_path.iterdir()] == [lease.path.name]
    finally:
        lease.release()


def test_two_allocations_get_distinct_pairs(tmp_path):
    first = allocate(NET29, tmp_path, "job")
    second = allocate(NET29, tmp_path, "job")
    try:
        assert first.addresses != second.addresses
        assert {first.addresses, second.addresses} == set(pool_pairs(NET29))
    finally:
        first.release()
        second.release()


def test_an_exhausted_pool_is_a_resource_error(tmp_path):
    leases = [allocate(NET29, tmp_path, f"j{i}") for i in range(2)]
    try:
        with pytest.raises(ResourceError) as info:
            allocate(NET29, tmp_path, "j3")
        assert str(info.value) == (
            "address pool LARK_LOCAL_NETWORK 10.7.0.0/29 is exhausted: all 2 pairs are in use "
            "(pairs of dead agents come back with `lark-agent cleanup --orphans`)"
        )
    finally:
        for lease in leases:
            lease.release()


@pytest.mark.parametrize("prefix", ["10.0.0.0/30", "10.0.0.0/31", "10.0.0.0/32"])
def test_a_network_without_pairs_is_a_resource_error(tmp_path, prefix):
    with pytest.raises(ResourceError) as info:
        allocate(ipaddress.IPv4Network(prefix), tmp_path, "j")
    assert str(info.value) == f"LARK_LOCAL_NETWORK {prefix} has no address pairs"


def test_a_released_pair_can_be_allocated_again(tmp_path):
    first = allocate(NET29, tmp_path, "a")
    second = allocate(NET29, tmp_path, "b")
    freed = first.addresses
    first.release()
    again = allocate(NET29, tmp_path, "c")
    try:
        assert again.addresses == freed
    finally:
        again.release()
        second.release()


def test_release_removes_the_lock_file(tmp_path):
    lease = allocate(NET29, tmp_path, "job")
    assert lease.path == lock_path(tmp_path, lease.addresses)
    assert lease.path.exists()
    lease.release()
    assert not lease.path.exists()
    assert list(tmp_path.iterdir()) == []


def test_lock_file_names_the_pair_and_records_pid_and_job(tmp_path):
    lease = allocate(NET29, tmp_path, "myjob")
    try:
        assert lease.path.name == f"addr-{lease.addresses.external}.lock"
        assert lease.path.read_text() == f"{os.getpid()} myjob\n"
    finally:
        lease.release()


def test_the_lock_dir_is_created(tmp_path):
    lock_dir = tmp_path / "a" / "b"
    lease = allocate(NET29, lock_dir, "job")
    try:
        assert lock_dir.is_dir()
        assert lease.path.parent == lock_dir
    finally:
        lease.release()


def test_is_locked_while_held_and_not_after_release(tmp_path):
    lease = allocate(NET29, tmp_path, "job")
    assert is_locked(lease.path)
    lease.release()
    assert not is_locked(lease.path)


def test_a_lock_file_nobody_holds_is_not_locked(tmp_path):
    path = tmp_path / "addr-10.7.0.2.lock"
    path.write_text("12345 stale\n")
    assert not is_locked(path)
    assert path.exists()  # is_locked only looks


def test_a_stale_lock_file_does_not_block_allocation(tmp_path):
    """Every pair's lock file is there, left by a crashed agent and held by nobody: the new
    job takes one over (the same file, locked by it, naming it alone) and leaves the others
    as they were."""
    stale = {pair: lock_path(tmp_path, pair) for pair in pool_pairs(NET29)}
    for path in stale.values():
        path.write_text("12345 crashed\n")
    inodes = {pair: path.stat().st_ino for pair, path in stale.items()}
    lease = allocate(NET29, tmp_path, "job")
    try:
        assert lease.path == stale[lease.addresses]
        assert os.fstat(lease.fd).st_ino == inodes[lease.addresses]  # taken over, not replaced
        assert is_locked(lease.path)
        assert lease.path.read_text() == f"{os.getpid()} job\n"
        others = [path for pair, path in stale.items() if pair != lease.addresses]
        assert [path.read_text() for path in others] == ["12345 crashed\n"] * (len(stale) - 1)
        assert not any(is_locked(path) for path in others)
    finally:
        lease.release()
    assert not lease.path.exists()


CHILD = """
import ipaddress, sys
from pathlib import Path
from lark_async.backends.address import allocate
lease = allocate(ipaddress.IPv4Network(sys.argv[1]), Path(sys.argv[2]), sys.argv[3])
print(lease.addresses.external, flush=True)
sys.stdin.read()
"""


def test_a_lock_held_by_a_dead_process_is_free(tmp_path):
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(NET29), str(tmp_path), "child"],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        held = A(child.stdout.readline().strip())
        path = next(lock_path(tmp_path, p) for p in pool_pairs(NET29) if p.external == held)
        assert is_locked(path)
        mine = allocate(NET29, tmp_path, "child")  # same name: the child's pair is tried first
        assert mine.addresses.external != held
        with pytest.raises(ResourceError):
            allocate(NET29, tmp_path, "other")
    finally:
        child.kill()
        child.wait()
        child.stdin.close()
        child.stdout.close()
    assert path.exists()  # the killed child could not unlink it
    assert not is_locked(path)
    reused = allocate(NET29, tmp_path, "other")
    try:
        assert reused.addresses.external == held
    finally:
        reused.release()
        mine.release()
