"""Lab scaffolding for the rollout tests: model releases as GPUSrv makes them.

release.py release OUT NAME VERSION CONFIG_VERSION [--broken]
    compiles the reference model with hailo-compile and the stand-in DFC (lab/standins) into
    OUT/NAME/VERSION (model.hef, model.hef.sha256, model.onnx, manifest.json). --broken drops the
    model's final sigmoid: it loads and serves, but its motif scores leave [0, 1], so the
    contract smoke fails (a release that must be rolled back).
"""

from __future__ import annotations

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
    sys.path.insert(0, str(ROOT / "lab" / "standins"))
    import standin_dfc

    bindir, site = standin_dfc.install(work / "dfc")
    env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}", "PYTHONPATH": str(site)}
    argv = [str(Path(sys.executable).parent / "hailo-compile"), "--onnx", str(model), "--calib", str(calib),
            "--hw-arch", "hailo8", "--version", version, "--config-version", config_version,
            "--model-name", name, "--out", str(out)]  # fmt: skip
    subprocess.run(argv, check=True, env=env)
    return out / name / version


if __name__ == "__main__":
    cmd, *args = sys.argv[1:]
    if cmd != "release":
        sys.exit(__doc__)
    print(release(Path(args[0]), args[1], args[2], args[3], "--broken" in args[4:]))
