"""A simulated HTCondor starter: the job's cgroups, the wrapper born in them, and what the
starter does to that family (suspend, continue, soft kill, hard kill).

Each step follows HTCondor's own source (htcondor/htcondor, read 2026-12):

* ``src/condor_utils/proc_family_direct_cgroup_v2.cpp``: ``makeCgroup`` makes the job's
  cgroup (interior nodes get ``+cpu +io +memory +pids`` in ``cgroup.subtree_control``);
  ``cgroupify_myself`` runs in the child after fork and before exec, writes its own pid to
  ``cgroup.procs``, sets ``memory.max`` and ``memory.oom.group`` where it can, and chowns
  the directory, ``cgroup.procs`` and ``cgroup.subtree_control`` to the job's user
  (delegation); ``suspend_family``/``continue_family`` write 1/0 to ``cgroup.freeze``;
  ``kill_family`` suspends, calls ``killCgroupTree`` (``cgroup.kill`` where the file exists,
  then SIGKILL to every pid of ``cgroup.procs`` in the cgroup and every cgroup below it,
  ``getTree``), then continues; ``trimCgroupTree`` kills and removes the tree bottom up;
  ``has_been_oom_killed`` reads ``oom_kill``/``oom_group_kill`` from ``memory.events``.
* ``src/condor_utils/proc_family_direct_cgroup_v1.cpp``: ``makeCgroupV1`` makes the same
  cgroup name in each of its ``controllers`` (memory, cpu,cpuacct, freezer, devices);
  ``cgroupify_myself`` writes the pid to each one's ``cgroup.procs``, sets
  ``memory.limit_in_bytes`` and chowns the directories to the job's user;
  ``suspend_family``/``continue_family`` write FROZEN/THAWED to ``freezer.state``;
  ``kill_family`` freezes, SIGKILLs every pid of the memory cgroup's ``cgroup.procs``
  (``signal_process``) and thaws.
* ``src/condor_starter.V6.1/vanilla_proc.cpp``: the cgroup's name,
  ``<BASE_CGROUP>/condor<EXECUTE>_<slot name>`` with each ``/`` made ``_``; ``Suspend``,
  ``Continue`` and ``ShutdownFast`` (``Kill_Family``) act on that family;
  ``ShutdownGraceful`` (``OsProc::ShutdownGraceful``) sends the job's soft-kill signal to
  the job's main process, which is the wrapper.

HTCondor uses either v1 or v2 on a node; this starter does both at once where both are
mounted (as here: v2 at /sys/fs/cgroup/unified, v1 beside it), so one run covers what a
v2 node (Debian 12, EL9) and a v1 node do. ``devices`` (device hiding only) is left out.
Every cgroup is made below the test's own cgroup in each hierarchy, under
``<prefix>.condor`` (HTCondor's ``BASE_CGROUP``, ``htcondor`` by default), and the
blkio and pids hierarchies (which HTCondor leaves alone, so the job is where the starter
is) get ``<prefix>.condor/starter``: the agent's default home, ``../lark.agents`` of the
cgroup it is started in, then stays under the test's prefix in every hierarchy it moves in.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from sandbox import AGENTS, CgroupMount, cgroup_mount_table, cgroup_pids, discard_cgroup

from helpers.agent import NOBODY
from helpers.wrap import wrap_command

# HTCondor's v1 ``controllers`` (proc_family_direct_cgroup_v1.cpp), devices left out;
# ``cpu,cpuacct`` is one mount on EL, two here
JOB_V1 = frozenset({"memory", "cpu", "cpuacct", "freezer"})
# HTCondor makes no job cgroup in these; the agent may move in them too (the issue's
# contract names them), so it is started below the test's prefix there as well
STARTER_V1 = frozenset({"blkio", "pids"})
EXECUTE = "/var/lib/condor/execute"
SLOT = "slot1_1@node.lark.invalid"
FREEZE_BOUND_S = 5.0
# vanilla_proc.cpp StartJob: setupOOMScore(4, 800) before the fork, "the child will
# inherit it. This way, the job will be heavily preferred to be killed"
OOM_SCORE_ADJ = 800
CAP_SYS_RESOURCE = 24


@dataclass(frozen=True)
class Hierarchy:
    """One cgroup hierarchy the starter uses: v2, or a v1 mount."""

    key: str  # "v2", or the v1 controllers as /proc/PID/cgroup names them ("cpu,cpuacct")
    mount: CgroupMount
    own: str  # the test process's cgroup in it

    @property
    def version(self) -> int:
        return self.mount.version

    def dir(self, path: str) -> Path:
        found = self.mount.dir_of(path)
        assert found is not None, f"cgroup {path} is not below {self.mount.point}"
        return found


def parse_proc_cgroup(text: str) -> dict[str, str]:
    """``/proc/PID/cgroup`` as {hierarchy key: path}: ``0::/path`` is "v2", ``N:a,b:/path``
    is "a,b" (controllers in the kernel's order)."""
    found = {}
    for line in text.splitlines():
        _, controllers, path = line.split(":", 2)
        found[controllers or "v2"] = path
    return found


def proc_cgroup(pid: int | str) -> dict[str, str]:
    return parse_proc_cgroup(Path(f"/proc/{pid}/cgroup").read_text())


def slot_cgroup_name() -> str:
    """vanilla_proc.cpp: ``condor`` + ``<EXECUTE>_<slot Name>``, each ``/`` made ``_``."""
    return "condor" + f"{EXECUTE}_{SLOT}".replace("/", "_")


def may_lower_oom_scores() -> bool:
    """Whether this process has CAP_SYS_RESOURCE, which lowering an oom_score_adj takes
    (proc(5)); a container may withhold it (this machine does), and so may a node."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return bool(int(line.split()[1], 16) >> CAP_SYS_RESOURCE & 1)
    return False


def _write(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _below(path: str, top: str) -> bool:
    return path == top or path.startswith(top.rstrip("/") + "/")


class Starter:
    """One job slot's starter: its cgroups exist from construction until ``cleanup()``.

    ``job[key]`` is the job's cgroup path in each hierarchy (``<own>/<prefix>.condor/
    <slot>``; ``<own>/<prefix>.condor/starter`` in blkio and pids), ``top[key]`` its
    ``<prefix>.condor``. While they exist the sandbox's leftover check leaves them out.
    """

    def __init__(self, sandbox, layout: str = "flat") -> None:
        """``layout``: ``flat``, HTCondor 24.0's v2 job cgroup, the job right in
        ``<slot>``; ``scope``, 24.x and later (HTCONDOR-3008: ``makeCgroup``,
        ``cgroupify_myself``), the job in ``<slot>.slice/<slot>.scope`` with limits,
        freeze and kill at ``<slot>.slice``."""
        self.sandbox = sandbox
        self.agent: subprocess.Popen | None = None
        self.hierarchies: dict[str, Hierarchy] = {}
        own = parse_proc_cgroup(Path("/proc/self/cgroup").read_text())
        for mount in cgroup_mount_table():
            key = "v2" if mount.version == 2 else None
            if mount.version == 1 and mount.controllers & (JOB_V1 | STARTER_V1):
                same = (k for k in own if k != "v2" and set(k.split(",")) == mount.controllers)
                key = next(same, None)
            if key in own and key not in self.hierarchies and mount.dir_of(own[key]) is not None:
                self.hierarchies[key] = Hierarchy(key, mount, own[key])
        self.top: dict[str, str] = {}
        self.job: dict[str, str] = {}
        self.born: dict[str, str] = {}  # where the wrapper starts: the job's cgroup, or .scope
        for key, h in self.hierarchies.items():
            top = f"{h.own.rstrip('/')}/{sandbox.prefix}.condor"
            leaf = slot_cgroup_name()
            if h.version == 1 and not h.mount.controllers & JOB_V1:
                leaf = "starter"
            if h.version == 2 and layout == "scope":
                self.top[key], self.job[key] = top, f"{top}/{leaf}.slice"
                self.born[key] = f"{top}/{leaf}.slice/{leaf}.scope"
            else:
                self.top[key], self.job[key] = top, f"{top}/{leaf}"
                self.born[key] = self.job[key]
        for key in self.hierarchies:
            sandbox.own_cgroups.add(self.dir(key, self.top[key]))
        self._make()

    # -- where things are --------------------------------------------------

    def dir(self, key: str, path: str | None = None) -> Path:
        """The directory of cgroup ``path`` (the job's by default) in hierarchy ``key``."""
        return self.hierarchies[key].dir(path or self.job[key])

    def has(self, key: str) -> bool:
        return key in self.hierarchies

    @property
    def v1_memory(self) -> str | None:
        return next((k for k in self.hierarchies if "memory" in k.split(",")), None)

    @property
    def v1_freezer(self) -> str | None:
        return next((k for k in self.hierarchies if "freezer" in k.split(",")), None)

    def agent_keys(self) -> list[str]:
        """The hierarchies where the starter acts on the job's cgroup (v2, and v1 memory,
        cpu, cpuacct, freezer), which the agent must leave (LARK_AGENT_CGROUP)."""
        return [
            key
            for key, h in self.hierarchies.items()
            if h.version == 2 or h.mount.controllers & JOB_V1
        ]

    def holds(self, proc_cgroup_text: str) -> list[str]:
        """What of a process's /proc/PID/cgroup is NOT in the job's cgroup or below it, in
        each hierarchy of the starter (empty list: the process is the job's)."""
        paths = parse_proc_cgroup(proc_cgroup_text)
        return [
            f"{key}:{paths.get(key)} (job's: {self.job[key]})"
            for key in self.hierarchies
            if not _below(paths.get(key, ""), self.job[key])
        ]

    def inside(self, proc_cgroup_text: str) -> list[str]:
        """Each hierarchy the agent moves in where a process IS in the job's cgroup or
        below it (empty list: it left the job's family everywhere)."""
        paths = parse_proc_cgroup(proc_cgroup_text)
        return [
            f"{key}:{paths[key]}"
            for key in self.agent_keys()
            if key in paths and _below(paths[key], self.job[key])
        ]

    def tree(self, key: str = "v2") -> list[Path]:
        """The job's cgroup and every cgroup below it, deepest first (``getTree``)."""
        root = self.dir(key)
        if not root.exists():
            return []
        dirs = [root] + [Path(top) / d for top, ds, _ in os.walk(root) for d in ds]
        return sorted(dirs, key=lambda p: (len(str(p)), str(p)), reverse=True)

    def members(self) -> dict[Path, list[int]]:
        """The pids of each cgroup of the job's, in every hierarchy (empty ones too)."""
        return {d: cgroup_pids(d) for key in self.hierarchies for d in self.tree(key)}

    def job_pids(self) -> set[int]:
        """The pids in the job's cgroups where the starter acts on them."""
        return {pid for key in self.agent_keys() for d in self.tree(key) for pid in cgroup_pids(d)}

    # -- making it: makeCgroup / makeCgroupV1, cgroupify_myself ------------

    def _make(self) -> None:
        for key, h in self.hierarchies.items():
            top, leaf = self.dir(key, self.top[key]), self.dir(key)
            if leaf.exists():  # "If the full cgroup exists, remove it" (makeCgroup)
                discard_cgroup(leaf)
            top.mkdir(mode=0o755, exist_ok=True)
            leaf.mkdir(mode=0o755)
            if h.version == 2:
                interior = [top] if self.born[key] == self.job[key] else [top, leaf]
                for node, controller in itertools.product(
                    interior, ("cpu", "io", "memory", "pids")
                ):
                    with contextlib.suppress(OSError):
                        _write(node / "cgroup.subtree_control", f"+{controller}")
                if self.born[key] != self.job[key]:
                    self.dir(key, self.born[key]).mkdir(mode=0o755)
                with contextlib.suppress(OSError):  # only with the memory controller
                    _write(leaf / "memory.oom.group", "1")
                for name in ("", "cgroup.procs", "cgroup.subtree_control"):  # delegation
                    os.chown(leaf / name if name else leaf, NOBODY, NOBODY)
            elif h.mount.controllers & JOB_V1:
                os.chown(leaf, NOBODY, NOBODY)

    def limit_memory(self, limit: int) -> str | None:
        """The job's memory limit, as ``cgroupify_myself`` sets it: v2 ``memory.max`` where
        the v2 hierarchy gives the job's cgroup the memory controller, else the v1 memory
        cgroup's ``memory.limit_in_bytes``. Returns where it applies, or None when there is
        no memory controller to limit with."""
        if self.has("v2") and (self.dir("v2") / "memory.max").exists():
            _write(self.dir("v2") / "memory.max", str(limit))
            return "v2 memory.max"
        if self.v1_memory:
            _write(self.dir(self.v1_memory) / "memory.limit_in_bytes", str(limit))
            return "v1 memory.limit_in_bytes"
        return None

    def memory(self) -> int | None:
        """Bytes charged to the job's memory cgroup (``get_usage``: v2 ``memory.current``
        where the job's cgroup has the controller, else v1 ``memory.usage_in_bytes``), or
        None without a memory controller."""
        if self.has("v2") and (self.dir("v2") / "memory.current").exists():
            return int((self.dir("v2") / "memory.current").read_text())
        if self.v1_memory:
            return int((self.dir(self.v1_memory) / "memory.usage_in_bytes").read_text())
        return None

    def oom_kills(self) -> int:
        """How many times the OOM killer struck in the job's cgroup (``has_been_oom_killed``:
        v2 memory.events; v1 memory.oom_control's ``oom_kill``)."""
        count = 0
        for key in self.hierarchies:
            for name in ("memory.events", "memory.oom_control"):
                path = self.dir(key) / name
                if path.exists():
                    for line in path.read_text().splitlines():
                        field, _, value = line.partition(" ")
                        if field in ("oom_kill", "oom_group_kill"):
                            count = max(count, int(value))
        return count

    def _born_here(self, read_fd: int) -> None:
        """In the child, after fork and before exec (``cgroupify_myself``): fd 3 is the
        job's environment, as sudo keeps it for lark-job-wrapper; the child's pid goes
        into each of the job's cgroups, so the wrapper is born in them, with the starter's
        raised OOM score."""
        os.dup2(read_fd, 3)
        _write(Path("/proc/self/oom_score_adj"), str(OOM_SCORE_ADJ))
        pid = str(os.getpid())
        for key in self.hierarchies:
            _write(self.dir(key, self.born[key]) / "cgroup.procs", pid)

    # -- running the wrapper -----------------------------------------------

    def start(
        self, host, job_env: dict[str, str], *job: str, cwd=None, config: str = ""
    ) -> subprocess.Popen:
        """``lark-agent wrap -- JOB`` as sudo runs it for lark-job-wrapper (root, SUDO_UID
        and SUDO_GID of nobody, the job's environment on fd 3), born in the job's cgroups;
        its pid is the agent's (nsenter execs it)."""
        argv, env, read = wrap_command(
            self.sandbox, host, job_env, *job, config=config, agent_cgroup=None
        )
        try:
            self.agent = subprocess.Popen(
                argv,
                env=env,
                cwd=cwd,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                pass_fds=(read, 3),
                preexec_fn=lambda: self._born_here(read),
            )
        finally:
            os.close(read)
        return self.agent

    def wait(self, timeout: float) -> tuple[int, str, str]:
        """The agent's exit status, stdout and stderr."""
        assert self.agent is not None
        out, err = self.agent.communicate(timeout=timeout)
        return self.agent.returncode, out, err

    # -- what the starter does to the family -------------------------------

    def freeze(self) -> None:
        """``suspend_family``: v2 cgroup.freeze 1, v1 freezer.state FROZEN; returns once the
        kernel says the whole family is frozen. One after the other: a task the v1 freezer
        holds never reaches the point where the v2 freezer counts it, so v2 goes first."""
        if self.has("v2"):
            _write(self.dir("v2") / "cgroup.freeze", "1")
            self._until(self._v2_frozen)
        if self.v1_freezer:
            _write(self.dir(self.v1_freezer) / "freezer.state", "FROZEN")
            self._until(self.frozen)

    def _until(self, frozen) -> None:
        end = time.monotonic() + FREEZE_BOUND_S
        while not frozen():
            assert time.monotonic() < end, f"not frozen within {FREEZE_BOUND_S} s: {self.states()}"
            time.sleep(0.01)

    def thaw(self) -> None:
        """``continue_family``: freezer.state THAWED, cgroup.freeze 0 (the other way round)."""
        if self.v1_freezer:
            _write(self.dir(self.v1_freezer) / "freezer.state", "THAWED")
        if self.has("v2"):
            _write(self.dir("v2") / "cgroup.freeze", "0")

    def states(self) -> dict[str, str]:
        """What the freezers say, and the state of each of the job's processes."""
        said = {}
        if self.has("v2"):
            said["v2"] = (self.dir("v2") / "cgroup.events").read_text().replace("\n", " ")
        if self.v1_freezer:
            said["v1"] = (self.dir(self.v1_freezer) / "freezer.state").read_text().strip()
        for pid in self.job_pids():
            with contextlib.suppress(OSError):
                stat = Path(f"/proc/{pid}/stat").read_text()
                said[str(pid)] = stat[stat.rfind(")") + 2 :].split()[0] + " " + stat.split()[1]
        return said

    def _v2_frozen(self) -> bool:
        return "frozen 1" in (self.dir("v2") / "cgroup.events").read_text().splitlines()

    def frozen(self) -> bool:
        """v2 ``cgroup.events`` says ``frozen 1`` and the v1 freezer says FROZEN (FREEZING
        while on the way)."""
        done = True
        if self.has("v2"):
            done &= self._v2_frozen()
        if self.v1_freezer:
            state = (self.dir(self.v1_freezer) / "freezer.state").read_text().strip()
            done &= state == "FROZEN"
        return done

    @contextlib.contextmanager
    def suspended(self):
        """Frozen for the body (``condor_suspend`` ... ``condor_continue``)."""
        self.freeze()
        try:
            yield
        finally:
            self.thaw()

    def soft_kill(self, sig: int = signal.SIGTERM) -> None:
        """``ShutdownGraceful``: the job's KillSig to the job's main process, the wrapper."""
        assert self.agent is not None
        os.kill(self.agent.pid, sig)

    def cgroup_kill(self) -> None:
        """``kill_family`` on a kernel with cgroup.kill (5.14+): suspend, ``killCgroupTree``
        (cgroup.kill, then SIGKILL to each pid left in the tree), continue."""
        self._kill_family(use_cgroup_kill=True)

    def kill_procs(self) -> None:
        """``kill_family`` where cgroup.kill is missing (EL9's kernel): suspend, SIGKILL
        every pid of cgroup.procs in the job's cgroup and each cgroup below it (and, as
        the v1 ``signal_process`` does, of the v1 memory cgroup), continue."""
        self._kill_family(use_cgroup_kill=False)

    def _kill_family(self, use_cgroup_kill: bool) -> None:
        self.freeze()
        if use_cgroup_kill and self.has("v2"):
            _write(self.dir("v2") / "cgroup.kill", "1")
        victims = [d for d in self.tree("v2")] if self.has("v2") else []
        if self.v1_memory:
            victims.append(self.dir(self.v1_memory))
        for cgroup in victims:
            for pid in cgroup_pids(cgroup):
                if pid != os.getpid():  # "just in case" (signal_cgroup)
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
        self.thaw()

    # -- the end -----------------------------------------------------------

    def cleanup(self) -> list[str]:
        """``trimCgroupTree`` in every hierarchy, after the agent (TERM, then KILL after
        15 s, if it still runs): every cgroup under ``<prefix>.condor``, the agent's
        ``lark.agents`` included, killed and removed. Returns the cgroups found there that
        were neither the starter's nor ``lark.agents`` (empty list: nothing unexpected)."""
        if self.agent is not None and self.agent.poll() is None:
            with contextlib.suppress(OSError):
                self.thaw()
            with contextlib.suppress(ProcessLookupError):
                self.agent.terminate()
            try:
                self.agent.communicate(timeout=15)
            except subprocess.TimeoutExpired:
                self.agent.kill()
                with contextlib.suppress(OSError, AssertionError):  # the job holds its pipes
                    self._kill_family(use_cgroup_kill=True)
                self.agent.communicate(timeout=10)
        strays = []
        for key in self.hierarchies:
            top = self.dir(key, self.top[key])
            if not top.exists():
                continue
            expected = {top, self.dir(key), self.dir(key, self.born[key]), top / AGENTS}
            for path in sorted(top.rglob("*/")):
                if (path / "cgroup.procs").exists() and path not in expected:
                    strays.append(str(path))
            discard_cgroup(top)
            self.sandbox.own_cgroups.discard(top)
        return strays
