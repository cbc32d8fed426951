"""`up` and `down`: start the sandbox services detached, and stop exactly the processes `up` started. Stdlib only."""
import json
import os
import pathlib
import secrets
import shlex
import signal
import subprocess
import sys
import time

from .files import SandboxFiles, read_json, write_atomically

SANDBOX = pathlib.Path(__file__).resolve().parent.parent
REPO = SANDBOX.parent.parent
DEFAULT_VERSIONS = ('2.20.2', '2.24.0', '2.24.1', '2.25.0', '2.29.0', '2.30.0')
START_TIMEOUT_SECONDS = 10.0
STOP_TIMEOUT_SECONDS = 5.0
POLL_SECONDS = 0.02


class SandboxError(Exception):
    pass


def sandbox_dir() -> pathlib.Path:
    return pathlib.Path(os.environ.get('TP_SANDBOX_DIR') or REPO / '.sandbox').resolve()


def service_python() -> str:
    """TP_SANDBOX_PYTHON, else the checkout's venv, else the Python running us (ansible-test drops unknown env
    vars and runs targets from a copy without .venv, but with the venv's interpreter)."""
    venv_python = REPO / '.venv' / 'bin' / 'python'
    return os.environ.get('TP_SANDBOX_PYTHON') or (str(venv_python) if venv_python.exists() else sys.executable)


def services(files: SandboxFiles) -> dict[str, tuple[list[str], pathlib.Path]]:
    """name -> (command line, the port file that says it is ready)."""
    python = service_python()
    directory = str(files.root)
    return {
        'cluster': ([python, str(SANDBOX / 'cluster.py'), '--dir', directory], files.api_port),
        'traffic': ([python, str(SANDBOX / 'traffic.py'), '--dir', directory], files.traffic_ports),
        'mirror': ([python, str(SANDBOX / 'mirror.py'), 'serve', '--dir', directory], files.mirror_port),
    }


# ---------------------------------------------------------------------- processes and pid files

