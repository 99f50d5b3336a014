"""Publish the job's Network* attributes to its job ad through the starter's chirp server.

When the job has an IO proxy, the starter leaves ``.chirp.config`` (host,
port, cookie) in the scratch directory; Lark then pushes its attributes with
``set_job_attr_delayed`` on each poll (the starter forwards them with its next
update to the shadow). Without it, the update ad file is the only channel.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

from . import ads, userfiles

log = logging.getLogger("lark.chirp")
PUSHED_PREFIXES = ("Network", "AverageBandwidthUsage")


def chirp_config(env: Mapping[str, str]) -> Path | None:
    """Where the starter's chirp config would be for this job (it may not exist)."""
    if env.get("_CONDOR_CHIRP_CONFIG"):
        return Path(env["_CONDOR_CHIRP_CONFIG"])
    scratch = env.get("_CONDOR_SCRATCH_DIR")
    return Path(scratch) / ".chirp.config" if scratch else None


class ChirpPublisher:
    def __init__(self, config: Path) -> None:
        self.config = config
        self.failed = False  # log a failure once, not on every poll

    def push(self, values: Mapping[str, object]) -> None:
        """Blocking (run it in a worker thread); failures are logged, never raised."""
        from htcondor2.htchirp import HTChirp

        try:
            with userfiles.as_owner():
                host, port, cookie = self.config.read_text().split()
            with HTChirp(host=host, port=int(port), cookie=cookie, timeout=5) as chirp:
                for name, value in values.items():
                    if name.startswith(PUSHED_PREFIXES):
                        literal = ads.format_old({name: value}).split(" = ", 1)[1].strip()
                        chirp.set_job_attr_delayed(name, literal)
        except Exception as exc:  # the job must not suffer from a chirp problem
            if not self.failed:
                log.warning("cannot push attributes through chirp (%s): %s", self.config, exc)
            self.failed = True
        else:
            self.failed = False
