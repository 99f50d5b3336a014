"""``run`` (root's verb) and ``wrap`` (any user's, through sudo): one job under the supervisor."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

from ..errors import UsageError
from .common import cli_settings, command_words, need_root, report_cleanup, settings_config


def cmd_run(args: argparse.Namespace) -> int:
    """Root's own verb: root names the ads and the settings, so the machine ad is an admin
    source like the config."""
    from ..decide import ads
    from ..job.process import resolve_user

    argv = command_words(args.job, "lark-agent run [OPTIONS] -- JOB [ARGS...]")
    need_root()
    job_ad = ads.read_ad(args.job_ad or os.environ.get("_CONDOR_JOB_AD"), "job ad")
    machine_ad = ads.read_ad(args.machine_ad or os.environ.get("_CONDOR_MACHINE_AD"), "machine ad")
    user = resolve_user(args.user, args.allow_root, os.environ.get("SUDO_USER"))
    scratch = os.environ.get("_CONDOR_SCRATCH_DIR")
    update_ad = (
        Path(args.update_ad)
        if args.update_ad
        else Path(scratch) / ".lark.update.ad"
        if scratch
        else None
    )
    job = _Job(argv, user, dict(os.environ), None, update_ad, job_ad, machine_ad)
    return _run_job(job, machine_ad, "machine ad", settings_config(), args)


def cmd_wrap(args: argparse.Namespace) -> int:
    """The root side of the sudo wrapper, which any local user may start: from the caller
    only its command and the job's environment (fd 3), both data. Settings come from the
    HTCondor config alone (its machine attributes included); the caller's ads are read as
    the caller and only ever requests; the job's name carries the agent's pid; the caller
    may hold at most LARK_MAX_JOBS_PER_USER agents."""
    from .. import userfiles
    from ..decide import ads, settings
    from ..job.process import resolve_user

    argv = command_words(args.job, "lark-agent wrap -- JOB [ARGS...]")
    need_root()
    uid, gid = os.environ.get("SUDO_UID"), os.environ.get("SUDO_GID")
    if not (uid and gid and uid.isdigit() and gid.isdigit()):
        raise UsageError("wrap is run through sudo by contrib/htcondor/lark-job-wrapper")
    config, seats = args.wrap_config, args.wrap_placement  # (wrap_start, before logging)
    seats.report()
    userfiles.set_owner(int(uid), int(gid))
    env = _job_environment()
    if "_CONDOR_WRAPPER_ERROR_FILE" in env:  # written as the job user (cli._wrapper_error)
        os.environ["_CONDOR_WRAPPER_ERROR_FILE"] = env["_CONDOR_WRAPPER_ERROR_FILE"]
    user = resolve_user(uid, False, None)
    with userfiles.as_owner():
        job_ad = ads.read_ad(env.get("_CONDOR_JOB_AD"), "job ad")
        machine_ad = ads.read_ad(env.get("_CONDOR_MACHINE_AD"), "machine ad")
    scratch = env.get("_CONDOR_SCRATCH_DIR")
    update_ad = Path(scratch) / ".lark.update.ad" if scratch else None
    job = _Job(argv, user, env, Path.cwd(), update_ad, job_ad, machine_ad)
    admin_ad = settings.config_machine_ad(config)
    return _run_job(job, admin_ad, "HTCondor config", config, argparse.Namespace(), seats)


def wrap_start(may_exec: bool) -> tuple[dict[str, str], Any]:
    """``wrap``'s first step, before it loads much: the HTCondor config (root's files only;
    the keys Lark reads), and the agent out of the job's cgroups (backends/placement.py).
    When it moved, in a fresh process image (backends/reexec.py), so that nothing it
    touched before stays charged to the job's memory; the new image gets both back."""
    from ..backends import reexec
    from ..backends.placement import Placement
    from ..decide import settings
    from ..errors import LarkError

    handed = reexec.take_over() if may_exec else None
    if handed is not None:
        try:
            config = {str(k): str(v) for k, v in handed["config"].items()}
            return config, Placement.from_record(handed["placement"])
        except (KeyError, TypeError, ValueError, AttributeError, OSError) as exc:
            raise LarkError(f"wrap's second image cannot read its placement: {exc!r}") from exc
    config = settings.config_snapshot(settings.root_htcondor_config())
    seats = Placement.leave(settings.config_setting(config, "agent_cgroup"), quiet=True)
    if may_exec and any(seat.moved for seat in seats.seats):
        reexec.hand_over({"config": config, "placement": seats.to_record()})
    return config, seats


