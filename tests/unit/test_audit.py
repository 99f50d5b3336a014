"""The audit trail: identical decisions coalesced into counted lines, each job's log capped."""

from __future__ import annotations

import json

from lark_async.decide.audit import NOTICE_BYTES, AuditKey, AuditTrail

DENY = AuditKey("tcp", "192.168.181.2", "10.77.0.1", 8081, "deny", "deny any 0.0.0.0/0")
ALLOW = AuditKey("tcp", "192.168.181.2", "10.77.0.1", 8080, "allow", "allow tcp 10.77.0.1:8080")
WALL = 1_800_000_000.0


def records(lines: list[str]) -> list[dict]:
    return [json.loads(line) for line in lines]


def test_a_first_decision_is_one_line_at_once_as_before():
    trail = AuditTrail("j1", 1 << 20)
    [line] = trail.decided(DENY, 0.0, WALL)
    assert line.endswith("\n")
    assert json.loads(line) == {
        "time": "2027-01-15T08:00:00+00:00",
        "job": "j1",
        "protocol": "tcp",
        "source": "192.168.181.2",
        "destination": "10.77.0.1",
        "port": 8081,
        "verdict": "deny",
        "rule": "deny any 0.0.0.0/0",
    }
    assert (trail.coalesced, trail.dropped) == (0, 0)


def test_the_same_decision_again_within_the_window_is_one_counted_line():
    trail = AuditTrail("j1", 1 << 20, window_s=10)
    out = trail.decided(DENY, 0.0, WALL)
    for i in range(1, 1001):
        out += trail.decided(DENY, i * 0.001, WALL + i * 0.001)
    assert len(out) == 1 and trail.coalesced == 1000
    assert trail.next_deadline() == 10.0
    assert trail.expire(9.99) == []
    [summary] = records(trail.expire(10.0))
    assert summary["count"] == 1000 and summary["verdict"] == "deny"
    assert summary["time"] == "2027-01-15T08:00:00.001000+00:00"
    assert summary["until"] == "2027-01-15T08:00:01+00:00"
    # the window is over: the next one is a line of its own again
    assert records(trail.decided(DENY, 10.5, WALL + 10.5))[0].get("count") is None


def test_different_decisions_are_not_merged_and_a_window_without_repeats_says_nothing():
    trail = AuditTrail("j1", 1 << 20, window_s=10)
    out = trail.decided(DENY, 0.0, WALL)
    out += trail.decided(ALLOW, 1.0, WALL + 1)
    out += trail.decided(ALLOW, 2.0, WALL + 2)
    assert [r["port"] for r in records(out)] == [8081, 8080]
    assert trail.expire(10.0) == []  # DENY's window: no repeats
    assert [(r["port"], r["count"]) for r in records(trail.expire(11.0))] == [(8080, 1)]
    assert trail.next_deadline() == float("inf")


def test_close_writes_every_pending_count():
    trail = AuditTrail("j1", 1 << 20)
    for key in (DENY, ALLOW):
        trail.decided(key, 0.0, WALL)
        trail.decided(key, 0.1, WALL)
        trail.decided(key, 0.2, WALL)
    assert [(r["port"], r["count"]) for r in records(trail.close())] == [(8081, 2), (8080, 2)]
    assert trail.coalesced == 4 and trail.close() == []


def test_too_many_open_windows_close_the_oldest_first():
    trail = AuditTrail("j1", 1 << 20, max_windows=2)
    third = AuditKey("udp", "192.168.181.2", "10.77.0.1", 53, "deny", "x")
    trail.decided(DENY, 0.0, WALL)
    trail.decided(DENY, 0.1, WALL)
    trail.decided(ALLOW, 0.2, WALL)
    out = records(trail.decided(third, 0.3, WALL))
    assert [(r["port"], r.get("count")) for r in out] == [(8081, 1), (53, None)]


def test_past_the_cap_one_notice_then_decisions_are_only_counted():
    cap = 4096
    trail = AuditTrail("j1", cap)
    written: list[str] = []
    for port in range(1000):  # all different: nothing to coalesce
        key = AuditKey("tcp", "192.168.181.2", "10.77.0.1", port, "deny", "r")
        written += trail.decided(key, port * 0.001, WALL)
    size = sum(len(line) for line in written)
    assert size <= cap - cap // 4 and size == trail.written
    assert size > cap - cap // 4 - NOTICE_BYTES - 300  # it filled its part, not less
    notice = json.loads(written[-1])
    assert notice == {
        "time": "2027-01-15T08:00:00+00:00",
        "job": "j1",
        "note": "the audit log reached its cap of 4096 bytes (LARK_AUDIT_MAX_BYTES): later"
        " decisions are counted in NetworkAuditRecordsDropped, not written (count lines of"
        " earlier ones may follow while they fit)",
    }
    assert written[-1].endswith("}\n")
    assert len(written) - 1 + trail.dropped == 1000
    assert trail.decided(DENY, 2.0, WALL) == []  # a new decision: only counted
    assert trail.decided(DENY, 2.1, WALL) == []
    assert trail.expire(2.05) == []


