"""Building blocks of the sandbox's simulated Kubernetes cluster (see tests/sandbox/README.md).

`seed` and `files` are stdlib-only so that `traffic.py`, `up` and `down` can import them without the venv;
the API server modules (`emulator`, `controller`, ...) need the pinned kmock 0.8.
"""
