"""The journal undoes exactly what the kernel took, newest first, and carries on past a
refused undo."""

from __future__ import annotations

import errno

import pytest

from lark_async.backends import rtnl
from lark_async.backends.journal import Journal


class FakeChannel:
    def __init__(self, refuse: set[str]) -> None:
        self.refuse, self.sent = refuse, []

    def request(self, message: rtnl.Message, absent_ok: bool = False) -> None:
        self.sent.append(message.what)
        if message.what in self.refuse:
            raise rtnl.RequestError(errno.ENETUNREACH, message.what)


def msg(what: str, kind: int = rtnl.RTM_NEWROUTE) -> rtnl.Message:
    return rtnl.Message(kind, 0, b"", what)


def test_a_refused_change_notes_no_undo_and_the_rest_is_taken_back_newest_first():
    channel = FakeChannel(refuse={"c"})
    journal = Journal(channel)  # type: ignore[arg-type]
    journal.apply(msg("a"), [msg("undo a")])
    journal.apply(msg("b"), [msg("undo b1"), msg("undo b2")])
    journal.apply(msg("nothing to undo"))
    with pytest.raises(rtnl.RequestError):
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
    monkeypatch.setattr("lark_async.backends.journal._boot_id", lambda: "another boot")
    channel = FakeChannel(refuse=set())
    assert Journal.recover(channel, path) is None  # type: ignore[arg-type]
    assert channel.sent == [] and not path.exists()
