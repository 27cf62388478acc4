"""Stand-in for the Hailo Dataflow Compiler's `hailo` CLI (the DFC cannot be installed here).

It accepts the documented invocations (parser onnx / optimize / compiler, see
hef_compiler/dfc.py), records each call as a JSON line in $HAILO_STANDIN_DFC_LOG, and writes
deterministic outputs: HARs are JSON, the HEF is the stand-in format that
tests/fakes/hailo_platform serves. $HAILO_STANDIN_DFC_FAIL=STAGE makes that stage fail.
``install(root)`` puts a `hailo` command and hailo_dataflow_compiler metadata under root;
``wheel(dest)`` packs this module as hailo_dataflow_compiler-VERSION-py3-none-any.whl (console
script `hailo`) for building the compiler image.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import sys
import zipfile
from pathlib import Path

VERSION = "3.33.0"


def install(root: Path, version: str = VERSION) -> tuple[Path, Path]:
    """Writes ROOT/bin/hailo and ROOT/site/hailo_dataflow_compiler-VERSION.dist-info."""
    bindir, site = root / "bin", root / "site"
    bindir.mkdir(parents=True, exist_ok=True)
    exe = bindir / "hailo"
    exe.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{Path(__file__).resolve()}" "$@"\n')
    exe.chmod(0o755)
    dist = site / f"hailo_dataflow_compiler-{version}.dist-info"
    dist.mkdir(parents=True, exist_ok=True)
    (dist / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: hailo_dataflow_compiler\nVersion: {version}\n"
    )
    return bindir, site


def wheel(dest: Path, version: str = VERSION) -> Path:
    """The stand-in as an installable wheel, with the DFC's numpy and onnx dependencies."""
    info = f"hailo_dataflow_compiler-{version}.dist-info"
    meta = f"Metadata-Version: 2.1\nName: hailo_dataflow_compiler\nVersion: {version}\n"
    files = {
        "standin_dfc.py": Path(__file__).read_bytes(),
        f"{info}/METADATA": (meta + "Requires-Dist: numpy\nRequires-Dist: onnx\n").encode(),
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: x\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        f"{info}/entry_points.txt": b"[console_scripts]\nhailo = standin_dfc:entry\n",
    }
    record = []
    for name, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(data)}")
    path = dest / f"hailo_dataflow_compiler-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
        z.writestr(f"{info}/RECORD", "\n".join([*record, f"{info}/RECORD,,"]) + "\n")
    return path


def _digest(*parts: bytes) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(hashlib.sha256(p).digest())
    return h.hexdigest()


def _parse(a: argparse.Namespace) -> None:
    import onnx

    model = onnx.load(a.model)
    outputs = {o.name: o.type.tensor_type.shape.dim[-1].dim_value for o in model.graph.output}
    digest = _digest(Path(a.model).read_bytes(), a.net_name.encode(), a.hw_arch.encode())
    har = {"stage": "parsed", "net": a.net_name, "arch": a.hw_arch, "outputs": outputs, "digest": digest}
    Path(a.har_path).write_text(json.dumps(har, sort_keys=True))


def _optimize(a: argparse.Namespace) -> None:
    import numpy as np

    har = json.loads(Path(a.har).read_text())
    if har["stage"] != "parsed" or har["arch"] != a.hw_arch:
        sys.exit(f"[error] {a.har} is not a parsed HAR for {a.hw_arch}")
    calib = np.load(a.calib_set_path, allow_pickle=False)
    script = Path(a.model_script).read_bytes() if a.model_script else b""
    har.update(stage="optimized", calib_samples=int(calib.shape[0]),
               digest=_digest(har["digest"].encode(), calib.tobytes(), script))  # fmt: skip
    Path(a.output_har_path).write_text(json.dumps(har, sort_keys=True))


def _compile(a: argparse.Namespace) -> None:
    har = json.loads(Path(a.har).read_text())
    if har["stage"] != "optimized":
        sys.exit(f"[error] {a.har} is not optimized: run hailo optimize first")
    latent = next(n for n, d in har["outputs"].items() if d == 64)
    motif = next(n for n in har["outputs"] if n != latent)
    net = har["net"]
    outputs = {f"{net}/{latent}": [64], f"{net}/{motif}": [har["outputs"][motif]]}
    hef = {
        "standin_hef": 1,
        "arch": a.hw_arch,
        "input": [1, 100, 9],
        "digest": har["digest"],
        "outputs": outputs,
    }
    Path(a.output_dir, f"{har['net']}.hef").write_text(json.dumps(hef, sort_keys=True))


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="hailo")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("parser")
    s.add_argument("framework", choices=["onnx"])
    s.add_argument("model")
    s.add_argument("--net-name", required=True)
    s.add_argument("--hw-arch", required=True, choices=["hailo8", "hailo8l"])
    s.add_argument("--har-path", required=True)
    s.add_argument("-y", action="store_true")
    s.set_defaults(func=_parse, stage="parse")
    s = sub.add_parser("optimize")
    s.add_argument("har")
    s.add_argument("--hw-arch", required=True, choices=["hailo8", "hailo8l"])
    s.add_argument("--calib-set-path", required=True)
    s.add_argument("--model-script")
    s.add_argument("--output-har-path", required=True)
    s.set_defaults(func=_optimize, stage="optimize")
    s = sub.add_parser("compiler")
    s.add_argument("har")
    s.add_argument("--hw-arch", required=True, choices=["hailo8", "hailo8l"])
    s.add_argument("--output-dir", required=True)
    s.set_defaults(func=_compile, stage="compile")
    args = p.parse_args(argv)
    log = os.environ.get("HAILO_STANDIN_DFC_LOG")
    if log:
        with open(log, "a") as f:
            f.write(json.dumps({"argv": argv, "cwd": os.getcwd()}) + "\n")
    if os.environ.get("HAILO_STANDIN_DFC_FAIL") == args.stage:
        print(f"[error] stand-in {args.stage} failure requested", file=sys.stderr)
        return 1
    args.func(args)
    return 0


def entry() -> None:
    sys.exit(main(sys.argv[1:]))


if __name__ == "__main__":
    entry()
