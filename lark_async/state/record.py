"""Per-job state record: write-ahead JSON, so a crash leaves a record, never an orphan.

Each resource is noted *before* it is created; undo reads only the record,
so the supervisor and a later `lark-agent cleanup` share one path.

A record appears whole or not at all: its first content is written to a
temporary file in the state dir and linked into place (a link never replaces
an existing record, so a name in use is still refused), and every later save
is a rename. What undo reads of a record is checked before anything acts on
it: the names must be the job's own (``lark-<name>``, ``e_<name>``,
``LARK_<name>``), addresses addresses, and so on, so a damaged record can
never make cleanup touch something that is not this job's. A record that fails
the check is unreadable, and its job is swept by name like one with no record.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any

from ..backends import firewall
from ..decide import names
from ..decide.ads import write_atomically
from ..errors import LarkError, ResourceError, map_errors
from .steps import RECORDED, StepName

_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
_IFNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,14}")
_ADDR_LOCK = re.compile(r"^addr-([0-9a-f.:]{2,39})\.lock$")


class UnreadableRecord(ResourceError):
    """A state record that is empty, not JSON, or names what is not its job's."""


class Record:
    def __init__(self, path: Path, data: dict[str, Any]) -> None:
        self.path = path
        self.data = data

    @classmethod
    def create(cls, state_dir: Path, name: str, plan: dict[str, Any]) -> Record:
        with map_errors(f"create state dir {state_dir}"):
            state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        record = cls(
            state_dir / f"{name}.json",
            {
                "name": name,
                "pid": os.getpid(),
                "started_epoch": time.time(),
                "plan": plan,
                "steps": {},
            },
        )
        tmp = None
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{record.path.name}.", dir=state_dir)
            with os.fdopen(fd, "w") as f:
                f.write(json.dumps(record.data, sort_keys=True))
            os.link(tmp, record.path)
        except FileExistsError as exc:
            raise ResourceError(
                f"job name {name} is in use: state record {record.path} exists (if its agent is "
                f"gone, run: lark-agent cleanup {name})"
            ) from exc
        except OSError as exc:  # a full disk: nothing is left behind either
            raise ResourceError(f"create state record {record.path}: {exc.strerror}") from exc
        finally:
            if tmp is not None:
                Path(tmp).unlink(missing_ok=True)
        return record

    @classmethod
    def load(cls, path: Path) -> Record:
        """Raises UnreadableRecord for a record that fails the check, KernelError when the
        file cannot be read at all (absent included)."""
        with map_errors(f"read state record {path}"):
            raw = path.read_bytes()
        try:
            data = json.loads(raw.decode())
        except UnicodeDecodeError as exc:
            raise UnreadableRecord(f"state record {path} is unreadable: not text") from exc
        except json.JSONDecodeError as exc:
            why = "empty" if not raw.strip() else f"not JSON ({exc.msg} at byte {exc.pos})"
            raise UnreadableRecord(f"state record {path} is unreadable: {why}") from exc
        except RecursionError as exc:
            raise UnreadableRecord(f"state record {path} is unreadable: nested too deep") from exc
        try:
            check(data, path.stem)
        except (LarkError, ValueError, TypeError, KeyError) as exc:
            raise UnreadableRecord(f"state record {path} is unreadable: {exc}") from exc
        return cls(path, data)

    @property
    def steps(self) -> dict[str, dict[str, Any]]:
        return self.data["steps"]

    def note(self, step: StepName, **details: Any) -> None:
        """Record intent before the kernel is touched."""
        self.steps[step] = details
        self.save()

    def forget(self, step: StepName) -> None:
        """Take back a noted step whose object turned out not to be ours."""
        self.steps.pop(step, None)
        self.save()

    def set_status(self, status: dict[str, Any]) -> None:
        """What ``lark-agent status`` shows of the job (addresses, lease), saved when it
        changes."""
        if self.data.get("status") != status:
            self.data["status"] = status
            self.save()

    def save(self) -> None:
        with map_errors(f"write state record {self.path}"):
            write_atomically(self.path, json.dumps(self.data, sort_keys=True))

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)


def temp_owner(filename: str) -> str | None:
    """The job whose record a temporary file of the state dir was to become (``.<name>.json.*``,
    left by an agent killed while writing it), or None for any other file."""
    if not filename.startswith(".") or ".json." not in filename:
        return None
    name = filename[1:].split(".json.", 1)[0]
    try:
        return names.check_name(name)
    except LarkError:
        return None


def _want(ok: bool, what: str) -> None:
    if not ok:
        raise ValueError(what)


def _str(details: dict[str, Any], key: str, expected: str | None = None) -> str:
    value = details.get(key)
    _want(isinstance(value, str), f"{key} is not a string")
    _want(expected is None or value == expected, f"{key} {value!r} is not {expected!r}")
    return value  # type: ignore[return-value]


def _ipv4(value: object, what: str) -> None:
    _want(isinstance(value, str), f"{what} is not a string")
    ipaddress.IPv4Address(value)  # ValueError names the value


