"""The `hailo-sidecar` command's tools, apart from the server: the healthcheck and the smoke (clients
of a running sidecar), the benchmarks and their load generator, parity, the fidelity probe and the
reference model. Nothing the server imports lives here (tests/unit/test_server.py checks it).
"""
