"""The contract's shapes, free of dependencies: the compiler checks models against them too."""

WINDOW_LEN = 100  # time steps per window (rows)
CHANNELS = 9  # IMU channels per time step (columns)
LATENT_DIM = 64
WINDOW_VALUES = WINDOW_LEN * CHANNELS
