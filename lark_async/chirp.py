"""Publish the job's Network* attributes to its job ad through the starter's chirp server.

When the job has an IO proxy, the starter leaves ``.chirp.config`` (host,
port, cookie) in the scratch directory; Lark then pushes its attributes with
``set_job_attr_delayed`` on each poll (the starter forwards them with its next
update to the shadow). Without it, the update ad file is the only channel.
"""

from __future__ import annotations

import importlib.util
import logging
import types
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


_module: types.ModuleType | None = None


def _htchirp() -> types.ModuleType:
    """``htcondor2.htchirp``'s pure-Python client, loaded on its own: importing the
    ``htcondor2`` package would load HTCondor's config and resolve the host's name first."""
    global _module
    if _module is None:
        found = importlib.util.find_spec("htcondor2")  # finds, does not run, the package
        if found is None or found.origin is None:
            raise ImportError("htcondor2 is not installed")
        path = Path(found.origin).parent / "htchirp" / "htchirp.py"
        spec = importlib.util.spec_from_file_location("lark_htchirp", path)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot load {path}")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _module = module
    return _module


class ChirpPublisher:
    def __init__(self, config: Path) -> None:
        self.config = config
        self.failed = False  # log a failure once, not on every poll

    def push(self, values: Mapping[str, object]) -> None:
        """Blocking (run it in a worker thread); failures are logged, never raised."""
        try:
            htchirp = _htchirp()
            with userfiles.as_owner():
                host, port, cookie = self.config.read_text().split()
            with htchirp.HTChirp(host=host, port=int(port), cookie=cookie, timeout=5) as chirp:
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
