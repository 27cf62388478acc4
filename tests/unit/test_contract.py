"""The /infer contract: valid requests, JSON vs binary, batches, and malformed input."""

from __future__ import annotations

import math

import numpy as np
import orjson
import pytest

from sidecar_app.contract import WINDOW_BYTES
from sidecar_app.settings import Settings

LIMIT = Settings.model_fields["max_batch"].default  # MAX_BATCH's default: the fixtures leave it unset

GOOD = [[float(i * 9 + j) / 100 for j in range(9)] for i in range(100)]


def _with(row: int, col: int | None, value: object) -> list[list[object]]:
    w: list[list[object]] = [list(r) for r in GOOD]
    if col is None:
        w[row] = value  # type: ignore[assignment]
    else:
        w[row][col] = value
    return w


def test_infer_shapes_ranges_and_headers(stub):
    r = stub.post("/infer", json={"x": GOOD})
    assert r.status_code == 200
    doc = r.json()
    assert set(doc) == {"latent", "motif_scores"}
    assert len(doc["latent"]) == 64 and len(doc["motif_scores"]) == 12
    assert all(-1 <= v <= 1 for v in doc["latent"])
    assert all(0 <= v <= 1 for v in doc["motif_scores"])
    assert r.headers["x-infer-mode"] == "stub"
    assert len(r.headers["x-model-sha256"]) == 64


def test_stub_is_deterministic_and_input_dependent(stub, windows):
    a = stub.post("/infer", json={"x": windows[0].tolist()}).json()
    b = stub.post("/infer", json={"x": windows[0].tolist()}).json()
    c = stub.post("/infer", json={"x": windows[1].tolist()}).json()
    assert a == b
    assert a["latent"] != c["latent"] and a["motif_scores"] != c["motif_scores"]


def test_extra_top_level_keys_are_ignored(stub):
    plain = stub.post("/infer", json={"x": GOOD}).json()
    meta = stub.post("/infer", json={"x": GOOD, "device": "pi-07", "debug": True, "n": None})
    assert meta.status_code == 200
    assert meta.json() == plain


def test_integers_are_numbers(stub):
    ints = [[i % 7 - 3 for _ in range(9)] for i in range(100)]
    r = stub.post("/infer", json={"x": ints})
    assert r.status_code == 200
    floats = stub.post("/infer", json={"x": [[float(v) for v in row] for row in ints]})
    assert r.json() == floats.json()


@pytest.mark.parametrize("mode", ["stub", "onnx", "hailo"])
def test_json_and_binary_give_identical_results(make_client, mode, onnx_model, hef, windows):
    client = make_client(INFER_MODE=mode, ONNX_PATH=onnx_model, HEF_PATH=hef)
    w = windows[2]
    j = client.post("/infer", json={"x": w.tolist()})
    b = client.post(
        "/infer", content=w.astype("<f4").tobytes(), headers={"content-type": "application/octet-stream"}
    )
    assert j.status_code == b.status_code == 200
    assert j.json() == b.json()
    assert j.headers["x-infer-mode"] == mode


