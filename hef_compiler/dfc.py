"""The one adapter to the Hailo Dataflow Compiler: its documented `hailo` CLI, run per stage.

parse:    hailo parser onnx M.onnx --net-name N --hw-arch A --har-path N.har -y
optimize: hailo optimize N.har --hw-arch A --calib-set-path C.npy [--model-script S.alls]
          --output-har-path N_optimized.har
compile:  hailo compiler N_optimized.har --hw-arch A --output-dir D   (writes D/N.hef)
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import deque
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from .errors import DfcError

DFC_DIST = "hailo_dataflow_compiler"
# DFC major.minor -> the HailoRT major.minor its HEFs are built for (Hailo Model Zoo changelog).
HAILORT_FOR_DFC = {
    "3.33": "4.23",
    "3.32": "4.22",
    "3.31": "4.21",
    "3.30": "4.20",
    "3.29": "4.19",
    "3.28": "4.18",
}


def dfc_version() -> str:
    try:
        return version(DFC_DIST)
    except PackageNotFoundError:
        raise DfcError(
            "the Hailo Dataflow Compiler is not installed (no hailo_dataflow_compiler package): build "
            "the compiler image with your DFC wheel (images/README.md)"
        ) from None


def paired_hailort(dfc: str, override: str | None) -> str:
    if override:
        return override
    key = ".".join(dfc.split(".")[:2])
    if key not in HAILORT_FOR_DFC:
        raise DfcError(
            f"DFC {dfc} is not in the pairing table ({', '.join(sorted(HAILORT_FOR_DFC))}); pass "
            "--hailort-version with the HailoRT version its HEFs are meant for"
        )
    return HAILORT_FOR_DFC[key]


class DfcCli:
    def __init__(self, exe: str = "hailo") -> None:
        found = shutil.which(exe)
        if not found:
            raise DfcError(
                f"the DFC command {exe!r} is not on PATH: is the DFC wheel installed in this environment?"
            )
        self.exe = found

    def _run(self, stage: str, args: list[str], workdir: Path) -> None:
        cmd = [self.exe, *args]
        print(f"hailo-compile: {stage}: {' '.join(cmd)}", file=sys.stderr, flush=True)
        # The DFC writes its own logs into the working directory; ours is a scratch folder. Its
        # output is streamed to stderr (stdout carries only the result) and the tail is kept.
        tail: deque[str] = deque(maxlen=3)
        with subprocess.Popen(
            cmd, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        ) as proc:
            for line in proc.stdout or ():
                sys.stderr.write(line)
                if line.strip():
                    tail.append(line.strip())
        if proc.returncode != 0:
            raise DfcError(f"DFC {stage} failed (exit {proc.returncode}): {' | '.join(tail) or 'no output'}")

    def parse(self, onnx: Path, net_name: str, hw_arch: str, har: Path, workdir: Path) -> None:
        self._run(
            "parse",
            ["parser", "onnx", str(onnx), "--net-name", net_name, "--hw-arch", hw_arch,
             "--har-path", str(har), "-y"],
            workdir,
        )  # fmt: skip

    def optimize(
        self, har: Path, hw_arch: str, calib: Path, model_script: Path | None, out: Path, workdir: Path
    ) -> None:
        args = ["optimize", str(har), "--hw-arch", hw_arch, "--calib-set-path", str(calib)]
        if model_script is not None:
            args += ["--model-script", str(model_script)]
        self._run("optimize", [*args, "--output-har-path", str(out)], workdir)

    def compile(self, har: Path, hw_arch: str, out_dir: Path, workdir: Path) -> Path:
        self._run(
            "compile", ["compiler", str(har), "--hw-arch", hw_arch, "--output-dir", str(out_dir)], workdir
        )
        hefs = sorted(out_dir.glob("*.hef"))
        if len(hefs) != 1:
            raise DfcError(f"DFC compile wrote {len(hefs)} .hef files into {out_dir}, expected one")
        return hefs[0]
