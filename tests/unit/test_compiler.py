"""hailo-compile orchestration against the stand-in DFC (lab/standins): input checks, the
documented CLI calls, the stage cache, immutable releases, and serving the compiled HEF."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import standin_dfc  # the stand-in, from lab/standins (on sys.path: conftest)
from onnx import TensorProto, helper
from test_build_contexts import build_context

from hef_compiler.cli import main
from hef_compiler.inputs import sha256_file
from sidecar_app.backends.hailo import HailoBackend
from sidecar_app.backends.onnx import OnnxBackend
from sidecar_app.tools.refmodel import calibration_set, reference_model

pytestmark = pytest.mark.usefixtures("dfc")
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def dfc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Installs the stand-in `hailo` and its package metadata; returns the call log."""
    bindir, site = standin_dfc.install(tmp_path / "dfc")
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    monkeypatch.syspath_prepend(str(site))
    log = tmp_path / "dfc-calls.jsonl"
    monkeypatch.setenv("HAILO_STANDIN_DFC_LOG", str(log))
    monkeypatch.delenv("HAILO_STANDIN_DFC_FAIL", raising=False)
    return log


@pytest.fixture
def inputs(tmp_path: Path) -> dict[str, Path]:
    d = tmp_path / "in"
    script = d / "model.alls"
    d.mkdir()
    script.write_text("model_optimization_flavor(optimization_level=0)\n")
    return {
        "onnx": reference_model(d / "model.onnx"),
        "calib": calibration_set(d / "calib.npy", 64),
        "script": script,
        "out": tmp_path / "out",
    }


def calls(log: Path) -> list[list[str]]:
    if not log.exists():
        return []
    return [json.loads(line)["argv"] for line in log.read_text().splitlines()]


def run(inputs: dict[str, Path], *extra: str, version: str = "1.0.0", **over: Path) -> int:
    p = {**inputs, **over}
    argv = ["--onnx", str(p["onnx"]), "--calib", str(p["calib"]), "--hw-arch", "hailo8",
            "--version", version, "--config-version", "cfg-7", "--out", str(p["out"]), *extra]  # fmt: skip
    return main(argv)


def test_release_files_and_manifest(inputs: dict[str, Path], dfc: Path) -> None:
    assert run(inputs, "--model-script", str(inputs["script"])) == 0
    rel = inputs["out"] / "imu-encoder" / "1.0.0"
    names = ["golden.json", "manifest.json", "model.hef", "model.hef.sha256", "model.onnx"]
    assert sorted(p.name for p in rel.iterdir()) == names
    # The checksum file is in sha256sum format: the Pi verifies with `sha256sum -c`.
    subprocess.run(["sha256sum", "--check", "--strict", "model.hef.sha256"], cwd=rel, check=True)
    m = json.loads((rel / "manifest.json").read_text())
    assert m["hef_sha256"] == sha256_file(rel / "model.hef")
    assert m["onnx_sha256"] == sha256_file(inputs["onnx"]) == sha256_file(rel / "model.onnx")
    assert m["calib_sha256"] == sha256_file(inputs["calib"])
    assert m["model_script_sha256"] == sha256_file(inputs["script"])
    assert (m["dfc_version"], m["hailort_version"], m["hw_arch"]) == ("3.33.0", "4.23", "hailo8")
    assert (m["model"], m["version"], m["config_version"]) == ("imu-encoder", "1.0.0", "cfg-7")
    # The reference model's input is [N, 100, 9]: the stand-in DFC parses it as NHWC [-1, 1, 100, 9].
    assert m["input"] == {
        "name": "x", "onnx_shape": ["N", 100, 9], "parsed_shape": [-1, 1, 100, 9], "hef_shape": [1, 100, 9],
        "dtype": "float32",
    }  # fmt: skip
    assert m["outputs"] == {"latent": [1, 64], "motif_scores": [1, 12]}
    assert m["num_motifs"] == 12 and m["calib_samples"] == 64
    assert m["created_at"].endswith("Z")
    # Golden windows: calibration windows and the ONNX reference's outputs, named by sha256.
    gold = json.loads((rel / "golden.json").read_text())
    assert m["golden"] == {"file": "golden.json", "sha256": sha256_file(rel / "golden.json"), "windows": 8}
    calib = np.load(inputs["calib"])[:8].reshape(8, 100, 9)
    assert np.array_equal(np.asarray(gold["windows"], np.float32), calib)
    onnx = OnnxBackend(inputs["onnx"], 12)
    onnx.load()
    latent, motifs = onnx.infer(calib)
    assert np.allclose(gold["latent"], latent, atol=1e-5) and np.allclose(
        gold["motif_scores"], motifs, atol=1e-5
    )
    assert "parity" not in m


