"""Lab scaffolding for the rollout tests: model releases as GPUSrv makes them.

release.py release OUT NAME VERSION CONFIG_VERSION [--broken | --golden-mismatch | --wrong-shape]
    compiles the reference model with hailo-compile and the stand-in DFC (lab/standins) into
    OUT/NAME/VERSION (model.hef, model.hef.sha256, model.onnx, golden.json, manifest.json), unsigned
    (lab/playbooks/releases.yml has GPUSrv sign it). Releases that must be refused or rolled back:
    --broken           the model's final sigmoid dropped: it loads and serves, but its motif scores
                       leave [0, 1], so the contract smoke fails (rolled back)
    --golden-mismatch  golden.json from another model (its manifest names that file): the sidecar
                       refuses the candidate before switching
    --wrong-shape      a model with 10 motif scores in a manifest that says 12: refused at load
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def release(out: Path, name: str, version: str, config_version: str, variant: str = "") -> Path:
    import onnx

    from sidecar_app.tools.refmodel import calibration_set, reference_model

    broken = variant == "--broken"
    work = Path(tempfile.mkdtemp(prefix="lab-release-"))
    model = reference_model(work / "model.onnx", num_motifs=10 if variant == "--wrong-shape" else 12)
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
    path = os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}", "PYTHONPATH": path}
    argv = [sys.executable, "-m", "hef_compiler.cli", "--onnx", str(model), "--calib", str(calib),
            "--hw-arch", "hailo8", "--version", version, "--config-version", config_version,
            "--model-name", name, "--out", str(out)]  # fmt: skip
    subprocess.run(argv, check=True, env=env)
    folder = out / name / version
    if variant in ("--golden-mismatch", "--wrong-shape"):
        _edit(folder, variant, calib)
    return folder


def _edit(folder: Path, variant: str, calib: Path) -> None:
    """Changes the release before it is signed, as a faulty build could (releases.yml signs after)."""
    import hashlib
    import json

    from hef_compiler.golden import encode, golden
    from sidecar_app.tools.refmodel import reference_model

    manifest = json.loads((folder / "manifest.json").read_text())
    if variant == "--golden-mismatch":
        other = reference_model(Path(tempfile.mkdtemp()) / "other.onnx", seed=99)
        data = encode(golden(other, calib, manifest["golden"]["windows"]))
        for f in (folder / "golden.json",):
            f.chmod(0o644)
            f.write_bytes(data)
        manifest["golden"]["sha256"] = hashlib.sha256(data).hexdigest()
    else:
        manifest["num_motifs"] = 12
    (folder / "manifest.json").chmod(0o644)
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    cmd, *args = sys.argv[1:]
    if cmd != "release":
        sys.exit(__doc__)
    print(release(Path(args[0]), args[1], args[2], args[3], (args[4:] or [""])[0]))
