"""backends/view.py's mount namespace where ``/`` is not a mount point (an agent in a chroot):
a file on a mount the namespace can name is bound, one on the mount holding the chroot is
left the node's and said, and nothing raises. Built in a private mount namespace of the
test's own (``unshare --propagation private``), so nothing reaches the machine's mounts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = r"""
set -e
mount -t tmpfs lark-test /mnt
R=/mnt/root
mkdir -p $R/etc $R/proc $R/tmp $R/usr $R/root
mount --rbind /usr $R/usr
mkdir -p $R/$REPO_PARENT && mount --rbind $REPO_PARENT $R/$REPO_PARENT
for l in bin lib lib64 sbin; do if [ -L /$l ]; then cp -P /$l $R/$l; fi; done
if [ "$NAMED_ETC" = yes ]; then
    mkdir -p /mnt/etc && cp /etc/passwd /etc/group /mnt/etc/ && mount --bind /mnt/etc $R/etc
else
    cp /etc/passwd /etc/group $R/etc/
fi
echo "nameserver 10.9.9.8" > $R/etc/resolv.conf
echo "nameserver 10.9.9.9" > $R/tmp/job-resolv
mount -t proc proc $R/proc
chroot $R "$PYTHON" -I -c "$CHECK"
"""
CHECK = r"""
import sys, threading
sys.path.insert(0, REPO)
from pathlib import Path
from lark_async.backends import view
out = {}
def run():
    out["skipped"] = view.enter_own_mounts([(Path("/tmp/job-resolv"), Path("/etc/resolv.conf"))])
    out["seen"] = open("/etc/resolv.conf").read().strip()
thread = threading.Thread(target=run)
thread.start()
thread.join()
print(out["seen"])
print(len(out["skipped"]), *out["skipped"])
"""


@pytest.mark.parametrize("named_etc", [True, False], ids=["etc-named", "etc-on-the-chroots"])
def test_in_a_chroot_only_files_on_mounts_the_namespace_can_name_are_bound(named_etc):
    if os.geteuid() != 0:
        pytest.skip("needs root (mount namespaces)")
    with open("/proc/self/mountinfo") as f:
        root_is_a_mount = any(line.split()[4] == "/" for line in f)
    if not root_is_a_mount:  # (os.path.ismount says yes for / whatever it is)
        pytest.skip("/ is not a mount point here: the test cannot build its chroot privately")
    env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "REPO_PARENT": str(REPO.parent),
        "NAMED_ETC": "yes" if named_etc else "no",
        "PYTHON": sys.executable,
        "CHECK": CHECK.replace("REPO", repr(str(REPO)), 1),
    }
    done = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", SCRIPT],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    seen, skipped = done.stdout.splitlines()
    if named_etc:
        assert (seen, skipped) == ("nameserver 10.9.9.9", "0")
    else:
        assert seen == "nameserver 10.9.9.8"  # the chroot's own file, untouched
        assert skipped.startswith("1 /etc/resolv.conf (/ is not a mount point")
    with open("/proc/self/mounts") as f:
        assert "lark-test" not in f.read()
