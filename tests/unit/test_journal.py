"""The journal undoes exactly what the kernel took, newest first, and carries on past a
refused undo."""

from __future__ import annotations

import errno
import os

import pytest

from lark_async.backends.lan.journal import Journal
from lark_async.backends.netlink import NetlinkError, rtnl


class FakeChannel:
    def __init__(self, refuse: set[str]) -> None:
        self.refuse, self.sent = refuse, []

    def request(self, message: rtnl.Message, absent_ok: bool = False) -> None:
        self.sent.append(message.what)
        if message.what in self.refuse:
            raise NetlinkError(errno.ENETUNREACH, message.what)


def msg(what: str, kind: int = rtnl.RTM_NEWROUTE) -> rtnl.Message:
    return rtnl.Message(kind, 0, b"", what)


def test_a_refused_change_notes_no_undo_and_the_rest_is_taken_back_newest_first():
    channel = FakeChannel(refuse={"c"})
    journal = Journal(channel)  # type: ignore[arg-type]
    journal.apply(msg("a"), [msg("undo a")])
    journal.apply(msg("b"), [msg("undo b1"), msg("undo b2")])
    journal.apply(msg("nothing to undo"))
    with pytest.raises(NetlinkError):
        journal.apply(msg("c"), [msg("undo c")])
    assert journal.rollback() == []
    assert channel.sent[4:] == ["undo b1", "undo b2", "undo a"]
    assert journal.rollback() == [] and len(channel.sent) == 7  # (once)


def test_a_refused_undo_is_reported_and_the_others_still_run():
    channel = FakeChannel(refuse={"undo b"})
    journal = Journal(channel)  # type: ignore[arg-type]
    journal.apply(msg("a"), [msg("undo a")])
    journal.apply(msg("b"), [msg("undo b")])
    failed = journal.rollback()
    assert [(e.what, e.errno) for e in failed] == [("undo b", errno.ENETUNREACH)]
    assert channel.sent[2:] == ["undo b", "undo a"]


def test_a_killed_agents_journal_is_taken_back_by_the_next_and_goes(tmp_path):
    path = tmp_path / "bridge-lark.journal"
    first = FakeChannel(refuse=set())
    journal = Journal(first, path)  # type: ignore[arg-type]
    journal.apply(msg("a"), [msg("undo a", rtnl.RTM_DELROUTE)])
    journal.apply(msg("b"), [msg("undo b")])
    del journal  # (killed: nothing more happens)
    channel = FakeChannel(refuse=set())
    assert Journal.recover(channel, path) == []  # type: ignore[arg-type]
    assert channel.sent == ["undo b", "undo a"] and not path.exists()
    assert Journal.recover(channel, path) is None


def test_an_undo_is_noted_before_the_kernel_has_the_change(tmp_path):
    path = tmp_path / "bridge-lark.journal"

    class Killed(BaseException):
        pass

    class Dying(FakeChannel):
        def request(self, message, absent_ok=False):
            assert "undo a" in path.read_text()  # already noted
            raise Killed

    with pytest.raises(Killed):
        Journal(Dying(set()), path).apply(msg("a"), [msg("undo a")])  # type: ignore[arg-type]


def test_a_journal_of_another_boot_is_dropped_unread(tmp_path, monkeypatch):
    path = tmp_path / "bridge-lark.journal"
    Journal(FakeChannel(set()), path).apply(msg("a"), [msg("undo a")])  # type: ignore[arg-type]
    monkeypatch.setattr("lark_async.backends.lan.journal._boot_id", lambda: "another boot")
    channel = FakeChannel(refuse=set())
    assert Journal.recover(channel, path) is None  # type: ignore[arg-type]
    assert channel.sent == [] and not path.exists()


def _killed_journal(path) -> None:
    Journal(FakeChannel(set()), path).apply(msg("a"), [msg("undo a")])  # type: ignore[arg-type]


@pytest.mark.parametrize("hostile", ["kind", "writable", "symlink", "fifo", "huge"])
def test_a_journal_root_should_not_replay_is_dropped_unsent(tmp_path, hostile):
    """It is replayed as root: a request of a kind no move takes back (a nexthop, say), a
    file anyone else could have written, a symlink, a FIFO, a swollen file: dropped."""
    path = tmp_path / "bridge-lark.journal"
    if hostile == "symlink":
        _killed_journal(tmp_path / "elsewhere")
        path.symlink_to(tmp_path / "elsewhere")
    elif hostile == "fifo":
        os.mkfifo(path)
    else:
        _killed_journal(path)
    if hostile == "kind":
        path.write_text(path.read_text().replace(f'"kind": {rtnl.RTM_NEWROUTE}', '"kind": 104'))
    elif hostile == "writable":
        path.chmod(0o622)
    elif hostile == "huge":
        with path.open("a") as f:
            f.write(" " * (5 << 20))
    channel = FakeChannel(refuse=set())
    assert Journal.recover(channel, path) is None  # type: ignore[arg-type]
    assert channel.sent == [] and not path.is_symlink() and not path.exists()


def test_a_journal_of_this_agents_own_is_replayed(tmp_path):
    path = tmp_path / "bridge-lark.journal"
    _killed_journal(path)
    channel = FakeChannel(refuse=set())
    assert Journal.recover(channel, path) == []  # type: ignore[arg-type]
    assert channel.sent == ["undo a"]
