"""The /infer contract: shapes, limits and the parsers that turn a request body into a tensor.

JSON bodies go through two paths. The fast path (simdjson) parses the body, checks the window
structure (array lengths and the body's bracket count) and copies every number into one float64
buffer in C, refusing any non-numeric leaf; it only ever accepts. Whatever it does not accept
goes to the exact path (orjson + numpy), which decides with the same rules and names the
offending place. Per-element Python checks run only on that error path.

Where the two JSON parsers read a body differently, the fast path declines it so the exact path
decides: a byte order mark (simdjson skips it, orjson refuses it), a key given twice or written
with escapes (simdjson returns the first, orjson the last). Numbers go to float32 through float64
on both paths. tests/unit/test_contract_paths.py checks with hypothesis that every body the fast
path accepts, the exact path accepts with the same numbers.
"""

from __future__ import annotations

import math
import threading
from typing import Any

import numpy as np
import orjson
import simdjson

from .errors import InvalidInput, MalformedBody
from .shape import CHANNELS, WINDOW_LEN, WINDOW_VALUES

WINDOW_BYTES = WINDOW_VALUES * 4  # float32
JSON_BYTES_PER_WINDOW = 64 * 1024  # body limit per window for JSON bodies
FLOAT32_MAX = float(np.finfo(np.float32).max)

_BOOL_TOKENS = (b"true", b"false")


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _explain(x: Any, where: str) -> str | None:
    """Walks one window and names its first violation of the contract (error path only)."""
    if not isinstance(x, list):
        return f"{where} must be a list of {WINDOW_LEN} rows of {CHANNELS} numbers, got {_kind(x)}"
    if len(x) != WINDOW_LEN:
        return f"{where} has {len(x)} rows, expected {WINDOW_LEN}"
    for i, row in enumerate(x):
        if not isinstance(row, list):
            return f"{where}[{i}] must be a list of {CHANNELS} numbers, got {_kind(row)}"
        if len(row) != CHANNELS:
            return f"{where}[{i}] has {len(row)} values, expected {CHANNELS}"
        for j, v in enumerate(row):
            if isinstance(v, bool) or not isinstance(v, int | float):
                return f"{where}[{i}][{j}] is {_kind(v)}, expected a number"
            if isinstance(v, float) and not math.isfinite(v):
                return f"{where}[{i}][{j}] is not a finite number"
            if abs(v) > FLOAT32_MAX:
                return f"{where}[{i}][{j}] is out of float32 range (|value| > 3.4e38)"
    return None


def _first_non_finite(arr: np.ndarray, where: str) -> str:
    """Names the first NaN/Infinity (or float32 overflow) in arr of shape (N, 100, 9)."""
    n, i, j = (int(k) for k in np.argwhere(~np.isfinite(arr))[0])
    value = arr[n, i, j]
    what = "NaN" if np.isnan(value) else "Infinity (or out of float32 range)"
    prefix = f"{where}[{n}]" if where == "windows" else where
    return f"{prefix}[{i}][{j}] is {what}"


def decode_json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        hint = ""
        if b"NaN" in body or b"Infinity" in body:
            hint = " (NaN and Infinity are not JSON numbers)"
        raise MalformedBody(f"malformed JSON: {exc}{hint}") from None


_local = threading.local()
_BOM = b"\xef\xbb\xbf"


def _fast_windows(body: bytes, key: str, single: bool, max_batch: int) -> np.ndarray | None:
    """(N, 100, 9) float64 when ``body[key]`` is well-formed, else None (the exact path decides)."""
    if body.startswith(_BOM) or b"\\" in body:
        return None
    parser = getattr(_local, "parser", None)
    if parser is None:
        parser = _local.parser = simdjson.Parser()
    try:
        doc = parser.parse(body)
        if not isinstance(doc, simdjson.Object) or sum(1 for k in doc.keys() if k == key) != 1:  # noqa: SIM118 - keys() lists duplicates
            return None
        value = doc.get(key)
        if not isinstance(value, simdjson.Array):
            return None
        windows: Any = [value] if single else value
        n = len(windows)
        if not 1 <= n <= max_batch:
            return None
        # The structure by lengths; as_buffer then refuses any leaf that is not a number, but it
        # flattens nested lists. The body's bracket count rules those out: the windows alone
        # need exactly this many, so any more (a nested list, or brackets elsewhere in the body)
        # sends the body to the exact path.
        if body.count(b"[") != n * (1 + WINDOW_LEN) + (0 if single else 1):
            return None
        if not all(len(w) == WINDOW_LEN and all(len(r) == CHANNELS for r in w) for w in windows):
            return None
        flat = np.frombuffer(value.as_buffer(of_type="d"), dtype=np.float64)
    except (ValueError, TypeError, RuntimeError, KeyError):
        return None
    if flat.size != n * WINDOW_VALUES:  # pragma: no cover - implied by the checks above
        return None
    return flat.reshape(n, WINDOW_LEN, CHANNELS)