def read_pid(pid_file: pathlib.Path) -> int | None:
    try:
        return int(pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def is_ours(pid: int, files: SandboxFiles) -> bool:
    """Alive and started for this sandbox directory: a pid reused by an unrelated process is not ours."""
    try:
        cmdline = pathlib.Path(f'/proc/{pid}/cmdline').read_bytes().split(b'\0')
        return str(files.root).encode() in cmdline and _state(pid) != 'Z'
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return False


def _state(pid: int) -> str:
    """The process state letter from /proc (Z: a zombie, which no longer runs)."""
    return pathlib.Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()[0]


def running_pid(files: SandboxFiles, name: str) -> int | None:
    pid = read_pid(files.pids / f'{name}.pid')
    return pid if pid is not None and is_ours(pid, files) else None


def start_service(files: SandboxFiles, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
    """Detached (own session, so a terminal's ^C or the caller's exit does not reach it), output to logs/<name>.log."""
    with open(files.logs / f'{name}.log', 'ab') as log:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True, cwd=str(files.root))
    write_atomically(files.pids / f'{name}.pid', f'{process.pid}\n')
    return process


def stop_group(pid: int, timeout: float = STOP_TIMEOUT_SECONDS) -> None:
    """SIGTERM to the service's process group (its own: `up` starts each in a new session), SIGKILL after `timeout`.

    A listed pid that does not lead its own group gets the signals alone, so nothing else is hit.
    """
    try:
        leads_group = os.getpgid(pid) == pid
    except ProcessLookupError:
        return
    send = (lambda sig: os.killpg(pid, sig)) if leads_group else (lambda sig: os.kill(pid, sig))
    try:
        send(signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _reap(pid)
        if _is_gone(pid):
            return
        time.sleep(POLL_SECONDS)
    try:
        send(signal.SIGKILL)
    except ProcessLookupError:
        pass


def _is_gone(pid: int) -> bool:
    """Exited: no such process, or a zombie waiting for its (possibly slow) reaper."""
    try:
        return _state(pid) == 'Z'
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return True


def _reap(pid: int) -> None:
    """When the caller is also the parent (the test fixture's `up` is not), collect the zombie."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def stop_all(files: SandboxFiles) -> list[str]:
    stopped = []
    for pid_file in sorted(files.pids.glob('*.pid')) if files.pids.is_dir() else []:
        pid = read_pid(pid_file)
        if pid is not None and is_ours(pid, files):
            stop_group(pid)
            stopped.append(pid_file.stem)
        pid_file.unlink(missing_ok=True)
    for port_file in (files.api_port, files.traffic_ports, files.mirror_port):
        port_file.unlink(missing_ok=True)
    return stopped


# ---------------------------------------------------------------------- up

def wait_for_ports(files: SandboxFiles, started: dict[str, subprocess.Popen[bytes]],
                   ready_files: dict[str, pathlib.Path]) -> None:
    """Until every port file exists. A child we just started is watched through its Popen, not /proc: right after
    exec its /proc/<pid>/cmdline can still read empty."""
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while True:
        missing = [name for name, path in ready_files.items() if not path.exists()]
        if not missing:
            return
        dead = [name for name in missing if name in started and started[name].poll() is not None]
        if dead:
            raise SandboxError(f'{", ".join(dead)} exited during startup; see {files.logs}/{dead[0]}.log:\n'
                               + log_tail(files, dead[0]))
        if time.monotonic() > deadline:
            raise SandboxError(f'{", ".join(missing)} did not write its port file within {START_TIMEOUT_SECONDS:.0f} s;'
                               f' see {files.logs}/{missing[0]}.log:\n' + log_tail(files, missing[0]))
        time.sleep(POLL_SECONDS)


def log_tail(files: SandboxFiles, name: str, lines: int = 15) -> str:
    try:
        return '\n'.join((files.logs / f'{name}.log').read_text(errors='replace').splitlines()[-lines:])
    except FileNotFoundError:
        return '(no log)'


def build_mirror(files: SandboxFiles) -> None:
    result = subprocess.run([service_python(), str(SANDBOX / 'mirror.py'), 'build', '--dir', str(files.root)],
                            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60, check=False)
    if result.returncode != 0:
        raise SandboxError(f'mirror.py build failed ({result.returncode}):\n{result.stderr.strip()}')


def kube_token(files: SandboxFiles) -> str:
    """One token per sandbox, kept across `up` runs: tests grep outputs for it to prove it never leaks."""
    config = read_json(files.kubeconfig, {}) or {}
    for user in config.get('users') or []:
        token = (user.get('user') or {}).get('token')
        if token:
            return token
    return f'sandbox-token-{secrets.token_hex(16)}'


def write_kubeconfig(files: SandboxFiles, api_url: str) -> None:
    config = {
        'apiVersion': 'v1', 'kind': 'Config', 'preferences': {}, 'current-context': 'sandbox',
        'clusters': [{'name': 'sandbox', 'cluster': {'server': api_url}}],
        'users': [{'name': 'sandbox', 'user': {'token': kube_token(files)}}],
        'contexts': [{'name': 'sandbox', 'context': {'cluster': 'sandbox', 'user': 'sandbox', 'namespace': 'default'}}],
    }
    write_atomically(files.kubeconfig, json.dumps(config, indent=2) + '\n')
    files.kubeconfig.chmod(0o600)


def mirror_versions(files: SandboxFiles) -> list[str]:
    """The versions the mirror serves, from its directory (sorted as versions); the contract's list as a fallback."""
    found = [path.name[1:] for path in (files.root / 'mirror').glob('v*') if path.is_dir()]
    return sorted(found, key=_version_key) or list(DEFAULT_VERSIONS)


def exported_env(files: SandboxFiles) -> dict[str, str]:
    api = f'http://127.0.0.1:{files.api_port.read_text().strip()}'
    env = {
        'TP_SANDBOX_DIR': str(files.root),
        'KUBECONFIG': str(files.kubeconfig),
        'TP_SANDBOX_API': api,
        'TP_SANDBOX_MIRROR': f'http://127.0.0.1:{files.mirror_port.read_text().strip()}',
        'TP_SANDBOX_VERSIONS': ' '.join(mirror_versions(files)),
    }
    for key, entry in sorted((read_json(files.traffic_ports, {}) or {}).items()):
        namespace, service = key.split('/', 1)
        if namespace == 'app':  # the seeded Services; any other is reached with tests/sandbox/traffic-url
            env[f'TP_SANDBOX_TRAFFIC_{service.upper().replace("-", "_")}'] = entry['url']
    env['TP_SANDBOX_SECRET'] = files.secret.read_text().strip()
    return env


def up(files: SandboxFiles) -> dict[str, str]:
    """Start what is not running (reusing what is), wait for the port files, write kubeconfig and env.sh."""
    files.make_dirs()
    commands = services(files)
    started: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for name in ('cluster', 'traffic'):  # the mirror build runs while these two start
            if running_pid(files, name) is None:
                commands[name][1].unlink(missing_ok=True)
                started[name] = start_service(files, name, commands[name][0])
        if running_pid(files, 'mirror') is None:
            build_mirror(files)
            files.mirror_port.unlink(missing_ok=True)
            started['mirror'] = start_service(files, 'mirror', commands['mirror'][0])
        wait_for_ports(files, started, {name: ready for name, (_argv, ready) in commands.items()})
        write_kubeconfig(files, f'http://127.0.0.1:{files.api_port.read_text().strip()}')
        env = exported_env(files)
    except BaseException:
        for process in started.values():  # leave nothing behind that this run started
            stop_group(process.pid)
        for name in started:
            (files.pids / f'{name}.pid').unlink(missing_ok=True)
        raise
    write_atomically(files.env_sh, render_exports(env))
    return env


def render_exports(env: dict[str, str]) -> str:
    return ''.join(f'export {key}={shlex.quote(value)}\n' for key, value in env.items())


def main_up() -> int:
    began = time.monotonic()
    files = SandboxFiles(sandbox_dir())
    try:
        env = up(files)
    except SandboxError as exc:
        print(f'sandbox up: {exc}', file=sys.stderr)
        return 1
    sys.stdout.write(render_exports(env))
    print(f'# sandbox up in {time.monotonic() - began:.2f} s ({files.root})', file=sys.stderr)
    return 0


def main_down() -> int:
    files = SandboxFiles(sandbox_dir())
    stopped = stop_all(files)
    print(f'# sandbox down: stopped {", ".join(stopped) or "nothing"} ({files.root})', file=sys.stderr)
    return 0


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) if part.isdigit() else 0 for part in version.split('.'))
