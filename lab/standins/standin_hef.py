"""Stand-in HEF container (lab only): the file the stand-in DFC writes and the stand-in HailoRT loads.

Not Hailo's format. It keeps the two checks HailoRT makes on a HEF file before anything else
(hailort/libhailort/src/hef/hef.cpp, Hef::Impl::validate_hef_header): a magic that does not
match is HAILO_HEF_NOT_SUPPORTED (92), a length or checksum that does not match the header is
HAILO_HEF_FILE_CORRUPTED (91). So a file changed by one byte fails as it would on a Pi.

Layout: MAGIC, then little-endian u32 body length and u32 CRC-32 of the body, then the body: JSON
with the network as `hailortcli parse-hef` describes it (architecture, network group, input and
output vstreams with their shapes as HailoRT reports them: NHWC -> [H, W, C], NC -> [C]).
"""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path
from typing import Any

MAGIC = b"\x01HEF-standin"
_HEADER = struct.Struct("<II")

# hailort.h status numbers used here.
HEF_FILE_CORRUPTED = 91
HEF_NOT_SUPPORTED = 92


class HefError(Exception):
    """Raised with the HailoRT status the real library returns for the same defect."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def encode(spec: dict[str, Any]) -> bytes:
    body = json.dumps(spec, sort_keys=True).encode()
    return MAGIC + _HEADER.pack(len(body), zlib.crc32(body)) + body


def decode(data: bytes) -> dict[str, Any]:
    if not data.startswith(MAGIC):
        raise HefError(HEF_NOT_SUPPORTED, f"HEF magic does not match. detected magic - {data[:4].hex()}")
    start = len(MAGIC) + _HEADER.size
    length, crc = _HEADER.unpack(data[len(MAGIC) : start])
    body = data[start:]
    if len(body) != length:
        raise HefError(HEF_FILE_CORRUPTED, "HEF file length does not match")
    if zlib.crc32(body) != crc:
        raise HefError(HEF_FILE_CORRUPTED, "HEF crc does not match")
    spec: dict[str, Any] = json.loads(body)
    return spec


def read(path: Path) -> dict[str, Any]:
    return decode(Path(path).read_bytes())


def network(
    net: str,
    arch: str,
    input_shape: list[int],
    outputs: dict[str, int],
    activations: dict[str, str] | None = None,
    sources: dict[str, str] | None = None,
    hailort: str = "4.23",
    digest: str = "",
    layers: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A spec as the stand-in DFC compiles it: one input (NHWC [H, W, C]), NC outputs. The
    activation ending each output is the stand-in's. ``layers``: the network the stand-in device
    computes (the ONNX model's dense chain, see standin_dfc.py); without it, a fixed function."""
    acts = activations or {}
    return {
        "standin_layers": layers or [],
        "arch": arch,
        "network_group": net,
        "hailort": hailort,
        "digest": digest,
        "inputs": [{"name": f"{net}/input_layer1", "order": "NHWC", "shape": list(input_shape)}],
        "outputs": [
            {
                "name": f"{net}/{name}",
                "order": "NC",
                "shape": [size],
                "standin_activation": acts.get(name, "tanh"),
                # The ONNX tensor this output was compiled from (the device computes it).
                "standin_source": (sources or {}).get(name, ""),
            }
            for name, size in outputs.items()
        ],
    }


def describe(spec: dict[str, Any]) -> str:
    """`hailortcli parse-hef` output for the spec (format of Hef::get_description, as printed by
    hailort/hailortcli/parse_hef_command.cpp; sample outputs in users' docs). Default vstream
    formats are the quantized ones (UINT8): the application asks for FLOAT32 itself."""

    def fmt(v: dict[str, Any]) -> str:
        dims = "x".join(str(d) for d in v["shape"])
        return f"{v['name']} UINT8, {v['order']}({dims})"

    net = spec["network_group"]
    lines = [
        f"Architecture HEF was compiled for: {spec['arch'].upper()}",
        f"Network group name: {net}, Single Context",
        f"    Network name: {net}/{net}",
        "        VStream infos:",
        *(f"            Input  {fmt(v)}" for v in spec["inputs"]),
        *(f"            Output {fmt(v)}" for v in spec["outputs"]),
    ]
    return "\n".join(lines) + "\n"