def _to_float32(arr: np.ndarray, where: str) -> np.ndarray:
    with np.errstate(over="ignore"):  # beyond float32 becomes inf, reported below
        # Through float64 as the fast path does (an int64 straight to float32 can round otherwise).
        out = arr.astype(np.float64, copy=False).astype(np.float32)
    if not np.isfinite(out).all():
        raise InvalidInput(_first_non_finite(out, where))
    return out


def _windows_to_array(windows: list[Any], body: bytes, where: str) -> np.ndarray:
    """Converts a list of candidate windows to float32 (N, 100, 9) or raises InvalidInput."""
    try:
        arr = np.array(windows)
    except (ValueError, OverflowError, TypeError):
        arr = None
    ok = arr is not None and arr.dtype.kind in "fi" and arr.shape == (len(windows), WINDOW_LEN, CHANNELS)
    if ok and np.any((arr == 0) | (arr == 1)) and any(t in body for t in _BOOL_TOKENS):
        # numpy turns a boolean among numbers into 1.0/0.0: when such values occur and the body
        # holds a boolean literal somewhere (metadata may), rule booleans out exactly.
        ok = not any(t in orjson.dumps(windows) for t in _BOOL_TOKENS)
    if not ok or arr is None:
        for n, w in enumerate(windows):
            msg = _explain(w, f"{where}[{n}]" if where == "windows" else where)
            if msg:
                raise InvalidInput(msg)
        raise InvalidInput(f"{where} is not made of {WINDOW_LEN}x{CHANNELS} numeric windows")
    return _to_float32(arr, where)


def parse_json_window(body: bytes) -> np.ndarray:
    """``{"x": [[9 numbers] x 100]}`` -> float32 array (1, 100, 9). Extra keys are ignored."""
    fast = _fast_windows(body, "x", single=True, max_batch=1)
    if fast is not None:
        return _to_float32(fast, "x")
    return exact_window(body)


def exact_window(body: bytes) -> np.ndarray:
    """parse_json_window's exact path (every body the fast path declines)."""
    doc = decode_json(body)
    if not isinstance(doc, dict):
        raise InvalidInput(f'body must be a JSON object with key "x", got {_kind(doc)}')
    if "x" not in doc:
        raise InvalidInput('body has no key "x" (expected {"x": [[9 numbers] x 100 rows]})')
    return _windows_to_array([doc["x"]], body, "x")


def parse_json_batch(body: bytes, max_batch: int) -> np.ndarray:
    """``{"windows": [window, ...]}`` -> float32 array (N, 100, 9), 1 <= N <= max_batch."""
    fast = _fast_windows(body, "windows", single=False, max_batch=max_batch)
    if fast is not None:
        return _to_float32(fast, "windows")
    return exact_batch(body, max_batch)


def exact_batch(body: bytes, max_batch: int) -> np.ndarray:
    """parse_json_batch's exact path (every body the fast path declines)."""
    doc = decode_json(body)
    if not isinstance(doc, dict):
        raise InvalidInput(f'body must be a JSON object with key "windows", got {_kind(doc)}')
    if "windows" not in doc:
        raise InvalidInput('body has no key "windows" (expected {"windows": [window, ...]})')
    windows = doc["windows"]
    if not isinstance(windows, list):
        raise InvalidInput(f"windows must be a list of windows, got {_kind(windows)}")
    check_batch_size(len(windows), max_batch)
    return _windows_to_array(windows, body, "windows")


def check_batch_size(n: int, max_batch: int) -> None:
    if n < 1:
        raise InvalidInput("windows is empty: send 1 or more windows")
    if n > max_batch:
        raise InvalidInput(f"windows has {n} windows, at most {max_batch} (MAX_BATCH) allowed")


def parse_binary(body: bytes, *, single: bool, max_batch: int) -> np.ndarray:
    """Raw little-endian float32, row-major, 3,600 bytes per window -> (N, 100, 9)."""
    if len(body) == 0 or len(body) % WINDOW_BYTES:
        raise InvalidInput(
            f"binary body has {len(body)} bytes, expected a multiple of {WINDOW_BYTES} "
            f"({WINDOW_LEN}x{CHANNELS} little-endian float32 per window)"
        )
    n = len(body) // WINDOW_BYTES
    if single and n != 1:
        raise InvalidInput(f"binary body holds {n} windows; /infer takes exactly 1 ({WINDOW_BYTES} bytes)")
    if not single:
        check_batch_size(n, max_batch)
    arr = np.frombuffer(body, dtype="<f4").reshape(n, WINDOW_LEN, CHANNELS)
    if not np.isfinite(arr).all():
        raise InvalidInput(_first_non_finite(arr, "x" if single else "windows"))
    return arr.astype(np.float32, copy=False)


def body_limit(max_windows: int) -> int:
    """Largest accepted body for a request of up to max_windows windows."""
    return JSON_BYTES_PER_WINDOW * max_windows