def test_a_parity_report_goes_into_the_manifest(inputs: dict[str, Path], tmp_path: Path) -> None:
    report = tmp_path / "parity.json"
    summary = {"cosine_min": 0.999, "max_abs_error": 0.01, "topk_agreement_mean": 0.98, "drift_fraction": 0.0}
    report.write_text(json.dumps({"passed": True, "summary": summary}))
    assert run(inputs, "--parity-report", str(report), "--golden-windows", "3") == 0
    m = json.loads((inputs["out"] / "imu-encoder" / "1.0.0" / "manifest.json").read_text())
    assert m["parity"] == {"passed": True, "cosine_min": 0.999, "max_abs_error": 0.01,
                           "topk_agreement_mean": 0.98, "drift_fraction": 0.0}  # fmt: skip
    assert m["golden"]["windows"] == 3
    report.write_text("{}")
    assert run(inputs, "--parity-report", str(report), version="1.0.1") == 2


def test_dfc_called_with_the_documented_cli(inputs: dict[str, Path], dfc: Path) -> None:
    assert run(inputs, "--model-script", str(inputs["script"])) == 0
    parse, optimize, compile_ = calls(dfc)
    assert parse[:3] == ["parser", "onnx", str(inputs["onnx"].resolve())]
    assert parse[parse.index("--net-name") + 1] == "imu_encoder" and "-y" in parse
    assert optimize[0] == "optimize" and optimize[1].endswith(".har")
    assert optimize[optimize.index("--calib-set-path") + 1] == str(inputs["calib"].resolve())
    assert optimize[optimize.index("--model-script") + 1] == str(inputs["script"].resolve())
    assert compile_[0] == "compiler" and "--output-dir" in compile_
    assert all(c[c.index("--hw-arch") + 1] == "hailo8" for c in (parse, optimize, compile_))


