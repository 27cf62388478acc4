"""The two JSON paths of the contract agree: every body the fast path (simdjson) accepts, the exact
path (orjson + numpy) accepts too, with the same numbers. Property-based (hypothesis) over valid
windows written in many ways and over hostile JSON around them."""

from __future__ import annotations

import json

import numpy as np
import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sidecar_app import contract
from sidecar_app.errors import SidecarError

FLOATS = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False, width=64),
    st.floats(min_value=-1e3, max_value=1e3),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.sampled_from([0.0, -0.0, 5e-324, 1.7976931348623157e308, 3.4028235e38, 3.4028236e38, 1e39]),
)


@st.composite
def windows(draw: st.DrawFn) -> list[list[object]]:
    """100 rows of 9 numbers, built from a few drawn rows (small examples); sometimes a row of
    another length or a row too many or too few."""
    rows = draw(st.lists(st.lists(FLOATS, min_size=9, max_size=9), min_size=1, max_size=3))
    window = [list(rows[i % len(rows)]) for i in range(100)]
    flaw = draw(st.sampled_from(["none", "none", "short row", "long row", "extra row", "missing row"]))
    if flaw == "short row":
        window[draw(st.integers(0, 99))] = window[0][:8]
    elif flaw == "long row":
        window[draw(st.integers(0, 99))] = [*window[0], 1.0]
    elif flaw == "extra row":
        window.append(window[0])
    elif flaw == "missing row":
        window.pop()
    return window


def _number(v: object, style: int) -> str:
    if isinstance(v, int):
        return [str(v), f"{v}.0", f"{v}e0"][style % 3] if abs(v) < 10**15 else str(v)
    return [repr(v), f"{v:.17g}", f"{v:e}".replace("e+", "E")][style % 3]


def dump(doc: object, style: int) -> bytes:
    """JSON with numbers written in STYLE (repr, %.17g, exponent) and varied spacing."""
    if isinstance(doc, dict):
        sep = ", " if style % 2 else ","
        return ("{" + sep.join(f'"{k}":{dump(v, style).decode()}' for k, v in doc.items()) + "}").encode()
    if isinstance(doc, list):
        return ("[" + ("," if style % 2 else ", ").join(dump(v, style).decode() for v in doc) + "]").encode()
    if isinstance(doc, bool) or doc is None or isinstance(doc, str):
        return json.dumps(doc).encode()
    return _number(doc, style).encode()


HOSTILE = st.sampled_from([
    lambda b: b"\xef\xbb\xbf" + b,                                       # byte order mark
    lambda b: b[:-1] + b', "x": 5}',                                      # the key again, last wins
    lambda b: b[:-1] + b', "windows": 5}',
    lambda b: b[:-1] + b', "\\u0078": 5}',                                 # the key, escaped
    lambda b: b[:-1] + b', "\\u0077indows": 5}',
    lambda b: b[:-1] + b', "meta": {"a": [1, [2, {"b": "\\ud800"}]]}}',  # lone surrogate
    lambda b: b[:-1] + b', "meta": "\xff\xfe"}',                          # invalid UTF-8
    lambda b: b[:-1] + b', "meta": true}',
    lambda b: b + b" ",
    lambda b: b + b"x",                                                   # trailing garbage
    lambda b: b.replace(b"1", b"NaN", 1),
    lambda b: b.replace(b",", b",,", 1),
    lambda b: b.replace(b"]", b",]", 1),                                  # trailing comma
    lambda b: b.replace(b"[", b"[[", 1) + b"]",
    lambda b: b.replace(b"0", b"00", 1),                                  # leading zero
    lambda b: b.replace(b"0", b"100000000000000000000000000", 1),         # bigint
    lambda b: b.replace(b"0", b"1e400", 1),
    lambda b: b.replace(b"0", b"-0", 1),
    lambda b: b.replace(b"0", b"true", 1),
    lambda b: b.replace(b"0", b'"0"', 1),
    lambda b: b.replace(b"0", b"null", 1),
    lambda b: b"  \t\n" + b + b"\n",
    lambda b: b,
])  # fmt: skip


def agree(body: bytes, fast_arr: np.ndarray | None, exact) -> None:  # type: ignore[no-untyped-def]
    if fast_arr is None:
        return  # declined: the exact path alone decides, as in production
    try:
        exact_arr = exact(body)
    except SidecarError as exc:
        try:
            contract._to_float32(fast_arr, "x")
        except SidecarError as fast_exc:
            assert type(fast_exc) is type(exc), f"fast: {fast_exc}, exact: {exc}"
            return
        raise AssertionError(f"the fast path accepts {body[:120]!r}, the exact path refuses: {exc}") from None
    np.testing.assert_array_equal(contract._to_float32(fast_arr, "x"), exact_arr)


SETTINGS = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.large_base_example, HealthCheck.data_too_large],
)


@SETTINGS
@given(window=windows(), style=st.integers(0, 5), hostile=HOSTILE)
def test_single_window_paths_agree(window, style, hostile) -> None:  # type: ignore[no-untyped-def]
    body = hostile(dump({"x": window, "id": "w-1"}, style))
    agree(body, contract._fast_windows(body, "x", single=True, max_batch=1), contract.exact_window)


@SETTINGS
@given(ws=st.lists(windows(), min_size=1, max_size=3), style=st.integers(0, 5), hostile=HOSTILE)
def test_batch_paths_agree(ws, style, hostile) -> None:  # type: ignore[no-untyped-def]
    body = hostile(dump({"windows": ws}, style))
    fast = contract._fast_windows(body, "windows", single=False, max_batch=2)
    agree(body, fast, lambda b: contract.exact_batch(b, 2))


def test_the_fast_path_still_takes_ordinary_bodies() -> None:
    """The fast path is not switched off by the declines: a plain body goes through it."""
    body = orjson.dumps({"x": [[0.25 * j for j in range(9)] for _ in range(100)], "meta": {"id": 7}})
    assert contract._fast_windows(body, "x", single=True, max_batch=1) is not None
    assert contract._fast_windows(b"\xef\xbb\xbf" + body, "x", single=True, max_batch=1) is None