@pytest.mark.parametrize("mode", ["stub", "onnx", "hailo"])
def test_batch_equals_single(make_client, mode, onnx_model, hef, windows):
    client = make_client(INFER_MODE=mode, ONNX_PATH=onnx_model, HEF_PATH=hef)
    batch = client.post("/infer/batch", json={"windows": windows.tolist()})
    assert batch.status_code == 200
    results = batch.json()["results"]
    assert len(results) == len(windows)
    for w, res in zip(windows, results, strict=True):
        single = client.post("/infer", json={"x": w.tolist()}).json()
        np.testing.assert_allclose(res["latent"], single["latent"], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(res["motif_scores"], single["motif_scores"], rtol=1e-5, atol=1e-6)
    binary = client.post(
        "/infer/batch",
        content=windows.astype("<f4").tobytes(),
        headers={"content-type": "application/octet-stream"},
    )
    assert binary.json() == batch.json()


JSON_CASES = [
    # (id, body bytes, expected status, expected message fragment)
    ("not json", b"{nope", 400, "malformed JSON"),
    ("truncated", orjson.dumps({"x": GOOD})[:-5], 400, "malformed JSON"),
    ("empty body", b"", 400, "malformed JSON"),
    ("NaN literal", orjson.dumps({"x": GOOD}).replace(b"0.0,", b"NaN,", 1), 400, "NaN"),
    ("Infinity literal", orjson.dumps({"x": GOOD}).replace(b"0.0,", b"Infinity,", 1), 400, "Infinity"),
    ("1e999 overflow", orjson.dumps({"x": GOOD}).replace(b"0.0,", b"1e999,", 1), 400, "infinity"),
    ("top-level list", orjson.dumps([GOOD]), 422, "JSON object"),
    ("top-level number", b"3", 422, "JSON object"),
    ("missing x", orjson.dumps({"y": GOOD}), 422, 'no key "x"'),
    ("x null", orjson.dumps({"x": None}), 422, "got null"),
    ("x string", orjson.dumps({"x": "abc"}), 422, "got a string"),
    ("x object", orjson.dumps({"x": {"a": 1}}), 422, "got an object"),
    ("x number", orjson.dumps({"x": 1.5}), 422, "got float"),
    ("99 rows", orjson.dumps({"x": GOOD[:99]}), 422, "x has 99 rows, expected 100"),
    ("101 rows", orjson.dumps({"x": [*GOOD, GOOD[0]]}), 422, "x has 101 rows"),
    ("empty x", orjson.dumps({"x": []}), 422, "x has 0 rows"),
    ("row of 8", orjson.dumps({"x": _with(50, None, GOOD[50][:8])}), 422, "x[50] has 8 values, expected 9"),
    ("row of 10", orjson.dumps({"x": _with(3, None, [*GOOD[3], 1.0])}), 422, "x[3] has 10 values"),
    ("row is number", orjson.dumps({"x": _with(7, None, 1.0)}), 422, "x[7] must be a list"),
    ("row is string", orjson.dumps({"x": _with(7, None, "123456789")}), 422, "x[7] must be a list"),
    ("bool element", orjson.dumps({"x": _with(4, 2, True)}), 422, "x[4][2] is a boolean"),
    ("false element", orjson.dumps({"x": _with(0, 0, False)}), 422, "x[0][0] is a boolean"),
    ("all bools", orjson.dumps({"x": [[True] * 9] * 100}), 422, "x[0][0] is a boolean"),
    ("string element", orjson.dumps({"x": _with(9, 8, "a")}), 422, "x[9][8] is a string"),
    ("numeric string", orjson.dumps({"x": _with(9, 1, "1.5")}), 422, "x[9][1] is a string"),
    ("null element", orjson.dumps({"x": _with(1, 1, None)}), 422, "x[1][1] is null"),
    ("nested list element", orjson.dumps({"x": _with(2, 3, [1.0])}), 422, "x[2][3] is a list"),
    ("object element", orjson.dumps({"x": _with(2, 3, {"v": 1})}), 422, "x[2][3] is an object"),
    ("float32 overflow", orjson.dumps({"x": _with(5, 5, 1e300)}), 422, "x[5][5]"),
    ("huge int", orjson.dumps({"x": GOOD}).replace(b"0.0,", b"9" * 60 + b",", 1), 422, "x[0][0]"),
    ("3-D window", orjson.dumps({"x": [[[1.0] * 9] * 100]}), 422, "x has 1 rows"),
]


@pytest.mark.parametrize(
    ("body", "status", "fragment"), [c[1:] for c in JSON_CASES], ids=[c[0] for c in JSON_CASES]
)
def test_malformed_json_is_rejected_and_server_keeps_serving(stub, body, status, fragment):
    r = stub.post("/infer", content=body, headers={"content-type": "application/json"})
    assert r.status_code == status, r.text
    assert fragment.lower() in r.json()["error"].lower()
    assert stub.post("/infer", json={"x": GOOD}).status_code == 200


def _nan_window(value: float, row: int, col: int) -> bytes:
    w = np.zeros((100, 9), dtype="<f4")
    w[row, col] = value
    return w.tobytes()


BATCH_CASES = [
    ("no windows key", orjson.dumps({"x": GOOD}), 422, 'no key "windows"'),
    ("windows not list", orjson.dumps({"windows": 3}), 422, "windows must be a list"),
    ("empty batch", orjson.dumps({"windows": []}), 422, "windows is empty"),
    ("too many", orjson.dumps({"windows": [GOOD] * (LIMIT + 1)}), 422, f"at most {LIMIT} (MAX_BATCH)"),
    ("bad second window", orjson.dumps({"windows": [GOOD, GOOD[:10]]}), 422, "windows[1] has 10 rows"),
    (
        "bool in third",
        orjson.dumps({"windows": [GOOD, GOOD, _with(1, 2, True)]}),
        422,
        "windows[2][1][2] is a boolean",
    ),
    ("window is null", orjson.dumps({"windows": [GOOD, None]}), 422, "windows[1] must be a list"),
]


@pytest.mark.parametrize(
    ("body", "status", "fragment"), [c[1:] for c in BATCH_CASES], ids=[c[0] for c in BATCH_CASES]
)
def test_malformed_batch_names_the_window(stub, body, status, fragment):
    r = stub.post("/infer/batch", content=body, headers={"content-type": "application/json"})
    assert r.status_code == status, r.text
    assert fragment in r.json()["error"]
    assert stub.post("/infer/batch", json={"windows": [GOOD]}).status_code == 200


BINARY_CASES = [
    ("/infer", b"", 422, "0 bytes"),
    ("/infer", b"\x00" * 3599, 422, "multiple of 3600"),
    ("/infer", b"\x00" * (2 * WINDOW_BYTES), 422, "takes exactly 1"),
    ("/infer", _nan_window(math.nan, 10, 3), 422, "x[10][3] is NaN"),
    ("/infer", _nan_window(math.inf, 0, 8), 422, "x[0][8] is Infinity"),
    (
        "/infer/batch",
        b"\x00" * WINDOW_BYTES + _nan_window(-math.inf, 99, 0),
        422,
        "windows[1][99][0] is Infinity",
    ),
    ("/infer/batch", b"\x00" * (WINDOW_BYTES * 65), 422, "at most 64"),
    ("/infer/batch", b"\x00" * (WINDOW_BYTES + 4), 422, "multiple of 3600"),
]


@pytest.mark.parametrize(
    ("path", "body", "status", "fragment"),
    BINARY_CASES,
    ids=[f"{c[0]}-{i}" for i, c in enumerate(BINARY_CASES)],
)
def test_malformed_binary(stub, path, body, status, fragment):
    r = stub.post(path, content=body, headers={"content-type": "application/octet-stream"})
    assert r.status_code == status, r.text
    assert fragment in r.json()["error"]


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "fragment"),
    [
        (
            "post",
            "/infer",
            {"content": b"x=1", "headers": {"content-type": "application/x-www-form-urlencoded"}},
            415,
            "not supported",
        ),
        ("post", "/infer", {"content": b"hi", "headers": {"content-type": "text/plain"}}, 415, "text/plain"),
        (
            "post",
            "/infer",
            {"content": b"{}" + b" " * 70000, "headers": {"content-type": "application/json"}},
            413,
            "exceeds",
        ),
        (
            "post",
            "/infer/batch",
            {"content": b" " * (64 * 1024 * 64 + 1), "headers": {"content-type": "application/json"}},
            413,
            "exceeds",
        ),
        ("get", "/infer", {}, 405, "method GET not allowed"),
        ("put", "/infer/batch", {"content": b"{}"}, 405, "not allowed"),
        ("get", "/nowhere", {}, 404, "no such path"),
        ("post", "/healthz", {"content": b"{}"}, 405, "not allowed"),
        ("get", "/v2/models/other-model", {}, 404, "unknown model"),
    ],
)
def test_http_level_errors(stub, method, path, kwargs, status, fragment):
    r = getattr(stub, method)(path, **kwargs)
    assert r.status_code == status
    assert fragment in r.json()["error"]
    assert stub.post("/infer", json={"x": GOOD}).status_code == 200