def accounted(lines: list[str]) -> int:
    """Decisions the written lines stand for (a count line for its count, the notice for none)."""
    return sum(r.get("count", 1) for r in records(lines) if "verdict" in r)


def test_count_lines_still_fit_after_the_cap_until_their_reserve_is_full():
    cap = 4096
    trail = AuditTrail("j1", cap)
    out = trail.decided(DENY, 0.0, WALL)
    for i in range(1000):  # the flood: one decision over and over
        out += trail.decided(DENY, 0.001 * i, WALL)
    for port in range(1000):  # and ever new ones, past the cap
        out += trail.decided(AuditKey("tcp", "s", "d", port, "deny", "r"), 1.0, WALL)
        out += trail.decided(AuditKey("tcp", "s", "d", port, "deny", "r"), 1.1, WALL)
    assert trail.capped
    tail = trail.close()
    assert (records(tail)[0]["port"], records(tail)[0]["count"]) == (8081, 1000)
    assert trail.written == sum(len(line) for line in out + tail) <= cap
    assert accounted(out + tail) + trail.dropped == 1 + 1000 + 2000
    assert trail.coalesced == sum(r["count"] for r in records(out + tail) if "count" in r)


def test_a_pending_count_that_no_longer_fits_is_counted_as_dropped():
    trail = AuditTrail("j1", 2000)
    out: list[str] = []
    for port in range(40):  # each seen twice: forty windows with a repeat
        out += trail.decided(AuditKey("tcp", "s", "d", port, "deny", "r"), 0.0, WALL)
        out += trail.decided(AuditKey("tcp", "s", "d", port, "deny", "r"), 0.1, WALL)
    assert trail.capped and trail.coalesced == 40
    tail = trail.close()
    assert 0 < len(tail) < 40  # some counts fit in the reserve, not all
    assert trail.written <= 2000
    assert trail.coalesced == len(tail)
    assert accounted(out + tail) + trail.dropped == 80


def test_expire_writes_every_window_that_has_ended_oldest_first():
    trail = AuditTrail("j1", 1 << 20, window_s=10)
    for key, at in ((DENY, 0.0), (ALLOW, 1.0)):
        trail.decided(key, at, WALL + at)
        trail.decided(key, at + 0.5, WALL + at + 0.5)
        trail.decided(key, at + 0.6, WALL + at + 0.6)
    out = records(trail.expire(20.0))  # both windows ended: one call, both count lines
    assert [(r["job"], r["port"], r["count"]) for r in out] == [("j1", 8081, 2), ("j1", 8080, 2)]
    assert out[1]["time"] == "2027-01-15T08:00:01.500000+00:00"
    assert out[1]["until"] == "2027-01-15T08:00:01.600000+00:00"


def line_sizes(key: AuditKey) -> tuple[int, int]:
    """The size of a decision's line and of its count line (one repeat), measured uncapped."""
    trail = AuditTrail("j1", 1 << 20)
    [first] = trail.decided(key, 0.0, WALL)
    trail.decided(key, 0.1, WALL)
    [count] = trail.close()
    return len(first), len(count)


def test_new_decisions_fill_the_cap_but_its_reserves_to_the_byte():
    """A decision's line is written while it ends at most NOTICE_BYTES and a quarter of the
    cap (rounded down) before the cap: exactly there, it is written; a byte more, not."""
    size, _ = line_sizes(DENY)
    free = size + NOTICE_BYTES  # the cap less its quarter must be this
    spare = free % 3 or 3  # a cap of 4k + spare, no multiple of 4, so its quarter rounds
    cap = 4 * ((free - spare) // 3) + spare
    assert cap % 4 and cap - cap // 4 == free
    trail = AuditTrail("j1", cap)
    [line] = trail.decided(DENY, 0.0, WALL)
    assert json.loads(line)["port"] == 8081
    assert trail.written == size and not trail.capped
    longer = AuditTrail("j12", cap)  # its line is a byte longer
    [notice] = records(longer.decided(DENY, 0.0, WALL))
    assert "note" in notice and longer.capped and longer.dropped == 1


def test_a_count_line_may_fill_the_cap_up_to_the_notices_room():
    first, count = line_sizes(DENY)
    cap = first + count + NOTICE_BYTES
    trail = AuditTrail("j1", cap)
    trail.decided(DENY, 0.0, WALL)
    trail.decided(DENY, 0.1, WALL)
    [line] = records(trail.close())
    assert line["count"] == 1 and trail.written == cap - NOTICE_BYTES
    assert (trail.coalesced, trail.dropped) == (1, 0) and not trail.capped


def test_a_count_line_that_reaches_the_cap_first_is_dropped_not_coalesced():
    """The count line is the one past the cap: the notice is written in its place, and the
    ad's NetworkAuditRecordsCoalesced no longer counts the repeats it stood for."""
    first, count = line_sizes(DENY)
    trail = AuditTrail("j1", first + count + NOTICE_BYTES - 1)
    trail.decided(DENY, 0.0, WALL)
    trail.decided(DENY, 0.1, WALL)
    trail.decided(DENY, 0.2, WALL)
    [notice] = records(trail.close())
    assert "note" in notice and trail.capped
    assert (trail.coalesced, trail.dropped) == (0, 2)
