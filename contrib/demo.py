"""Demo: one NAT job end to end, inside throwaway namespaces (nothing on the real network).

A *site* namespace serves a 10 MB file over HTTP; an *execute host* namespace,
wired to the site like a worker node, runs ``lark-agent run`` for a job that
downloads it. Then the job's update ad is printed with its byte counts and
the demo checks that nothing was left behind.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from sandbox import FILE_SIZES, Sandbox, new_prefix

FETCH = (
    "import sys, urllib.request\n"
    "data = urllib.request.urlopen(sys.argv[1], timeout=10).read()\n"
    "print(f'job: fetched {len(data)} bytes from {sys.argv[1]}')\n"
)


def main() -> int:
    prefix = new_prefix()
    box = Sandbox(prefix, Path(tempfile.mkdtemp(prefix=f"{prefix}.")), f"{prefix}-site")
    try:
        box.create_site()
        host = box.add_host()
        ad = box.tmp / "job.update.ad"
        args = (
            "--user",
            "nobody",
            "--name",
            box.job_name(),
            "--update-ad",
            str(ad),
            "--",
            "/usr/bin/python3",
            "-I",
            "-c",
            FETCH,
            box.url("10m"),
        )
        print(f"demo: site namespace {box.site} serves a {FILE_SIZES['10m']} byte file")
        print(
            f"demo: execute host namespace {host.netns} runs:\n  lark-agent run --user nobody "
            f"--name {box.job_name()} --update-ad {ad} -- python3 <fetch> {box.url('10m')}"
        )
        result = box.run_agent(host, *args)
        sys.stdout.write(result.stdout)
        sys.stderr.write(result.stderr)
        print(f"demo: lark-agent exited with {result.returncode}")
        if ad.exists():
            print(f"demo: the job's update ad ({ad}):")
            print("  " + ad.read_text().strip().replace("\n", "\n  "))
        left = box.wait_clean()
        print("demo: nothing left behind" if not left else f"demo: LEFT BEHIND: {left}")
        return 0 if result.returncode == 0 and not left else 1
    finally:
        box.destroy()


if __name__ == "__main__":
    sys.exit(main())
