"""Compares what HailoRT did on a real device with what the lab's stand-in does (lab only).

fidelity.py DEVICE.json MANIFEST.json
    DEVICE.json: `hailo-sidecar fidelity` on the device, plus the host's texts the acceptance
    playbook adds (hailortcli --version, fw-control identify, parse-hef of the deployed HEF, the
    driver's version file). The stand-in is run the same way, against a stand-in HEF with the
    release manifest's shapes; every difference is printed, one per line ("same: ..." lines for
    what matched), so the first hardware run says where the lab was wrong. Exit 0 either way.
"""

from __future__ import annotations

import json
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "standins"))
sys.path.insert(0, str(HERE.parents[1]))

# The labels `hailortcli fw-control identify` prints (fw_control_command.cpp), which the stand-in
# hailortcli prints too (lab/standins/hailort_apt.py).
IDENTIFY_LABELS = ["Control Protocol Version", "Firmware Version", "Logger Version", "Board Name",
                   "Device Architecture", "Serial Number", "Part Number", "Product Name"]  # fmt: skip


def standin(manifest: dict[str, Any]) -> dict[str, Any]:
    """The stand-in's observations for a HEF of the manifest's shapes."""
    import standin_hef
    from hailo_platform import standin as controls

    from sidecar_app.tools.fidelity import observe

    work = Path(tempfile.mkdtemp(prefix="fidelity-"))
    shape = manifest["input"]["hef_shape"]
    outputs = {name: shape_[-1] for name, shape_ in manifest["outputs"].items()}
    spec = standin_hef.network(
        "net", manifest["hw_arch"], shape, {"fc2": outputs["latent"], "fc3": outputs["motif_scores"]}
    )
    (work / "model.hef").write_bytes(standin_hef.encode(spec))
    controls.reset()
    # 10 ms a frame: the push of one frame past the bound is not raced by the first frame's
    # completion (on a device, the C++ push loop is far faster than a frame).
    controls.CONTROL["frame_time_s"] = 0.01
    obs = observe(work / "model.hef")
    obs["texts"] = {
        "parse_hef": standin_hef.describe(spec),
        "version": f"HailoRT-CLI version {obs['hailort']}",
        "identify_labels": IDENTIFY_LABELS,
    }
    return obs


def _shape_form(text: str) -> str:
    """parse-hef's lines with names and numbers masked: the format, not the values."""
    return re.sub(r"\d+", "N", re.sub(r"\S+/\S+", "NAME", text)).strip()


def compare(device: dict[str, Any], lab: dict[str, Any]) -> list[str]:
    out = []

    def same(what: str, a: Any, b: Any) -> None:
        out.append(f"same: {what}: {a}" if a == b else f"DIFFERS: {what}: device {a!r}, stand-in {b!r}")

    same("async queue size", device.get("async_queue_size"), lab.get("async_queue_size"))
    # The stand-in holds twice the queue, as 4.23's pipeline is built (async_pipeline_builder.cpp).
    same(
        "frames an idle model is granted (wait_for_async_ready)",
        device.get("wait_bound"),
        lab.get("wait_bound"),
    )
    same("input shape (HailoRT's [H, W, C])", device["input"]["shape"], lab["input"]["shape"])
    same("output shapes", sorted(device["outputs"].values()), sorted(lab["outputs"].values()))
    for case in ("second_vdevice", "wait_past_bound", "push_to_bound", "push_past_bound", "push_after_that"):
        d, s = device.get(case) or {}, lab.get(case) or {}
        for key in ("class", "status", "cause", "message"):
            same(f"{case}: {key}", d.get(key), s.get(key))
    texts = device.get("texts") or {}
    version = texts.get("version", "")
    same(
        "hailortcli --version form",
        re.sub(r"\d+\.\d+\.\d+", "X.Y.Z", version.strip()),
        "HailoRT-CLI version X.Y.Z",
    )
    labels = [ln.split(":", 1)[0].strip() for ln in texts.get("identify", "").splitlines() if ":" in ln]
    same("fw-control identify labels", [x for x in labels if x != "Executing on device"], IDENTIFY_LABELS)
    same("parse-hef form", _shape_form(texts.get("parse_hef", "")), _shape_form(lab["texts"]["parse_hef"]))
    driver = texts.get("driver_version", "").strip()
    same("driver version file form", bool(re.fullmatch(r"\d+\.\d+\.\d+", driver)), True)
    return out


def main(argv: list[str]) -> int:
    device = json.loads(Path(argv[0]).read_text())
    manifest = json.loads(Path(argv[1]).read_text())
    for line in compare(device, standin(manifest)):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
