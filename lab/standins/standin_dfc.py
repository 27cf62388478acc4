"""Stand-in for the Hailo Dataflow Compiler's `hailo` CLI (lab only: the DFC cannot be installed here).

It accepts the documented invocations (parser onnx / optimize / compiler, see
hef_compiler/dfc.py), records each call as a JSON line in $HAILO_STANDIN_DFC_LOG, and writes
deterministic outputs. What it copies from the real tool:
- A HAR is a tar archive holding NET.hn (the network as JSON: name, net_params, layers; an
  input_layer's output_shapes are NHWC with -1 for the batch) and NET.metadata.json (state,
  sdk_version) (the layout Netron's hailo.js reads, lutzroeder/netron source/hailo.js).
- The parser reads an ONNX input as NCHW and lays it out NHWC: [N, C, H, W] -> [-1, H, W, C], so
  [N, 1, 100, 9] becomes [-1, 100, 9, 1] (HAILO.md, from users' reports). How the real parser lays
  out a rank-3 [N, T, C] input is not known; this stand-in makes it [-1, 1, T, C].
- optimize refuses a calibration set whose per-sample shape is not the parsed input's (H, W, C).
- The HEF is the stand-in container (standin_hef.py) that the stand-in HailoRT reads, with the
  input as HailoRT reports it ([H, W, C]) and NC outputs. It carries the network it was compiled
  from when that is a chain of dense layers (Gemm with Relu/Tanh/Sigmoid, as the reference model
  is): the stand-in device then computes the model, with its outputs rounded to 8 bits as a
  quantized network's are, so a release's golden windows can be checked in hailo mode.
$HAILO_STANDIN_DFC_FAIL=STAGE makes that stage fail. ``install(root)`` puts a `hailo` command and
hailo_dataflow_compiler metadata under root; ``wheel(dest)`` packs this module (and
standin_hef.py) as hailo_dataflow_compiler-VERSION-py3-none-any.whl (console script `hailo`) for
building the compiler image.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import os
import sys
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import standin_hef

VERSION = "3.33.0"
HERE = Path(__file__).resolve().parent


def install(root: Path, version: str = VERSION) -> tuple[Path, Path]:
    """Writes ROOT/bin/hailo and ROOT/site/hailo_dataflow_compiler-VERSION.dist-info."""
    bindir, site = root / "bin", root / "site"
    bindir.mkdir(parents=True, exist_ok=True)
    exe = bindir / "hailo"
    exe.write_text(
        f'#!/bin/sh\nPYTHONPATH="{HERE}${{PYTHONPATH:+:$PYTHONPATH}}" exec "{sys.executable}" '
        f'"{Path(__file__).resolve()}" "$@"\n'
    )
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
        "standin_hef.py": (HERE / "standin_hef.py").read_bytes(),
        f"{info}/METADATA": (meta + "Requires-Dist: numpy\nRequires-Dist: onnx\n").encode(),
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: x\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        f"{info}/entry_points.txt": b"[console_scripts]\nhailo = standin_dfc:entry\n",
    }
    record = []
    for name, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(data)}")
    files[f"{info}/RECORD"] = ("\n".join([*record, f"{info}/RECORD,,"]) + "\n").encode()
    path = dest / f"hailo_dataflow_compiler-{version}-py3-none-any.whl"
    # The same bytes for the same stand-in, as a vendor's wheel file is: fixed times and modes
    # (images/compiler/build.sh tags the image by the wheel's hash).
    with zipfile.ZipFile(path, "w") as z:
        for name, data in files.items():
            entry = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            entry.external_attr = 0o644 << 16
            z.writestr(entry, data)
    return path


def _digest(*parts: bytes) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(hashlib.sha256(p).digest())
    return h.hexdigest()


def _nhwc(dims: list[int]) -> list[int]:
    """The parser's layout of an ONNX input (batch as -1)."""
    if len(dims) == 4:  # NCHW -> NHWC
        return [-1, dims[2], dims[3], dims[1]]
    if len(dims) == 3:  # [N, T, C]: unknown for the real parser; the stand-in puts H = 1
        return [-1, 1, dims[1], dims[2]]
    sys.exit(f"[error] unsupported input rank {len(dims)}")


def _write_har(path: Path, net: str, hn: dict[str, Any], state: str) -> None:
    members = {
        f"{net}.hn": json.dumps(hn, sort_keys=True).encode(),
        f"{net}.metadata.json": json.dumps(
            {"state": state, "sdk_version": VERSION, "hn": f"{net}.hn"}
        ).encode(),
    }
    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), 0
            tar.addfile(info, io.BytesIO(data))


def _read_har(path: str) -> tuple[dict[str, Any], dict[str, Any]]:
    with tarfile.open(path) as tar:
        names = tar.getnames()
        hn_name = next(n for n in names if n.endswith(".hn"))
        meta_name = next(n for n in names if n.endswith(".metadata.json"))
        hn = json.loads(tar.extractfile(hn_name).read())  # type: ignore[union-attr]
        meta = json.loads(tar.extractfile(meta_name).read())  # type: ignore[union-attr]
    return hn, meta


def _b64(a: Any) -> str:
    import numpy as np

    return base64.b64encode(np.ascontiguousarray(a, dtype="<f4").tobytes()).decode()