def _job_environment() -> dict[str, str]:
    """The job's environment, as the wrapper sent it on fd 3 (sudo reset ours): at most
    4 MiB, and only what arrives within a few seconds (the caller holds the other end)."""
    import select

    chunks: list[bytes] = []
    size, deadline = 0, time.monotonic() + 5.0
    try:
        with os.fdopen(3, "rb", buffering=0) as f:
            while size <= 4 << 20:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([f], [], [], left)[0]:
                    raise UsageError("the job's environment (fd 3) did not arrive in time")
                chunk = f.read(1 << 16)
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
    except OSError:
        return {"PATH": "/usr/bin:/bin"}
    data = b"".join(chunks)[: 4 << 20]
    env = {}
    for item in data.split(b"\0"):
        key, sep, value = item.partition(b"=")
        if sep and key and b"\n" not in key:
            env[key.decode(errors="replace")] = value.decode(errors="replace")
    return env


class _Job:
    """What the job is: its command, user, environment and the ads as they were read."""

    def __init__(
        self,
        argv: list[str],
        user: Any,
        env: dict[str, str],
        cwd: Path | None,
        update_ad: Path | None,
        job_ad: Any,
        machine_ad: Any,
    ) -> None:
        self.argv, self.user, self.env, self.cwd = argv, user, env, cwd
        self.update_ad, self.job_ad, self.machine_ad = update_ad, job_ad, machine_ad


def _run_job(
    job: _Job,
    admin_ad: Any,
    admin_source: str,
    config: Any,
    args: argparse.Namespace,
    seats: Any = None,
) -> int:
    """Evaluate what Lark reads of the ads (bounded), settings (``admin_ad`` holds the
    admin's machine attributes), the job's requests, the policy script, the plan, then the
    supervisor. ``seats``: wrap's Placement, made first thing; ``run`` moves only when
    given --agent-cgroup."""
    import trio

    from ..backends import quota, scripts
    from ..backends.placement import Placement
    from ..decide import ads, bandwidth, plan, policy, settings
    from ..decide.request import JOB_ATTRIBUTES, read_request
    from ..decide.scripts import Script
    from ..job.supervisor import RunRequest, Supervisor

    wrapped = seats is not None
    share_attr = cli_settings(args).get("bandwidth_resource") or settings.config_setting(
        config, "bandwidth_resource"
    )
    job_attributes: tuple[str, ...] = JOB_ATTRIBUTES
    if wrapped:  # and the job's request for the share, which takes the slot's place there
        job_attributes = (*JOB_ATTRIBUTES, bandwidth.request_attribute(share_attr))
    admin_view, job_view, slot_view = ads.evaluate_bounded(
        [
            ads.Evaluation(admin_ad, settings.MACHINE_ATTRIBUTES, job.job_ad),
            ads.Evaluation(job.job_ad, job_attributes),
            ads.Evaluation(job.machine_ad, (*plan.SLOT_ATTRIBUTES, share_attr)),
        ],
        as_user=(job.user.uid, job.user.gid),
    )
    resolved = settings.resolve_settings(
        cli_settings(args), admin_view, job_view, config, admin_source
    )
    asked = read_request(job_view)
    grant = policy.decide(resolved, asked)
    if not wrapped:
        seats = Placement.leave(getattr(args, "agent_cgroup", None) and resolved.agent_cgroup)
    slot = None
    if wrapped:
        slot = quota.hold_user_slot(
            resolved.lock_dir, job.user.uid, job.user.name, resolved.jobs_per_user
        )
    try:
        if resolved.policy_script is not None:
            script = Script("policy", resolved.policy_script, resolved.script_timeout_s)
            out = scripts.run_policy_script(
                script,
                ads.format_for_script(job.job_ad),
                ads.format_for_script(job.machine_ad),
                grant.settings.state_dir,
            )
            grant = policy.apply_policy_output(grant, out, script.path)
        name = plan.derive_job_name(
            getattr(args, "name", None), asked, slot_view, os.getpid(), unique=wrapped
        )
        resource = grant.settings.bandwidth_resource
        share = ads.evaluate(slot_view, resource)
        requested: object = None
        cap = None
        if wrapped:  # the share the startd would give: the job's request within the cap
            requested = ads.evaluate(job_view, bandwidth.request_attribute(resource))
            cap = bandwidth.slot_cap(grant.settings, config)
        job_plan = plan.derive_plan(grant, name, share, not wrapped, requested, cap)
        request = RunRequest(
            job_plan,
            job.argv,
            job.user,
            job.env,
            job.cwd,
            job.update_ad,
            job.job_ad,
            job.machine_ad,
            seats,
            wrapped,
        )
        outcome = trio.run(Supervisor(request).run)
    finally:
        if slot is not None:
            slot.release()
    report_cleanup(outcome.cleanup_errors, name)
    return outcome.status
