"""The sidecar's input and output shapes, as the compiler checks models against them.

A copy of sidecar_app/shape.py's values, so that the compiler image carries only this package
(images/compiler/): tests/unit/test_build_contexts.py checks the two are equal.
"""

WINDOW_LEN = 100  # time steps per window (rows)
CHANNELS = 9  # IMU channels per time step (columns)
LATENT_DIM = 64
