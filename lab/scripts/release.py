"""Lab scaffolding for the Pi scenarios: model releases as GPUSrv makes them, and the image to run.

lab_release.py release OUT NAME VERSION CONFIG_VERSION [--broken]
    compiles the reference model with hailo-compile and the stand-in DFC (tests/fakes/dfc) into
    OUT/NAME/VERSION (model.hef, model.hef.sha256, model.onnx, manifest.json). --broken drops the
    model's final sigmoid: it loads and serves, but its motif scores leave [0, 1], so the
    contract smoke fails (a release that must be rolled back).
lab_release.py image LIST OUT_FILE
    writes LIST's linux/arm64 manifest as a digest reference (what a Pi 5 pulls) to OUT_FILE.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def release(out: Path, name: str, version: str, config_version: str, broken: bool) -> Path:
    import onnx

    from sidecar_app.refmodel import calibration_set, reference_model

    work = Path(tempfile.mkdtemp(prefix="lab-release-"))
    model = reference_model(work / "model.onnx")
    if broken:
        m = onnx.load(str(model))
        for node in m.graph.node:
            if node.op_type == "Sigmoid":
                node.op_type = "Identity"
        model.write_bytes(m.SerializeToString(deterministic=True))
    calib = calibration_set(work / "calib.npy", 64)
    sys.path.insert(0, str(ROOT / "tests" / "fakes" / "dfc"))
    import standin_dfc

    bindir, site = standin_dfc.install(work / "dfc")
    env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}", "PYTHONPATH": str(site)}
    argv = [str(Path(sys.executable).parent / "hailo-compile"), "--onnx", str(model), "--calib", str(calib),
            "--hw-arch", "hailo8", "--version", version, "--config-version", config_version,
            "--model-name", name, "--out", str(out)]  # fmt: skip
    subprocess.run(argv, check=True, env=env)
    return out / name / version


def image(list_ref: str, out_file: Path) -> str:
    raw = subprocess.run(["docker", "buildx", "imagetools", "inspect", "--raw", list_ref],
                         check=True, capture_output=True, text=True).stdout  # fmt: skip
    (arm64,) = [m for m in json.loads(raw)["manifests"] if m["platform"]["architecture"] == "arm64"]
    ref = f"{list_ref.rsplit(':', 1)[0]}@{arm64['digest']}"
    out_file.write_text(ref)
    return ref


if __name__ == "__main__":
    cmd, *args = sys.argv[1:]
    if cmd == "release":
        print(release(Path(args[0]), args[1], args[2], args[3], "--broken" in args[4:]))
    elif cmd == "image":
        print(image(args[0], Path(args[1])))
    else:
        sys.exit(__doc__)