def test_rerun_with_unchanged_inputs_compiles_nothing(
    inputs: dict[str, Path], dfc: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(inputs) == 0
    rel = inputs["out"] / "imu-encoder" / "1.0.0"
    before = {p.name: p.stat().st_mtime_ns for p in rel.iterdir()}
    capsys.readouterr()
    assert run(inputs) == 0
    assert "up to date; compiled nothing" in capsys.readouterr().out
    assert len(calls(dfc)) == 3, "the rerun called the DFC"
    assert {p.name: p.stat().st_mtime_ns for p in rel.iterdir()} == before


def test_new_version_with_same_inputs_comes_from_the_cache(
    inputs: dict[str, Path], dfc: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(inputs) == 0
    capsys.readouterr()
    assert run(inputs, version="1.0.1") == 0
    assert "from the stage cache; compiled nothing" in capsys.readouterr().out
    assert len(calls(dfc)) == 3
    hefs = [inputs["out"] / "imu-encoder" / v / "model.hef" for v in ("1.0.0", "1.0.1")]
    assert hefs[0].read_bytes() == hefs[1].read_bytes()


def test_changed_model_script_reuses_parse_only(inputs: dict[str, Path], dfc: Path) -> None:
    assert run(inputs) == 0
    assert run(inputs, "--model-script", str(inputs["script"]), version="1.1.0") == 0
    assert [c[0] for c in calls(dfc)] == ["parser", "optimize", "compiler", "optimize", "compiler"]
    hefs = [inputs["out"] / "imu-encoder" / v / "model.hef" for v in ("1.0.0", "1.1.0")]
    assert hefs[0].read_bytes() != hefs[1].read_bytes()


def test_changed_calibration_set_reruns_optimize(inputs: dict[str, Path], dfc: Path, tmp_path: Path) -> None:
    assert run(inputs) == 0
    other = calibration_set(tmp_path / "calib2.npy", 64, seed=99)
    assert run(inputs, version="1.2.0", calib=other) == 0
    assert [c[0] for c in calls(dfc)][3:] == ["optimize", "compiler"]


def test_existing_version_with_other_inputs_is_refused(
    inputs: dict[str, Path], dfc: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(inputs) == 0
    rel = inputs["out"] / "imu-encoder" / "1.0.0"
    manifest = (rel / "manifest.json").read_text()
    other = reference_model(tmp_path / "other.onnx", seed=3)
    assert run(inputs, onnx=other) == 3
    err = capsys.readouterr().err
    assert "already exists with different onnx_sha256" in err and "new --version" in err
    assert (rel / "manifest.json").read_text() == manifest
    assert len(calls(dfc)) == 3


@pytest.mark.parametrize("name", ["model.hef", "model.onnx"])
def test_modified_release_is_detected(
    inputs: dict[str, Path], capsys: pytest.CaptureFixture[str], name: str
) -> None:
    assert run(inputs) == 0
    (inputs["out"] / "imu-encoder" / "1.0.0" / name).write_bytes(b"tampered")
    assert run(inputs) == 3
    assert f"{name} does not match its manifest" in capsys.readouterr().err


@pytest.mark.parametrize("stage", ["parse", "optimize", "compile"])
def test_failed_stage_writes_no_release_and_no_cache_entry(
    inputs: dict[str, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], stage: str
) -> None:
    monkeypatch.setenv("HAILO_STANDIN_DFC_FAIL", stage)
    assert run(inputs) == 4
    err = capsys.readouterr().err
    assert f"DFC {stage} failed (exit 1)" in err and "stand-in" in err
    assert not (inputs["out"] / "imu-encoder").exists()
    stage_dir = inputs["out"] / ".cache" / stage
    assert not stage_dir.exists() or not any(stage_dir.iterdir())
    monkeypatch.delenv("HAILO_STANDIN_DFC_FAIL")
    assert run(inputs) == 0, "a retry after the failure must work"


def test_missing_dfc_is_named(
    inputs: dict[str, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "path", [p for p in sys.path if not p.endswith("/dfc/site")])
    assert run(inputs) == 4
    assert "Dataflow Compiler is not installed" in capsys.readouterr().err
    assert not inputs["out"].exists()


def test_unknown_dfc_version_needs_an_explicit_hailort(
    inputs: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(sys, "path", [p for p in sys.path if not p.endswith("/dfc/site")])
    _, site = standin_dfc.install(tmp_path / "dfc-new", version="3.40.1")
    monkeypatch.syspath_prepend(str(site))
    assert run(inputs) == 4
    assert "not in the pairing table" in capsys.readouterr().err
    assert run(inputs, "--hailort-version", "4.30") == 0
    m = json.loads((inputs["out"] / "imu-encoder" / "1.0.0" / "manifest.json").read_text())
    assert (m["dfc_version"], m["hailort_version"]) == ("3.40.1", "4.30")


def test_nchw_input_needs_a_calibration_set_in_the_parsed_layout(
    inputs: dict[str, Path], dfc: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An ONNX input [N, 1, 100, 9] is parsed NCHW -> NHWC [-1, 100, 9, 1]: a calibration set in
    the old fixed (N, 1, 100, 9) layout is refused after the parse, naming the shape and the fix,
    before optimize runs; one in the parsed layout compiles, and the manifest says so."""
    nchw = reference_model(tmp_path / "nchw.onnx", nchw=True)
    assert run(inputs, onnx=nchw) == 2
    err = capsys.readouterr().err
    assert "the DFC parsed the model's input as NHWC [-1, 100, 9, 1]" in err
    assert "calib-set OUT.npy --shape 100,9,1" in err
    assert [c[0] for c in calls(dfc)] == ["parser"], "optimize ran with a calibration set of the wrong layout"
    assert not (inputs["out"] / "imu-encoder" / "1.0.0").exists()
    fitting = calibration_set(tmp_path / "calib-nhwc.npy", 64, shape=(100, 9, 1))
    assert run(inputs, onnx=nchw, calib=fitting) == 0
    m = json.loads((inputs["out"] / "imu-encoder" / "1.0.0" / "manifest.json").read_text())
    assert m["input"]["parsed_shape"] == [-1, 100, 9, 1] and m["input"]["hef_shape"] == [100, 9, 1]
    # The sidecar serves it and checks the HEF against the manifest beside it.
    backend = HailoBackend(
        inputs["out"] / "imu-encoder" / "1.0.0" / "model.hef", 12, Path("/dev/hailo0"), [100, 9, 1]
    )
    assert backend.load().input_shape == [100, 9, 1]
    backend.close()


def test_compiled_hef_is_served_by_the_hailo_backend(inputs: dict[str, Path]) -> None:
    """The release goes straight into the sidecar (HailoRT stand-in): shapes and names line up."""
    assert run(inputs) == 0
    backend = HailoBackend(inputs["out"] / "imu-encoder" / "1.0.0" / "model.hef", 12)
    info = backend.load()
    try:
        latent, motifs = backend.infer(np.zeros((2, 100, 9), np.float32))
        assert latent.shape == (2, 64) and motifs.shape == (2, 12)
        assert (
            info.sha256
            == json.loads((inputs["out"] / "imu-encoder/1.0.0/manifest.json").read_text())["hef_sha256"]
        )
    finally:
        backend.close()


# --- input validation: each bad input is named, nothing runs, nothing is written ---------------


def _onnx(
    path: Path, in_dims: list[object], outs: dict[str, int], dtype: int = TensorProto.FLOAT, n_inputs: int = 1
) -> Path:
    inputs = [helper.make_tensor_value_info(f"x{i}", dtype, in_dims) for i in range(n_inputs)]
    outputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["N", d]) for n, d in outs.items()]
    nodes = [helper.make_node("Identity", ["x0"], [n]) for n in outs]
    model = helper.make_model(helper.make_graph(nodes, "g", inputs, outputs))
    path.write_bytes(model.SerializeToString())
    return path


def _npy(path: Path, arr: np.ndarray) -> Path:
    np.save(path, arr)
    return path


GOOD_OUTS = {"latent": 64, "motif_scores": 12}
WINDOWS = np.zeros((64, 1, 100, 9), np.float32)


def _nan_calib() -> np.ndarray:
    a = WINDOWS.copy()
    a[5, 0, 3, 2] = np.nan
    return a


BAD = {
    "onnx missing": ({"onnx": "missing"}, [], "--onnx", "no such file"),
    "onnx garbage": ({"onnx": b"not a protobuf"}, [], "--onnx", "not a readable ONNX model"),
    "onnx 8 channels": ({"onnx": (["N", 100, 8], GOOD_OUTS)}, [], "--onnx", "has shape ['N', 100, 8]"),
    "onnx two inputs": (
        {"onnx": (["N", 100, 9], GOOD_OUTS, TensorProto.FLOAT, 2)},
        [],
        "--onnx",
        "has 2 inputs",
    ),
    "onnx int input": (
        {"onnx": (["N", 100, 9], GOOD_OUTS, TensorProto.INT64)},
        [],
        "--onnx",
        "is not float32",
    ),
    "onnx latent 32": (
        {"onnx": (["N", 100, 9], {"latent": 32, "motif_scores": 12})},
        [],
        "--onnx",
        "latent has 32",
    ),
    "onnx one output": ({"onnx": (["N", 100, 9], {"latent": 64})}, [], "--onnx", "the contract needs two"),
    "num motifs": ({}, ["--num-motifs", "10"], "--onnx", "motif_scores has 12 values, --num-motifs is 10"),
    "calib float64": ({"calib": WINDOWS.astype(np.float64)}, [], "--calib", "dtype is float64"),
    "calib NHW": ({"calib": np.zeros((64, 100, 9), np.float32)}, [], "--calib", "add an axis"),
    "calib 8 channels": ({"calib": np.zeros((64, 1, 100, 8), np.float32)}, [], "--calib", "H*W*C = 900"),
    "calib too few": ({"calib": WINDOWS[:10]}, [], "--calib", "10 samples; at least 64"),
    "calib NaN": (
        {"calib": _nan_calib()},
        [],
        "--calib",
        "1 non-finite values (NaN or inf), first at (5, 0, 3, 2)",
    ),
    "calib pickle": ({"calib": np.array([{"a": 1}], dtype=object)}, [], "--calib", "not a .npy array"),
    "calib text": ({"calib": b"1,2,3"}, [], "--calib", "not a .npy array"),
    "hw arch": ({}, ["--hw-arch", "hailo10h"], "--hw-arch", "one of hailo8, hailo8l"),
    "model name": ({}, ["--model-name", "../etc"], "--model-name", "lower-case letters"),
    "version path": ({}, ["--version", "../1"], "--version", "letters, digits"),
    "config version": ({}, ["--config-version", " "], "--config-version", "1 to 128"),
    "script missing": ({}, ["--model-script", "/nonexistent.alls"], "--model-script", "no such file"),
    "script binary": (
        {"script": b"\xff\xfe\x00"},
        ["--model-script", "@script"],
        "--model-script",
        "not a UTF-8",
    ),
}


@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
def test_invalid_input_is_named_and_nothing_runs(
    inputs: dict[str, Path], dfc: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    files, extra, flag, text = BAD[case]
    over: dict[str, Path] = {}
    for key, spec in files.items():
        path = tmp_path / f"bad-{key}"
        if isinstance(spec, str):  # "missing"
            pass
        elif isinstance(spec, bytes):
            path.write_bytes(spec)
        elif isinstance(spec, np.ndarray):
            path = _npy(path.with_suffix(".npy"), spec)
        else:
            path = _onnx(path, *spec)
        over[key] = path
    extra = [str(over.pop("script")) if a == "@script" else a for a in extra]
    assert run(inputs, *extra, **over) == 2
    err = capsys.readouterr().err
    assert "invalid input, no release was written" in err
    line = next((ln for ln in err.splitlines() if ln.strip().startswith(f"- {flag}")), "")
    assert text in line, err
    assert calls(dfc) == [] and not inputs["out"].exists()


def test_all_problems_are_reported_at_once(
    inputs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad_calib = _npy(tmp_path / "c.npy", WINDOWS.astype(np.float64))
    assert run(inputs, "--hw-arch", "x", "--config-version", "", calib=bad_calib) == 2
    problems = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("  - ")]
    assert len(problems) == 3, problems


# images/compiler/build.sh's tag, in check mode (CHECK=1 builds nothing) with a docker CLI double
# that knows no image, from a copy of the sources as the hef_compile role unpacks them.
def _compiler_tag(context: Path, wheels: Path, path: dict[str, str]) -> str:
    run = subprocess.run(["bash", str(context / "images/compiler/build.sh"), str(wheels)],
                         env={**os.environ, "CHECK": "1", **path}, capture_output=True, text=True,
                         check=True)  # fmt: skip
    assert "compiler build: would build" in run.stdout
    return run.stdout.strip().splitlines()[-1]


def test_the_compiler_image_tag_follows_the_wheel_and_the_sources(tmp_path: Path, on_path: Any) -> None:
    path = on_path("docker", "#!/bin/sh\n# test double of the docker CLI: no image is present\nexit 1\n")
    context = tmp_path / "context"
    for name in build_context("compiler"):
        src, dst = ROOT / name, context / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(src, dst)
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    standin_dfc.wheel(wheels)
    first = _compiler_tag(context, wheels, path)
    assert first.startswith(f"hailo-compiler:{standin_dfc.VERSION}-")
    # The stand-in wheel is the same bytes each time, as a vendor's file is.
    standin_dfc.wheel(wheels)
    (context / "hef_compiler" / "__pycache__").mkdir()
    (context / "hef_compiler" / "__pycache__" / "cli.cpython-311.pyc").write_bytes(b"compiled")
    assert _compiler_tag(context, wheels, path) == first
    # Changed compiler sources (a collection upgrade) build again.
    with (context / "hef_compiler" / "cli.py").open("a") as f:
        f.write("\n# changed\n")
    changed = _compiler_tag(context, wheels, path)
    assert changed != first
    # So does another wheel.
    standin_dfc.wheel(wheels, version="3.33.1")
    (wheels / f"hailo_dataflow_compiler-{standin_dfc.VERSION}-py3-none-any.whl").unlink()
    assert _compiler_tag(context, wheels, path).startswith("hailo-compiler:3.33.1-")


# images/compiler/run.sh: the one way to run the compiler image (the role, the release workflow and
# the image tests), with a docker CLI double that writes down its arguments, one a line.
DOCKER_LOG = (
    '#!/bin/sh\n# test double of the docker CLI: records its arguments\nprintf "%s\\n" "$@" >"$DOCKER_ARGS"\n'
)


def _run_compiler(tmp_path: Path, on_path: Any, *args: str, **env: str) -> tuple[int, list[str] | None, str]:
    log = tmp_path / "docker-args"
    run = subprocess.run(["bash", str(ROOT / "images/compiler/run.sh"), *args], cwd=tmp_path,
                         env={**os.environ, **on_path("docker", DOCKER_LOG), "DOCKER_ARGS": str(log), **env},
                         capture_output=True, text=True)  # fmt: skip
    return run.returncode, log.read_text().splitlines() if log.exists() else None, run.stderr


def test_the_compiler_runs_without_network_or_privileges(tmp_path: Path, on_path: Any) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "out").mkdir()
    # What follows OUT_DIR goes to hailo-compile, after the image: a "--privileged" there is an
    # argument hailo-compile refuses, never an option docker takes.
    rc, argv, err = _run_compiler(tmp_path, on_path, "hailo-compiler:3.33.0-abc", "in", "out",
                                  "--onnx", "/in/m.onnx", "--privileged", RUN_USER="10001:10001")  # fmt: skip
    assert rc == 0, err
    assert argv is not None and argv[0] == "run"
    image = argv.index("hailo-compiler:3.33.0-abc")
    docker_opts, compiler_args = argv[1:image], argv[image + 1 :]
    assert compiler_args == ["--onnx", "/in/m.onnx", "--privileged"]
    pairs = set(itertools.pairwise(docker_opts))
    # --pull never: an image absent here is not fetched (a same-named one pushed to a registry
    # would compile what is then collected and signed).
    assert {("--network", "none"), ("--cap-drop", "ALL"), ("--security-opt", "no-new-privileges"),
            ("--tmpfs", "/tmp"), ("--user", "10001:10001"), ("--pull", "never")} <= pairs  # fmt: skip
    assert {"--rm", "--read-only"} <= set(docker_opts)
    # Bind mounts with absolute paths (a relative one would name a volume); only /out writable.
    mounts = [docker_opts[i + 1] for i, opt in enumerate(docker_opts) if opt == "-v"]
    assert mounts == [f"{tmp_path / 'in'}:/in:ro", f"{tmp_path / 'out'}:/out"]
    assert not {"--privileged", "--cap-add", "--network=host", "--device"} & set(docker_opts)


def test_the_compiler_runs_as_the_images_user_unless_told(tmp_path: Path, on_path: Any) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "out").mkdir()
    rc, argv, err = _run_compiler(tmp_path, on_path, "img", "in", "out")
    assert rc == 0, err
    assert argv is not None and "--user" not in argv


@pytest.mark.parametrize(("args", "env", "says"), [
    (("img", "in"), {}, "usage:"),
    (("img", "in", "missing"), {}, "OUT_DIR missing is not a folder"),
    (("img", "missing", "out"), {}, "IN_DIR missing is not a folder"),
    (("img", "in", "out"), {"RUN_USER": "root"}, "RUN_USER=root is not uid:gid"),
    # Root in the container, by uid or by gid.
    (("img", "in", "out"), {"RUN_USER": "0:0"}, "RUN_USER=0:0 is root's uid or gid"),
    (("img", "in", "out"), {"RUN_USER": "10001:00"}, "RUN_USER=10001:00 is root's uid or gid"),
    # An IMAGE docker would read as an option, the next argument becoming the image.
    (("--privileged", "in", "out", "hailo-compiler:1"), {}, "IMAGE --privileged starts with '-'"),
    (("-v=/etc/hailo-pipeline:/k", "in", "out", "img"), {}, "IMAGE -v=/etc/hailo-pipeline:/k starts with"),
])  # fmt: skip
def test_bad_arguments_exit_2_before_docker_runs(
    tmp_path: Path, on_path: Any, args: tuple[str, ...], env: dict[str, str], says: str
) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "out").mkdir()
    rc, argv, err = _run_compiler(tmp_path, on_path, *args, **env)
    assert (rc, argv) == (2, None) and says in err


def test_the_sandbox_options_are_written_once() -> None:
    """The role and the release workflow run the compiler through run.sh, not a docker run of their own."""
    role = (ROOT / "roles/hef_compile/tasks/model.yml").read_text()
    workflow = (ROOT / ".github/workflows/release.yml").read_text()
    assert "images/compiler/run.sh" in role and "no-new-privileges" not in role
    compile_job = workflow.split("\n  compile:", 1)[1].split("\n  parity:", 1)[0]
    assert "images/compiler/run.sh" in compile_job and "docker run" not in compile_job
