"""A NAT job's MTU: the uplink's, within the admin's cap."""

from __future__ import annotations

import pytest

from lark_async.backends import mtu


@pytest.mark.parametrize(
    ("uplink", "cap", "chosen"),
    [(9000, None, 9000), (9000, 1400, 1400), (1400, 9000, 1400), (None, None, None),
     (None, 1400, 1400), (None, 9000, 1500)],
)  # fmt: skip
def test_a_nat_job_takes_the_uplinks_mtu_within_the_cap(uplink, cap, chosen):
    assert mtu.derive_nat_mtu(uplink, cap) == chosen
