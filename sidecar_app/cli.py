"""The hailo-sidecar command: serve, smoke, probe, versions, bench, parity, fidelity, reference-model,
calib-set, openapi, settings."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .tools import probe


def _serve(_args: argparse.Namespace) -> int:
    import uvicorn

    from .app import create_app
    from .logs import configure
    from .settings import ConfigError, load_settings

    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"hailo-sidecar: {exc}", file=sys.stderr)
        return 2
    configure(settings.log_level, settings.log_format)
    app = create_app(settings)
    # One process, one worker: a Hailo VDevice belongs to the process that opened it.
    server = uvicorn.Server(uvicorn.Config(
        app, host=settings.host, port=settings.port, workers=1, access_log=False,
        log_config=None, timeout_graceful_shutdown=30, server_header=False,
    ))  # fmt: skip
    app.state.watchdog.stop = lambda: setattr(server, "should_exit", True)
    server.run()
    return int(getattr(app.state, "exit_status", 0))  # 3: the unready exit (watchdog.py)


def _smoke(args: argparse.Namespace) -> int:
    from .tools.smoke import run_smoke

    failures = run_smoke(args.url, args.expect_sha256, args.expect_config_version, args.num_motifs, args.wait)
    return 1 if failures else 0


def _probe(args: argparse.Namespace) -> int:
    return probe.run(args.path, args.port, args.timeout)


def _versions(_args: argparse.Namespace) -> int:
    from .versions import runtime_versions

    print(json.dumps(runtime_versions(), indent=2))
    return 0


def _reference_model(args: argparse.Namespace) -> int:
    from .backends.base import file_sha256
    from .tools.refmodel import reference_model

    path = reference_model(Path(args.out), args.num_motifs, args.seed, args.perturb, nchw=args.nchw)
    print(f"{path}  sha256 {file_sha256(path)}")
    return 0


def _calib_set(args: argparse.Namespace) -> int:
    from .tools.refmodel import calibration_set

    shape = tuple(int(d) for d in args.shape.split(","))
    path = calibration_set(Path(args.out), args.n, args.seed, shape)
    print(f"{path}  {args.n} windows, shape ({args.n}, {', '.join(map(str, shape))}) float32 (NHWC)")
    return 0


def _openapi(args: argparse.Namespace) -> int:
    from .openapi import build_openapi
    from .settings import load_settings

    text = json.dumps(build_openapi(load_settings()), indent=2, sort_keys=True) + "\n"
    if args.out:
        Path(args.out).write_text(text)
    else:
        sys.stdout.write(text)
    return 0


def _settings(args: argparse.Namespace) -> int:
    from .settings import table

    text = json.dumps(table(), indent=2, sort_keys=True) + "\n"
    if args.out:
        Path(args.out).write_text(text)
    else:
        sys.stdout.write(text)
    return 0


def _wait_release(args: argparse.Namespace) -> int:
    from .tools.smoke import wait_release

    return wait_release(args.url, args.config_version, args.sha256, args.timeout)


def _bench(args: argparse.Namespace) -> int:
    from .tools.bench import main as bench_main

    return int(bench_main(args))


def _bench_scrape(args: argparse.Namespace) -> int:
    from .tools.scrapecost import main as scrape_main

    return scrape_main(args)


def _parity(args: argparse.Namespace) -> int:
    from .tools.parity import main as parity_main

    return parity_main(args)


def _fidelity(args: argparse.Namespace) -> int:
    from .tools.fidelity import main as fidelity_main

    return fidelity_main(Path(args.hef), Path(args.out) if args.out else None)


class _VersionAction(argparse.Action):
    """--version, with the version read only when asked (sidecar_app/__init__.py says why)."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS,
                         help="print the version and exit")  # fmt: skip

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        from . import __version__

        print(__version__)  # on stdout, as argparse's own version action does
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hailo-sidecar", description=__doc__)
    p.add_argument("--version", action=_VersionAction)
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="run the HTTP server (settings from the environment)")
    s.set_defaults(func=_serve)

    s = sub.add_parser("smoke", help="contract smoke against a running sidecar")
    s.add_argument("--url", default="http://127.0.0.1:9000")
    s.add_argument("--expect-sha256")
    s.add_argument("--expect-config-version")
    s.add_argument("--num-motifs", type=int)
    s.add_argument("--wait", type=float, default=0.0, help="seconds to wait for /readyz first")
    s.set_defaults(func=_smoke)

    s = sub.add_parser(
        "wait-release", help="wait until a running sidecar serves a release (exit 1: it refused it)"
    )
    s.add_argument("--url", default="http://127.0.0.1:9000")
    s.add_argument("--config-version", required=True)
    s.add_argument("--sha256", help="the model file's sha256 (none for stub)")
    s.add_argument("--timeout", type=float, default=120.0)
    s.set_defaults(func=_wait_release)

    s = sub.add_parser(
        "probe",
        help="exit 0 when the local server answers 200 (the container healthcheck, "
        "hailo-sidecar-probe, with options)",
    )
    s.add_argument("--path", default=probe.DEFAULT_PATH, choices=probe.PATHS)
    s.add_argument("--port", type=int, help="default: PORT from the environment (9000)")
    s.add_argument("--timeout", type=float, default=probe.DEFAULT_TIMEOUT)
    s.set_defaults(func=_probe)

    s = sub.add_parser("versions", help="print sidecar, Python, HailoRT and onnxruntime versions (JSON)")
    s.set_defaults(func=_versions)

    s = sub.add_parser("reference-model", help="write the deterministic reference encoder ONNX")
    s.add_argument("out")
    s.add_argument("--num-motifs", type=int, default=12)
    s.add_argument("--seed", type=int, default=7)
    s.add_argument("--perturb", type=float, default=0.0, help="weight noise scale (parity tests)")
    s.add_argument("--nchw", action="store_true", help="input [N, 1, 100, 9] instead of [N, 100, 9]")
    s.set_defaults(func=_reference_model)

    s = sub.add_parser("calib-set", help="write a calibration set, float32 .npy, (N, H, W, C) NHWC")
    s.add_argument("out")
    s.add_argument("--n", type=int, default=1024)
    s.add_argument("--seed", type=int, default=11)
    s.add_argument(
        "--shape",
        default="1,100,9",
        help="per-sample H,W,C as the DFC parsed the model's input (hailo-compile names it): 1,100,9 "
        "for an ONNX input [N, 100, 9], 100,9,1 for [N, 1, 100, 9] (default 1,100,9)",
    )
    s.set_defaults(func=_calib_set)

    s = sub.add_parser("openapi", help="print (or write) the OpenAPI document")
    s.add_argument("--out")
    s.set_defaults(func=_openapi)

    s = sub.add_parser(
        "settings", help="print (or write) every setting's name, default and bounds as JSON (the role's copy)"
    )
    s.add_argument("--out")
    s.set_defaults(func=_settings)

    s = sub.add_parser("bench", help="benchmark against a baseline on 127.0.0.1, or a running sidecar")
    s.add_argument("--url", help="a running sidecar (http://HOST:PORT): load it and check the targets")
    s.add_argument("--target-p95-ms", type=float, default=50.0, help="with --url: p95 target (default 50)")
    s.add_argument("--target-windows-per-s", type=float, default=20.0, help="with --url: default 20")
    s.add_argument("--duration", type=float, default=2.0, help="seconds per run")
    s.add_argument("--max-requests", type=int, default=20000, help="request cap per run")
    s.add_argument("--concurrency", help="comma-separated (default 1,4,16; with --url 1,4)")
    s.add_argument("--json-out", default="bench-results.json")
    s.add_argument("--quick", action="store_true", help="concurrency 4 only, 1 s runs")
    s.set_defaults(func=_bench)

    s = sub.add_parser(
        "bench-scrape", help="what monitoring costs: /metrics size and time, /infer p95 scraped or not"
    )
    s.add_argument("--requests", type=int, default=10000, help="requests served before /metrics is measured")
    s.add_argument("--duration", type=float, default=10.0, help="seconds per load run")
    s.add_argument("--pairs", type=int, default=3, help="runs without and with scraping, alternating")
    s.add_argument("--interval", type=float, default=5.0, help="scrape interval, seconds")
    s.add_argument("--json-out", default="bench-scrape.json")
    s.set_defaults(func=_bench_scrape)

    s = sub.add_parser(
        "fidelity", help="record what HailoRT does on this device (shapes, queue, failures) as JSON"
    )
    s.add_argument("--hef", required=True, help="the deployed HEF")
    s.add_argument("--out", help="write the JSON here instead of stdout")
    s.set_defaults(func=_fidelity)

    s = sub.add_parser("parity", help="compare a candidate with the reference ONNX window by window")
    s.add_argument("--reference", required=True, help="onnx:PATH, the model the .hef was compiled from")
    s.add_argument(
        "--candidate", required=True, help="http(s)://HOST:PORT (a sidecar), onnx:PATH, hailo:PATH or stub"
    )
    s.add_argument("--windows", required=True, help=".npy of shape (N, 100, 9) or (N, 1, 100, 9)")
    s.add_argument("--report", default="parity-report.json", help="JSON report (default parity-report.json)")
    s.add_argument("--num-motifs", type=int, default=12)
    s.add_argument(
        "--batch", type=int, help="windows per call, at most the sidecar's MAX_BATCH (default: its default)"
    )
    s.add_argument("--limit", type=int, default=0, help="first N windows only (0: all)")
    s.add_argument("--min-cosine", type=float, default=0.99)
    s.add_argument("--max-abs-error", type=float, default=0.05)
    s.add_argument("--top-k", type=int, default=3)
    s.add_argument("--min-topk-agreement", type=float, default=0.9)
    s.add_argument("--max-drift-fraction", type=float, default=0.0)
    s.set_defaults(func=_parity)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