def test_charset_parameter_is_accepted(stub):
    r = stub.post(
        "/infer",
        content=orjson.dumps({"x": GOOD}),
        headers={"content-type": "application/json; charset=utf-8"},
    )
    assert r.status_code == 200


def test_max_batch_setting(make_client):
    client = make_client(INFER_MODE="stub", MAX_BATCH=2)
    assert client.post("/infer/batch", json={"windows": [GOOD] * 2}).status_code == 200
    r = client.post("/infer/batch", json={"windows": [GOOD] * 3})
    assert r.status_code == 422 and "at most 2 (MAX_BATCH)" in r.json()["error"]


def _exact(body: bytes, key: str) -> np.ndarray:
    # The exact path alone (orjson + numpy), as used for every body the fast path refuses.
    from sidecar_app.contract import _windows_to_array

    doc = orjson.loads(body)
    return _windows_to_array([doc[key]] if key == "x" else doc[key], body, key)


@pytest.mark.parametrize("kind", ["floats", "float32 repr", "ints", "mixed", "with metadata"])
def test_fast_and_exact_json_paths_agree(kind, windows):
    from sidecar_app.contract import _fast_windows, parse_json_batch, parse_json_window

    data: object = windows.tolist()
    extra: dict[str, object] = {}
    if kind == "float32 repr":
        data = windows
    elif kind == "ints":
        data = np.rint(windows * 100).astype(int).tolist()
    elif kind == "mixed":
        data = [[[int(v) if k % 2 else v for k, v in enumerate(row)] for row in w] for w in windows.tolist()]
    elif kind == "with metadata":
        extra = {"device": "pi-3", "debug": True, "seq": None, "nested": {"windows": "no"}}
    body = orjson.dumps({**extra, "windows": data}, option=orjson.OPT_SERIALIZE_NUMPY)
    assert _fast_windows(body, "windows", single=False, max_batch=64) is not None  # fast path taken
    np.testing.assert_array_equal(parse_json_batch(body, 64), _exact(body, "windows"))
    one = orjson.dumps({**extra, "x": np.asarray(data)[0]}, option=orjson.OPT_SERIALIZE_NUMPY)
    assert _fast_windows(one, "x", single=True, max_batch=1) is not None
    np.testing.assert_array_equal(parse_json_window(one), _exact(one, "x"))


@pytest.mark.parametrize(
    "body",
    [
        b'{"windows": [[[1.5, 2]]]}',  # short rows
        orjson.dumps({"windows": [[[[1.0]] * 9] * 100]}),  # extra nesting
        orjson.dumps({"windows": [[[1.0] * 8 + [True]] * 100]}),  # boolean leaf
        orjson.dumps({"windows": [[[1.0] * 8 + ["1"]] * 100]}),  # string leaf
        orjson.dumps({"windows": [{str(i): 1 for i in range(100)}]}),  # object window
        orjson.dumps({"windows": [[[1.0] * 9] * 100] * 65}),  # over MAX_BATCH
        b'{"windows": [[[1e999]]]}',  # overflowing literal
    ],
)
def test_fast_path_refuses_what_it_cannot_vouch_for(body):
    from sidecar_app.contract import _fast_windows

    assert _fast_windows(body, "windows", single=False, max_batch=64) is None
