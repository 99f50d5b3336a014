"""What bounding the job side's ads costs per job: reading, parsing and evaluating them.

    .venv/bin/python bench/ads.py [--rounds 200]

Lark reads the job and machine ads, checks their depth, then evaluates what it needs of
them (the job's requests, its ids, the admin's machine attributes against the job) in a
forked child under CPU, memory and time limits (``ads.evaluate_bounded``). The peers are
the same work without the bounds: classad2 evaluating in process (what Lark did before),
and classad2's own ``parseOne`` reading the ad. Needs no root and no network.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import classad2
from common import print_table

from lark_async.decide import ads, plan, request, settings

# A job ad of the size and shape condor_submit writes (about 120 attributes, 6 KB).
JOB_AD = (
    'MyType = "Job"\nClusterId = 4242\nProcId = 0\nOwner = "alice"\nCmd = "/bin/job"\n'
    'Requirements = (TARGET.Arch == "X86_64") && (TARGET.OpSys == "LINUX") && '
    "(TARGET.Disk >= RequestDisk) && (TARGET.Memory >= RequestMemory)\n"
    'Environment = "'
    + " ".join(f"VAR{i}=value{i}" for i in range(40))
    + '"\n'
    + "".join(f'Attr{i} = "some value {i}"\n' for i in range(100))
    + "RequestCpus = 1\nRequestMemory = 2048\nWantJobNetworking = true\n"
)
MACHINE_AD = 'Name = "slot1_2@node.example"\nMemory = 4096\n'
LARK = "Lark: read, check, evaluate bounded (fork)"
UNBOUNDED = "read, evaluate in process (unbounded)"
ADMIN_AD = 'LarkNetworkType = ifThenElse(TARGET.WantJobNetworking =?= false, "none", "nat")\n'


def read_all(job: Path, machine: Path, bounded: bool) -> None:
    job_ad, machine_ad = ads.read_ad(job, "job ad"), ads.read_ad(machine, "machine ad")
    admin = ads.parse_ad(ADMIN_AD, "admin")
    wanted = [
        (admin, settings.MACHINE_ATTRIBUTES, job_ad),
        (job_ad, request.JOB_ATTRIBUTES, None),
        (machine_ad, plan.SLOT_ATTRIBUTES, None),
    ]
    if bounded:
        ads.evaluate_bounded([ads.Evaluation(a, attrs, t) for a, attrs, t in wanted])
    else:
        for ad, attrs, target in wanted:
            for attr in attrs:
                ads.evaluate(ad, attr, target)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        job, machine = Path(tmp, "job.ad"), Path(tmp, "machine.ad")
        job.write_text(JOB_AD)
        machine.write_text(MACHINE_AD)
        classad2.parseOne(JOB_AD, classad2.ParserType.Old)  # (loads htcondor2 once, up front)
        samples: dict[str, list[float]] = {
            "Lark: read, check, evaluate bounded (fork)": [],
            "read, evaluate in process (unbounded)": [],
            "classad2.parseOne alone": [],
        }
        for _ in range(args.rounds):  # interleaved, so load changes hit all alike
            for name, work in (
                (
                    "Lark: read, check, evaluate bounded (fork)",
                    lambda: read_all(job, machine, True),
                ),
                ("read, evaluate in process (unbounded)", lambda: read_all(job, machine, False)),
                ("classad2.parseOne alone", lambda: classad2.parseOne(JOB_AD)),
            ):
                t0 = time.perf_counter()
                work()
                samples[name].append(time.perf_counter() - t0)
    print_table(
        f"Reading and evaluating a job's ads ({len(JOB_AD)} bytes, {args.rounds} rounds)",
        list(samples.items()),
        [UNBOUNDED],
        ["unbounded"],
    )


if __name__ == "__main__":
    main()
