"""What hailo-compile reads back from the DFC's HAR after parsing: the input shape it parsed.

A HAR is a tar archive; NET.hn in it is the network as JSON, whose input_layer's output_shapes
hold the parsed input in NHWC with -1 for the batch (the layout Netron's Hailo reader uses,
lutzroeder/netron source/hailo.js). The DFC reads an ONNX input as NCHW: [N, 1, 100, 9] is
parsed as [-1, 100, 9, 1], and the calibration set must have that per-sample shape.
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

from .errors import DfcError


def parsed_input_shape(har: Path) -> list[int]:
    """The parsed input as NHWC (batch -1); raises DfcError when the HAR does not say."""
    try:
        with tarfile.open(har) as tar:
            names = [
                n for n in tar.getnames() if n.endswith(".hn") and not n.endswith((".native.hn", ".fp.hn"))
            ]
            if len(names) != 1:
                raise DfcError(f"the parsed HAR {har} holds {len(names)} .hn networks, expected one")
            member = tar.extractfile(names[0])
            if member is None:
                raise DfcError(f"{names[0]} in {har} is not a file")
            hn = json.loads(member.read())
    except (tarfile.TarError, OSError, ValueError) as exc:
        raise DfcError(f"cannot read the parsed HAR {har}: {exc}") from None
    inputs = [layer for layer in hn.get("layers", {}).values() if layer.get("type") == "input_layer"]
    if len(inputs) != 1 or not inputs[0].get("output_shapes"):
        raise DfcError(
            f"the parsed network in {har} has {len(inputs)} input layers, expected one with a shape"
        )
    return [int(d) for d in inputs[0]["output_shapes"][0]]
