"""Parse, optimize, compile with a content-addressed stage cache; then the release folder.

Cache keys chain: parse = H(onnx, net, arch, dfc); optimize = H(parse, calib, script, arch, dfc);
compile = H(optimize, arch, dfc). Unchanged inputs reuse every stage and compile nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from .dfc import DfcCli, dfc_version, paired_hailort
from .errors import InputError, ReleaseExists
from .golden import FILE as GOLDEN_FILE
from .golden import encode as encode_golden
from .golden import golden
from .har import parsed_input_shape
from .inputs import Checked, Request, check, check_calib_layout, sha256_file

# Manifest fields that identify a build; a rerun that matches them changes nothing.
IDENTITY = ("onnx_sha256", "calib_sha256", "model_script_sha256", "hw_arch", "dfc_version", "config_version")


class Dfc(Protocol):
    def parse(self, onnx: Path, net_name: str, hw_arch: str, har: Path, workdir: Path) -> None:
        """ONNX to a parsed HAR (the DFC's parser stage)."""

    def optimize(
        self, har: Path, hw_arch: str, calib: Path, model_script: Path | None, out: Path, workdir: Path
    ) -> None:
        """The parsed HAR quantized with the calibration set (the optimize stage)."""

    def compile(self, har: Path, hw_arch: str, out_dir: Path, workdir: Path) -> Path:
        """The optimized HAR to a .hef in OUT_DIR (the compiler stage); returns its path."""


@dataclass
class Result:
    release: Path
    manifest: dict[str, object]
    stages: dict[str, str] = field(default_factory=dict)  # stage -> "cached" | "ran (N.N s)"
    written: bool = True

    @property
    def compiled_nothing(self) -> bool:
        return all(v == "cached" for v in self.stages.values())


def _key(*parts: str | None) -> str:
    return hashlib.sha256("\0".join(p or "-" for p in parts).encode()).hexdigest()


def _atomic_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.tmp{os.getpid()}")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def parity_summary(path: Path) -> dict[str, object]:
    """The parity result a release carries (hailo-sidecar parity --report): passed and its figures."""
    try:
        report = json.loads(path.read_text())
        summary = report["summary"]
        return {"passed": bool(report["passed"]), **{k: summary[k] for k in
                ("cosine_min", "max_abs_error", "topk_agreement_mean", "drift_fraction")}}  # fmt: skip
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError([f"--parity-report {path}: not a hailo-sidecar parity report ({exc})"]) from None


class Compiler:
    def __init__(self, out: Path, cache: Path | None = None, dfc: Dfc | None = None) -> None:
        self.out = out
        self.cache = cache or out / ".cache"
        self._dfc = dfc

    def _stage(
        self, name: str, key: str, suffix: str, stages: dict[str, str], run: Callable[[Path], Path]
    ) -> Path:
        cached = self.cache / name / f"{key}{suffix}"
        if cached.is_file():
            stages[name] = "cached"
            return cached
        t0 = time.monotonic()
        with tempfile.TemporaryDirectory(prefix=f"hailo-{name}-") as work:
            produced = run(Path(work))
            _atomic_copy(produced, cached)
        stages[name] = f"ran ({time.monotonic() - t0:.1f} s)"
        return cached

    def run(self, req: Request, hailort_override: str | None = None) -> Result:
        checked = check(req)
        for w in checked.warnings:
            print(f"hailo-compile: warning: {w}", file=sys.stderr)
        dfc_v = dfc_version()
        hailort = paired_hailort(dfc_v, hailort_override)
        release = self.out / req.model_name / req.version
        identity = {
            "onnx_sha256": checked.onnx_sha256,
            "calib_sha256": checked.calib_sha256,
            "model_script_sha256": checked.model_script_sha256,
            "hw_arch": req.hw_arch,
            "dfc_version": dfc_v,
            "config_version": req.config_version,
        }
        existing = self._existing(release, identity)
        if existing is not None:
            return Result(release, existing, dict.fromkeys(("parse", "optimize", "compile"), "cached"), False)

        dfc = self._dfc or DfcCli()
        net = req.model_name.replace("-", "_")
        stages: dict[str, str] = {}
        k_parse = _key("parse", checked.onnx_sha256, net, req.hw_arch, dfc_v)
        k_opt = _key(
            "optimize", k_parse, checked.calib_sha256, checked.model_script_sha256, req.hw_arch, dfc_v
        )
        k_comp = _key("compile", k_opt, req.hw_arch, dfc_v)

        def parse(work: Path) -> Path:
            har = work / f"{net}.har"
            dfc.parse(req.onnx.resolve(), net, req.hw_arch, har, work)
            return har

        parsed = self._stage("parse", k_parse, ".har", stages, parse)
        # The layout the DFC chose for the input decides the calibration set's shape.
        parsed_shape = parsed_input_shape(parsed)
        check_calib_layout(checked.calib_shape, parsed_shape)

        def optimize(work: Path) -> Path:
            har = work / f"{net}_optimized.har"
            script = req.model_script.resolve() if req.model_script else None
            dfc.optimize(parsed, req.hw_arch, req.calib.resolve(), script, har, work)
            return har

        optimized = self._stage("optimize", k_opt, ".har", stages, optimize)

        def compile_(work: Path) -> Path:
            out_dir = work / "out"
            out_dir.mkdir()
            return dfc.compile(optimized, req.hw_arch, out_dir, work)

        hef = self._stage("compile", k_comp, ".hef", stages, compile_)
        golden_bytes = encode_golden(golden(req.onnx, req.calib, req.golden_windows))
        manifest = self._manifest(req, checked, identity, hef, hailort, parsed_shape)
        manifest["golden"] = {"file": GOLDEN_FILE, "sha256": hashlib.sha256(golden_bytes).hexdigest(),
                              "windows": req.golden_windows}  # fmt: skip
        if req.parity_report is not None:
            manifest["parity"] = parity_summary(req.parity_report)
        self._write_release(release, hef, req.onnx, manifest, golden_bytes)
        return Result(release, manifest, stages)

    def _existing(self, release: Path, identity: dict[str, str | None]) -> dict[str, object] | None:
        path = release / "manifest.json"
        if not release.exists():
            return None
        try:
            manifest: dict[str, object] = json.loads(path.read_text())
        except (OSError, ValueError):
            raise ReleaseExists(
                f"{release} exists without a readable manifest.json: remove it or pick another --version"
            ) from None
        differs = [k for k in IDENTITY if manifest.get(k) != identity[k]]
        if differs:
            raise ReleaseExists(
                f"release {release} already exists with different {', '.join(differs)}: versions are "
                "immutable, pass a new --version"
            )
        hef = release / "model.hef"
        if not hef.is_file() or sha256_file(hef) != manifest.get("hef_sha256"):
            raise ReleaseExists(f"{hef} does not match its manifest's hef_sha256: the release was modified")
        onnx = release / "model.onnx"
        # Releases made before the ONNX travelled with the HEF have none; a present one must match.
        if onnx.exists() and sha256_file(onnx) != manifest.get("onnx_sha256"):
            raise ReleaseExists(f"{onnx} does not match its manifest's onnx_sha256: the release was modified")
        gold = manifest.get("golden")
        if isinstance(gold, dict):
            gold_file = release / str(gold.get("file"))
            if not gold_file.is_file() or sha256_file(gold_file) != gold.get("sha256"):
                raise ReleaseExists(f"{gold_file} does not match its manifest: the release was modified")
        return manifest

    @staticmethod
    def _manifest(
        req: Request,
        checked: Checked,
        identity: dict[str, str | None],
        hef: Path,
        hailort: str,
        parsed_shape: list[int],
    ) -> dict[str, object]:
        return {
            "model": req.model_name,
            "version": req.version,
            "hef": "model.hef",
            "hef_sha256": sha256_file(hef),
            **identity,
            "hailort_version": hailort,
            # onnx_shape as the model declares it; parsed_shape as the DFC parsed it (NHWC, batch -1);
            # hef_shape as HailoRT reports the HEF's input ([H, W, C]), what the sidecar checks.
            "input": {
                "name": checked.input_name,
                "onnx_shape": checked.input_shape,
                "parsed_shape": parsed_shape,
                "hef_shape": parsed_shape[1:],
                "dtype": "float32",
            },
            "outputs": checked.output_shapes,
            "num_motifs": checked.output_shapes["motif_scores"][-1],
            "calib_samples": checked.calib_samples,
            "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }

    @staticmethod
    def _write_release(
        release: Path, hef: Path, onnx: Path, manifest: dict[str, object], golden_bytes: bytes
    ) -> None:
        release.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{release.name}.", dir=release.parent))
        try:
            shutil.copyfile(hef, tmp / "model.hef")
            # The source model travels with the HEF: the sidecar's onnx mode and fallback, and parity.
            shutil.copyfile(onnx, tmp / "model.onnx")
            if sha256_file(tmp / "model.onnx") != manifest["onnx_sha256"]:
                raise InputError([f"{onnx} changed while compiling: run hailo-compile again"])
            (tmp / "model.hef.sha256").write_text(f"{manifest['hef_sha256']}  model.hef\n")
            (tmp / GOLDEN_FILE).write_bytes(golden_bytes)
            (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
            for f in tmp.iterdir():
                f.chmod(0o644)
            tmp.chmod(0o755)
            os.rename(tmp, release)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
