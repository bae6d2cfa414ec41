"""Cost per 1,000 inferences from an hourly machine price.

The table holds on-demand Linux prices in USD per hour for a few common instance types in AWS us-east-1
and GCP us-central1, from the providers' public on-demand price lists (g5.xlarge's $1.006 was checked
against a June 2026 listing; the others are the list prices as the author recorded them). Prices change
and differ by region: pass --price-per-hour for your own. See docs/bench.md.
"""

from __future__ import annotations

import math

# (USD per hour, what it is)
ON_DEMAND_USD_PER_HOUR: dict[str, tuple[float, str]] = {
    "c6i.large": (0.085, "AWS us-east-1, 2 vCPU Intel Ice Lake"),
    "c6i.xlarge": (0.17, "AWS us-east-1, 4 vCPU Intel Ice Lake"),
    "c6i.2xlarge": (0.34, "AWS us-east-1, 8 vCPU Intel Ice Lake"),
    "c7i.xlarge": (0.1785, "AWS us-east-1, 4 vCPU Intel Sapphire Rapids"),
    "c7g.xlarge": (0.145, "AWS us-east-1, 4 vCPU Graviton3"),
    "m6i.xlarge": (0.192, "AWS us-east-1, 4 vCPU Intel Ice Lake, 16 GiB"),
    "g4dn.xlarge": (0.526, "AWS us-east-1, 4 vCPU + NVIDIA T4"),
    "g5.xlarge": (1.006, "AWS us-east-1, 4 vCPU + NVIDIA A10G"),
    "n2-standard-4": (0.194236, "GCP us-central1, 4 vCPU"),
}


def hourly_price(price_per_hour: float | None, instance_type: str | None) -> float | None:
    """The explicit price if given, else the table's price for ``instance_type``, else None."""
    if price_per_hour is not None:
        if price_per_hour < 0:
            raise ValueError("--price-per-hour must not be negative")
        return price_per_hour
    if instance_type is None:
        return None
    try:
        return ON_DEMAND_USD_PER_HOUR[instance_type][0]
    except KeyError:
        known = ", ".join(sorted(ON_DEMAND_USD_PER_HOUR))
        raise ValueError(
            f"no price known for instance type '{instance_type}'; give --price-per-hour, or one of: {known}"
        ) from None


def cost_per_1000(price_per_hour: float, inferences_per_s: float) -> float:
    """USD per 1,000 inferences when the machine runs flat out at ``inferences_per_s``."""
    if inferences_per_s <= 0:
        return math.inf
    return price_per_hour / 3600.0 / inferences_per_s * 1000.0
