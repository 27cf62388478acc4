"""hailo-compile: ONNX to a versioned .hef release with the Hailo Dataflow Compiler (x86_64).

Inputs are checked against the sidecar's contract before the DFC runs; each DFC stage's output
is cached by the sha256 of its inputs and the DFC version; a release is written atomically as
<out>/<model>/<version>/{model.hef, model.hef.sha256, manifest.json}.
"""
