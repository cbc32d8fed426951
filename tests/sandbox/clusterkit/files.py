"""The files a sandbox directory holds, and the small helpers every sandbox process uses to touch them."""
import contextlib
import fcntl
import json
import os
import pathlib
from typing import Any, Iterator


class SandboxFiles:
    """Paths inside one `$TP_SANDBOX_DIR`, named once so the processes agree on them."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.root = pathlib.Path(directory).resolve()
        self.ports = self.root / 'ports'
        self.pids = self.root / 'pids'
        self.logs = self.root / 'logs'
        self.api_port = self.ports / 'api'
        self.mirror_port = self.ports / 'mirror'
        self.traffic_ports = self.ports / 'traffic.json'
        self.secret = self.root / 'secret'
        self.kubeconfig = self.root / 'kubeconfig'
        self.env_sh = self.root / 'env.sh'
        self.state = self.root / 'state.json'
        self.state_lock = self.root / 'state.lock'
        self.faults = self.root / 'faults.json'
        self.faults_state = self.root / 'faults.state.json'
        self.faults_lock = self.root / 'faults.lock'
        self.knobs = self.root / 'knobs.json'
        self.events = self.root / 'events.log'
        self.traffic_manager = self.root / 'traffic-manager.json'  # the emulated manager's memory (injector.py)

    def make_dirs(self) -> None:
        for path in (self.root, self.ports, self.pids, self.logs):
            path.mkdir(parents=True, exist_ok=True)


def write_atomically(path: pathlib.Path, text: str) -> None:
    """Readers poll for these files: they must never see a half-written one."""
    tmp = path.with_name(f'.{path.name}.{os.getpid()}.tmp')
    tmp.write_text(text, encoding='utf-8')
    os.replace(tmp, path)


def read_json(path: pathlib.Path, default: Any = None) -> Any:
    """A missing, empty or half-edited file reads as `default`: tests write these files while we run."""
    try:
        text = path.read_text(encoding='utf-8')
    except (FileNotFoundError, NotADirectoryError):
        return default
    try:
        return json.loads(text) if text.strip() else default
    except ValueError:
        return default


@contextlib.contextmanager
def locked(lock_path: pathlib.Path, shared: bool = False) -> Iterator[None]:
    """An fcntl lock on a side file, the same protocol the emulator uses for state.json and faults.state.json."""
    with open(lock_path, 'a+b') as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