def _dense_chain(model: Any) -> list[dict[str, Any]]:
    """The model as a chain of dense layers [{w, b, shape, act, name}], or [] when it is not one."""
    from onnx import numpy_helper

    weights = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    chain: list[dict[str, Any]] = []
    for node in model.graph.node:
        if node.op_type in ("Reshape", "Flatten") and not chain:
            continue
        if node.op_type == "Gemm":
            attrs = {a.name: a for a in node.attribute}
            if any(attrs[k].i for k in ("transA",) if k in attrs) or node.input[1] not in weights:
                return []
            w = weights[node.input[1]]
            if "transB" in attrs and attrs["transB"].i:
                w = w.T
            b = weights.get(node.input[2]) if len(node.input) > 2 else None
            bias = b if b is not None else w[0] * 0
            chain.append({"w": _b64(w), "b": _b64(bias), "shape": list(w.shape), "act": "none",
                          "name": node.output[0]})  # fmt: skip
        elif node.op_type in ("Relu", "Tanh", "Sigmoid") and chain and chain[-1]["act"] == "none":
            chain[-1].update(act=node.op_type.lower(), name=node.output[0])
        else:
            return []
    return chain


def _input_layer(hn: dict[str, Any]) -> dict[str, Any]:
    return next(v for v in hn["layers"].values() if v["type"] == "input_layer")


def _parse(a: argparse.Namespace) -> None:
    import onnx

    model = onnx.load(a.model)
    inits = {i.name for i in model.graph.initializer}
    (inp,) = [i for i in model.graph.input if i.name not in inits]
    dims = [d.dim_value if d.HasField("dim_value") else -1 for d in inp.type.tensor_type.shape.dim]
    shape = _nhwc(dims)
    outputs = {o.name: o.type.tensor_type.shape.dim[-1].dim_value for o in model.graph.output}
    sigmoid = {n.output[0] for n in model.graph.node if n.op_type == "Sigmoid"}
    digest = _digest(Path(a.model).read_bytes(), a.net_name.encode(), a.hw_arch.encode())
    net = a.net_name
    layers: dict[str, Any] = {
        f"{net}/input_layer1": {"type": "input_layer", "input": [], "output": [f"{net}/fc1"],
                                "input_shapes": [shape], "output_shapes": [shape],
                                "original_names": [inp.name]},
    }  # fmt: skip
    # fc2 carries the latent (64), fc3 the other output, as a small MLP's layers would be named.
    latent = next(n for n, d in outputs.items() if d == 64)
    for layer, onnx_name in (("fc2", latent), ("fc3", next(n for n in outputs if n != latent))):
        layers[f"{net}/{layer}"] = {
            "type": "dense", "input": [], "output": [f"{net}/output_layer_{layer}"],
            "output_shapes": [[-1, outputs[onnx_name]]], "original_names": [onnx_name],
            "standin_activation": "sigmoid" if onnx_name in sigmoid else "tanh",
        }  # fmt: skip
    hn = {"name": net, "net_params": {"version": VERSION, "hw_arch": a.hw_arch, "standin_digest": digest,
                                      "standin_layers": _dense_chain(model)},
          "layers": layers}  # fmt: skip
    _write_har(Path(a.har_path), net, hn, "native")


def _optimize(a: argparse.Namespace) -> None:
    import numpy as np

    hn, meta = _read_har(a.har)
    if meta["state"] != "native" or hn["net_params"]["hw_arch"] != a.hw_arch:
        sys.exit(f"[error] {a.har} is not a parsed HAR for {a.hw_arch}")
    calib = np.load(a.calib_set_path, allow_pickle=False)
    want = tuple(_input_layer(hn)["output_shapes"][0][1:])
    if tuple(calib.shape[1:]) != want:
        sys.exit(
            f"[error] calibration set shape {tuple(calib.shape)} does not match the network input "
            f"(N, {', '.join(map(str, want))})"
        )
    script = Path(a.model_script).read_bytes() if a.model_script else b""
    hn["net_params"]["standin_digest"] = _digest(
        hn["net_params"]["standin_digest"].encode(), calib.tobytes(), script
    )
    hn["net_params"]["calib_samples"] = int(calib.shape[0])
    _write_har(Path(a.output_har_path), hn["name"], hn, "quantized")


def _compile(a: argparse.Namespace) -> None:
    hn, meta = _read_har(a.har)
    if meta["state"] != "quantized":
        sys.exit(f"[error] {a.har} is not optimized: run hailo optimize first")
    net = hn["name"]
    dense = {k.split("/")[-1]: v for k, v in hn["layers"].items() if v["type"] == "dense"}
    spec = standin_hef.network(
        net, a.hw_arch, _input_layer(hn)["output_shapes"][0][1:],
        {name: v["output_shapes"][0][-1] for name, v in dense.items()},
        {name: v["standin_activation"] for name, v in dense.items()},
        {name: v["original_names"][0] for name, v in dense.items()},
        digest=hn["net_params"]["standin_digest"],
        layers=hn["net_params"].get("standin_layers"),
    )  # fmt: skip
    Path(a.output_dir, f"{net}.hef").write_bytes(standin_hef.encode(spec))


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
