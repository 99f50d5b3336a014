"""contrib/htcondor/50-lark.config as HTCondor reads it: ``htcondor2.param`` with
``CONDOR_CONFIG`` naming a copy of it, and Lark's settings from that, as ``wrap`` takes them.

Each reading is a child process: htcondor2 reads its configuration once, when imported.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from lark_async.backends import usable

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "contrib" / "htcondor" / "50-lark.config"
README = ROOT / "README.rst"

READ = r"""
import json, sys
import classad2, htcondor2
from lark_async.decide import settings

names = json.loads(sys.argv[1])
out = {"param": {k: htcondor2.param.get(k) for k in names}, "settings": {}}
config = settings.config_snapshot(settings.htcondor_config())
for label, job in (("plain", "[ClusterId = 1; ProcId = 0]"),
                   ("inbound", "[ClusterId = 1; ProcId = 0; InboundConnectivity = true]")):
    job_ad = classad2.parseOne(job)
    got = settings.resolve_settings({}, settings.config_machine_ad(config), job_ad, config)
    out["settings"][label] = {
        "use_network_namespaces": got.use_network_namespaces,
        "network_type": str(got.network_type),
        "local_network": str(got.local_network),
        "allowed_network_types": [str(t) for t in got.allowed_network_types],
        "bridge_device": got.bridge_device,
        "create_script": got.create_script and str(got.create_script),
        "policy_script": got.policy_script and str(got.policy_script),
        "connection_rules": len(got.connection_rules or ()),
        "connection_default": str(got.connection_default),
        "audit_dir": str(got.audit_dir),
        "max_jobs_per_user": got.max_jobs_per_user,
    }
out["log_file"] = config.get("LARK_LOG_FILE")
print(json.dumps(out))
"""
PARAMS = [
    "USE_NETWORK_NAMESPACES",
    "USER_JOB_WRAPPER",
    "STARTD_CRON_JOBLIST",
    "STARTD_CRON_LARK_EXECUTABLE",
    "STARTD_CRON_LARK_ARGS",
    "STARTD_CRON_LARK_PERIOD",
    "STARTD_CRON_LARK_MODE",
    "STARTD_ATTRS",
    "LarkNetworkType",
]
# a commented example: "# KNOB = value", knob names as HTCondor's (letters, digits, _ and .)
EXAMPLE = re.compile(r"^# ([A-Za-z][A-Za-z0-9_.]* = .*)$", re.MULTILINE)


def read_as_htcondor(text: str, tmp_path: Path) -> dict:
    path = tmp_path / "condor_config"
    path.write_text(text)
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("_CONDOR_")}
    env["CONDOR_CONFIG"] = str(path)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    done = subprocess.run(
        [sys.executable, "-c", READ, json.dumps(PARAMS)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def readme_wrapper_path() -> str:
    """Where the README's install commands put the wrapper."""
    found = re.search(
        r"install -m 755 contrib/htcondor/lark-job-wrapper (\S+)/\n", README.read_text()
    )
    assert found, "the README no longer installs the wrapper"
    return f"{found.group(1)}/lark-job-wrapper"


def test_the_shipped_config_turns_lark_on_as_the_readme_installs_it(tmp_path):
    got = read_as_htcondor(CONFIG.read_text(), tmp_path)
    param = got["param"]
    assert param["USE_NETWORK_NAMESPACES"].lower() == "true"
    assert param["USER_JOB_WRAPPER"] == readme_wrapper_path()
    # the STARTD_CRON job: in the list (after whatever the node had), running startd-attrs
    assert "LARK" in param["STARTD_CRON_JOBLIST"].split()
    assert param["STARTD_CRON_LARK_EXECUTABLE"] == usable.AGENT_PATH
    assert param["STARTD_CRON_LARK_ARGS"].split() == ["startd-attrs"]
    assert param["STARTD_CRON_LARK_MODE"].lower() == "periodic"
    assert param["STARTD_CRON_LARK_PERIOD"] == "5m"
    plain = got["settings"]["plain"]
    assert plain["use_network_namespaces"] is True
    assert plain["local_network"] == "192.168.181.0/24"
    assert plain["network_type"] == "nat"
    assert got["log_file"] == "/var/log/lark/agent.log"


def test_the_configs_commented_examples_parse_and_mean_what_they_say(tmp_path):
    """An admin uncomments them: every one is valid, the machine attribute is evaluated
    against the job ad (bridge for a job that wants inbound connectivity) and published."""
    text = CONFIG.read_text()
    examples = EXAMPLE.findall(text)
    assert len(examples) >= 10, examples
    got = read_as_htcondor(EXAMPLE.sub(r"\1", text), tmp_path)
    assert "LarkNetworkType" in got["param"]["STARTD_ATTRS"].split()
    plain, inbound = got["settings"]["plain"], got["settings"]["inbound"]
    assert (plain["network_type"], inbound["network_type"]) == ("nat", "bridge")
    assert plain["allowed_network_types"] == ["nat", "bridge", "none"]
    assert plain["bridge_device"] == "eth1"
    assert plain["create_script"] == "/usr/local/libexec/lark/lark-split-accounting"
    assert plain["policy_script"] == "/usr/local/libexec/lark/policy"
    assert plain["connection_rules"] == 4 and plain["connection_default"] == "deny"
    assert plain["audit_dir"] == "/var/log/lark/connections"
    assert plain["max_jobs_per_user"] == 64
