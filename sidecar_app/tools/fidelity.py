"""What HailoRT does on a device, recorded in the form the lab's stand-in can be compared with.

`hailo-sidecar fidelity --hef PATH` runs where the device is (the runtime image on a Pi, with the
sidecar stopped: one process owns the device) and prints JSON: the library's version, the HEF's
input and output shapes as the InferModel reports them, the async queue's size, the bound the
pipeline really holds (the most frames wait_for_async_ready grants an idle model: 4.23 builds its
pools at twice the queue size), and the class, status and message of failures it provokes on
purpose (a second VDevice while one is open; a wait for one frame more than that bound; pushes of
as many frames as the bound, of one more, and a push after that). The acceptance playbook adds the
host's CLI texts and compares the lot with the stand-in (lab/scripts/fidelity.py), so the first
hardware run shows where the lab was wrong.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..backends.hailo import hailort_status


def _failure(fn: Any) -> dict[str, Any] | None:
    """Runs FN; the exception it raises as {class, module, status, message}, None when it does not."""
    try:
        fn()
    except Exception as exc:
        return {
            "class": type(exc).__name__,
            "module": type(exc).__module__,
            "status": hailort_status(exc),
            "cause": type(exc.__cause__).__name__ if exc.__cause__ is not None else None,
            "message": str(exc),
        }
    return None


def observe(hef: Path) -> dict[str, Any]:
    import hailo_platform as hp

    obs: dict[str, Any] = {"hailort": str(getattr(hp, "__version__", "unknown"))}
    params = hp.VDevice.create_params()
    params.scheduling_algorithm = hp.HailoSchedulingAlgorithm.ROUND_ROBIN
    vdevice = hp.VDevice(params)
    try:
        obs["second_vdevice"] = _failure(lambda: hp.VDevice(params).release())
        model = vdevice.create_infer_model(str(hef))
        (name,) = model.input_names
        obs["input"] = {"name": name, "shape": [int(d) for d in model.input(name).shape]}
        obs["outputs"] = {n: [int(d) for d in model.output(n).shape] for n in model.output_names}
        model.input(name).set_format_type(hp.FormatType.FLOAT32)
        for n in model.output_names:
            model.output(n).set_format_type(hp.FormatType.FLOAT32)
        with model.configure() as cim:
            queue = int(cim.get_async_queue_size())
            obs["async_queue_size"] = queue

            # The bound, found without a push past it (that would shut the model down): the most
            # frames an idle model is granted, up to four times the queue.
            def wait(frames: int) -> dict[str, Any] | None:
                return _failure(lambda: cim.wait_for_async_ready(200, frames_count=frames))

            bound = queue
            while bound < 4 * queue and wait(bound + 1) is None:
                bound += 1
            obs["wait_bound"] = bound
            obs["wait_past_bound"] = wait(bound + 1)

            def bindings() -> Any:
                b = cim.create_bindings(
                    output_buffers={n: np.empty(obs["outputs"][n], np.float32) for n in obs["outputs"]}
                )
                b.input(name).set_buffer(np.zeros(obs["input"]["shape"], np.float32))
                return b

            obs["push_to_bound"] = _failure(lambda: cim.run([bindings() for _slot in range(bound)], 2000))
            batch = [bindings() for _slot in range(bound + 1)]
            obs["push_past_bound"] = _failure(lambda: cim.run(batch, 2000))
            obs["push_after_that"] = _failure(lambda: cim.run([bindings()], 2000))
    finally:
        vdevice.release()
    return obs


def main(hef: Path, out: Path | None) -> int:
    text = json.dumps(observe(hef), indent=2, sort_keys=True)
    if out is None:
        print(text)
    else:
        out.write_text(text + "\n")
    return 0
