"""Filters for the monitoring role's Prometheus files (tests/unit/test_monitoring.py).

prometheus_le(seconds): a histogram bucket's bound as the sidecar's client writes it in the `le`
label, so a rule selects the bucket by that exact string (Prometheus labels are strings: le="1"
matches no series when the client wrote le="1.0"). prometheus_client's floatToGoString
(prometheus_client/utils.py) is the reference: Python's repr of the float, switched to an exponent
where Go would (7 or more digits before the point)."""

from __future__ import annotations

import math


def prometheus_le(value: float | str) -> str:
    d = float(value)
    if math.isinf(d):
        return "+Inf" if d > 0 else "-Inf"
    if math.isnan(d):
        return "NaN"
    s = repr(d)
    dot = s.find(".")
    if d > 0 and dot > 6:
        mantissa = f"{s[0]}.{s[1:dot]}{s[dot + 1 :]}".rstrip("0.")
        return f"{mantissa}e+{dot - 1:02d}"
    return s


class FilterModule:
    def filters(self) -> dict[str, object]:
        return {"prometheus_le": prometheus_le}