def check(data: object, name: str) -> None:
    """What undo reads of a record, checked: raise ValueError naming the first thing wrong.

    Steps are named from a closed set (steps.StepName): a record with any other is not
    this version's to undo, and its job is swept by name."""
    _want(isinstance(data, dict), "not a JSON object")
    assert isinstance(data, dict)
    names.check_name(name)
    _want(data.get("name") == name, f"its name {data.get('name')!r} is not {name!r}")
    pid = data.get("pid")
    _want(type(pid) is int and pid >= 0, "pid is not a number")
    steps = data.get("steps")
    _want(isinstance(steps, dict), "steps is not an object")
    assert isinstance(steps, dict)
    _want(all(isinstance(v, dict) for v in steps.values()), "a step is not an object")
    unknown = sorted(str(k) for k in steps if k not in RECORDED)
    _want(not unknown, f"unknown step(s) {', '.join(map(repr, unknown))}")
    if "netns" in steps:
        _str(steps["netns"], "netns", names.netns_name(name))
    if "veth" in steps:
        _str(steps["veth"], "external", names.external_interface(name))
    if "address" in steps:
        for key, version in (("lock", 4), ("lock6", 6)):
            lock = steps["address"].get(key)
            if lock is not None:
                _check_address_lock(lock, version)
        link = steps["address"].get("proxy6_link")
        if link is not None:  # (its undo removes a proxy NDP entry on a node link)
            _want(isinstance(link, str) and bool(_IFNAME.fullmatch(link)), "the proxy's link")
            ipaddress.IPv6Address(_str(steps["address"], "proxy6"))
    if "dhcp6" in steps:  # (its undo sends a frame into a bridge)
        lease = steps["dhcp6"]
        bridge = lease.get("bridge")
        _want(isinstance(bridge, str) and bool(_IFNAME.fullmatch(bridge)), "the lease's bridge")
        _want(len(bytes.fromhex(_str(lease, "mac").replace(":", ""))) == 6, "the lease's MAC")
        _want(ipaddress.IPv6Address(_str(lease, "link_local")).is_link_local, "its link-local")
        for key in ("duid", "server"):
            bytes.fromhex(_str(lease, key))
        _want(type(lease.get("iaid")) is int, "the lease's IAID")
        addresses = lease.get("addresses")
        _want(isinstance(addresses, list) and bool(addresses), "the lease's addresses")
        for a in addresses:
            ipaddress.IPv6Address(a)
    if "firewall" in steps:
        _check_firewall(steps["firewall"], name)
    if "script" in steps:
        script = steps["script"]
        _want(os.path.isabs(_str(script, "path")), "the delete script is not an absolute path")
        timeout = script.get("timeout")
        _want(type(timeout) in (int, float) and timeout > 0, "the script timeout")
        args = script.get("args")
        _want(isinstance(args, list) and all(isinstance(a, str) for a in args), "script args")
        _want(isinstance(script.get("stdin", ""), str), "script stdin")
        env = script.get("env", {})
        _want(isinstance(env, dict), "script env")
        _want(all(isinstance(k, str) and isinstance(v, str) for k, v in env.items()), "env")
        _str(script, "job", name)
    if "view" in steps:  # (its undo removes files there: only the job's own directory)
        where = _str(steps["view"], "dir")
        _want(os.path.normpath(where) == where and os.path.isabs(where), "the view directory")
        _want(Path(where).name == f"{name}.view", "the view directory is not the job's")
    if "dhcp" in steps:
        dhcp = steps["dhcp"]
        _ipv4(dhcp.get("address"), "the DHCP address")
        _ipv4(dhcp.get("server"), "the DHCP server")
        _want(bool(_MAC.fullmatch(_str(dhcp, "mac"))), "the DHCP MAC")
        bytes.fromhex(_str(dhcp, "client_id"))


def _check_address_lock(lock: object, version: int) -> None:
    """An absolute ``addr-<address>.lock`` of the family (undo unlinks it), the address
    written as Python writes it (so as the pool named the file)."""
    _want(isinstance(lock, str), "the address lock is not a string")
    assert isinstance(lock, str)
    path = Path(lock)
    found = _ADDR_LOCK.fullmatch(path.name)
    _want(path.is_absolute() and ".." not in path.parts, f"address lock {lock!r}")
    _want(found is not None, f"address lock {lock!r} is not an addr-<address>.lock")
    assert found is not None
    try:
        addr = ipaddress.ip_address(found.group(1))
    except ValueError:
        addr = None
    named = addr is not None and addr.version == version and str(addr) == found.group(1)
    _want(named, f"address lock {lock!r} does not name an IPv{version} address")


def _check_firewall(fw: dict[str, Any], name: str) -> None:
    """The job's own chain and veth; the rest (which backend, its addresses, builds, MAC)
    is checked by the firewall's own reading of the step."""
    _str(fw, "chain", names.chain_name(name))
    _str(fw, "external_interface", names.external_interface(name))
    firewall.from_record(fw)
