"""hailo-compile: the compiler image's entry point (also usable wherever the DFC is installed)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import CompileError, InputError
from .inputs import HW_ARCHS, Request
from .pipeline import Compiler


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hailo-compile",
        description="Compile an ONNX sensor model to a versioned .hef release with the Hailo DFC.",
        epilog="Exit codes: 0 done or up to date, 2 invalid input, 3 release exists with other "
        "inputs, 4 DFC missing or failed.",
    )
    p.add_argument("--onnx", type=Path, required=True, help="the model, input [N, 100, 9] or [N, 1, 100, 9]")
    p.add_argument(
        "--calib", type=Path, required=True,
        help="calibration set .npy, float32 (N, H, W, C) as the DFC parses the input (NHWC)",
    )  # fmt: skip
    p.add_argument("--hw-arch", default="hailo8", help=f"one of {', '.join(HW_ARCHS)} (default hailo8)")
    p.add_argument("--model-script", type=Path, help="optional DFC model script (.alls)")
    p.add_argument("--model-name", default="imu-encoder", help="release folder name (default imu-encoder)")
    p.add_argument("--version", required=True, help="release version, e.g. 1.4.0 (immutable)")
    p.add_argument("--config-version", required=True, help="reported by the sidecar in health and metrics")
    p.add_argument("--num-motifs", type=int, help="check the model's motif_scores length")
    p.add_argument("--out", type=Path, default=Path("/out"), help="release root (default /out)")
    p.add_argument("--cache-dir", type=Path, help="stage cache (default OUT/.cache)")
    p.add_argument("--hailort-version", help="HailoRT the HEF is for (default: paired with the DFC version)")
    p.add_argument(
        "--golden-windows", type=int, default=8,
        help="calibration windows shipped with the reference outputs (golden.json; default 8)",
    )  # fmt: skip
    p.add_argument(
        "--parity-report", type=Path, help="a hailo-sidecar parity report to record in the manifest"
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    req = Request(
        onnx=args.onnx, calib=args.calib, hw_arch=args.hw_arch, model_name=args.model_name,
        version=args.version, config_version=args.config_version, model_script=args.model_script,
        num_motifs=args.num_motifs, golden_windows=args.golden_windows, parity_report=args.parity_report,
    )  # fmt: skip
    try:
        result = Compiler(args.out, args.cache_dir).run(req, args.hailort_version)
    except InputError as exc:
        print("hailo-compile: invalid input, no release was written:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  - {problem}", file=sys.stderr)
        return exc.exit_code
    except CompileError as exc:
        print(f"hailo-compile: {exc}", file=sys.stderr)
        return exc.exit_code
    stages = ", ".join(f"{k} {v}" for k, v in result.stages.items())
    if not result.written:
        print(f"hailo-compile: {result.release} is up to date; compiled nothing ({stages})")
    elif result.compiled_nothing:
        print(f"hailo-compile: wrote {result.release} from the stage cache; compiled nothing ({stages})")
    else:
        print(f"hailo-compile: wrote {result.release} ({stages})")
    print(f"hef_sha256 {result.manifest['hef_sha256']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
