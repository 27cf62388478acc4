"""Stand-in for HailoRT's Python binding hailo_platform (lab and tests only, no Hailo device here).

The package layout, exports and behaviours follow hailo-ai/hailort's
hailort/libhailort/bindings/python/platform/hailo_platform/__init__.py and pyhailort/pyhailort.py:
see pyhailort/pyhailort.py (the Python layer) and pyhailort/_pyhailort.py (the native side and
the simulated device, with the HailoRT source each behaviour is taken from). The faults a test
can inject and the stand-in HEF writer are in hailo_platform.standin, which the real package has not.
"""

from hailo_platform.pyhailort.pyhailort import (
    AsyncInferJob,
    Device,
    FormatType,
    HailoRTException,
    HailoRTStreamAbortedByUser,
    HailoSchedulingAlgorithm,
    VDevice,
)

__version__ = "4.23.0"

__all__ = [
    "AsyncInferJob",
    "Device",
    "FormatType",
    "HailoRTException",
    "HailoRTStreamAbortedByUser",
    "HailoSchedulingAlgorithm",
    "VDevice",
]
