# -*- coding: utf-8 -*-
# Copyright: devloop.telepresence contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one runner for the Telepresence CLI, and the decoding of everything it prints.

Every call is an argv list (never a shell), runs with ``LC_ALL=C`` and no standard input (so a sudo
password prompt can never block), and is bounded by a timeout after which its whole process group is
killed. Failures surface as one exception type, :class:`TelepresenceError`, that carries the argv, exit
code and output so a module can report them as data.
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import stat
import subprocess
import sys
import threading
import time

from ansible_collections.devloop.telepresence.plugins.module_utils.capabilities import (
    Capabilities,
    parse_version,
)

# Output wrapped by --output json on 2.17-2.28 (and --output on 2.29+): {"cmd", "stdout", "stderr", "err"}.
ENVELOPE_KEYS = frozenset(("cmd", "stdout", "stderr", "err"))
CLIENT_VERSION_RE = re.compile(r"Client\s*:\s*v(\S+)")
# How long to keep reading pipes after the process ended: a daemon it launched may hold them open.
PIPE_GRACE_SECONDS = 0.5


class TelepresenceError(Exception):
    """A failed Telepresence call, or output that cannot be understood."""

    def __init__(self, msg, argv=None, rc=None, stdout="", stderr="", timed_out=False):
        super().__init__(msg)
        self.msg = msg
        self.argv = list(argv) if argv else None
        self.rc = rc
        self.stdout = stdout
        self.stderr = stderr
        self.timed_out = timed_out

    def __str__(self):
        # msg may be rewritten after raising (connection.connect turns a sudo prompt into instructions), and
        # fail_with reports str(error): both must say the same.
        return self.msg

    def details(self):
        """The fields a module adds to ``fail_json`` next to ``msg``."""
        details = {}
        if self.argv is not None:
            details.update(command=self.argv, rc=self.rc, stdout=self.stdout, stderr=self.stderr)
        if self.timed_out:
            details["timed_out"] = True
        return details


class CliResult:
    """What one CLI call did: argv, exit code, output and how long it took."""

    def __init__(self, argv, rc, stdout, stderr, duration):
        self.argv = argv
        self.rc = rc
        self.stdout = stdout
        self.stderr = stderr
        self.duration = duration

    def json(self):
        """The decoded JSON payload of stdout (see :func:`decode_json_output`)."""
        return decode_json_output(self.stdout, self.argv)


def find_binary(module, binary_path=None):
    """The telepresence executable: ``binary_path`` when given, else the first on PATH."""
    if binary_path:
        path = os.path.expanduser(binary_path)
        if not os.path.isfile(path) or not os.access(path, os.X_OK):
            module.fail_json(msg="binary_path %s is not an executable file; install the client (tp_binary) "
                                 "or point binary_path at it" % path)
        return path
    path = module.get_bin_path("telepresence")
    if not path:
        module.fail_json(msg="no telepresence executable found on PATH; install it with "
                             "devloop.telepresence.tp_binary or set binary_path")
    return path


def run_process(argv, timeout, env=None, cwd=None):
    """Run argv with no stdin (in ``cwd`` if given); return ``(rc, stdout, stderr, timed_out)``.

    The call runs in its own process group, and that group is killed when the call times out or when the
    module stops waiting for any other reason (SIGTERM, SIGINT, the loss of the controller, an exception):
    nothing the call started in its group outlives the task. A call that already ended is left alone, so a
    daemon it launched in a session of its own (``connect``) keeps running. Pipes are drained by threads
    because such a daemon may inherit them and keep them open long after the command itself has returned.
    """
    # AnsibleModule.run_command cannot start the child in a process group of its own, which the group kill
    # needs; this is the collection's one runner, so the sanity rule against Popen is waived here only.
    proc = None
    chunks = {"out": [], "err": []}
    readers = []
    timed_out = False
    # The handlers are in place before the child starts: a signal while it is being started is held until Popen
    # has returned, then raises, so the group is known and killed (before, it ended the module at once, leaving the
    # child's group running).
    guard = _interrupts_raise(hold_while_starting=True)
    try:
        with guard:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,  # pylint: disable=ansible-bad-function
                                    stderr=subprocess.PIPE, env=env, cwd=cwd, close_fds=True, start_new_session=True,
                                    preexec_fn=_die_with_parent())
            guard.started()
            readers = [threading.Thread(target=_drain, args=(proc.stdout, chunks["out"])),
                       threading.Thread(target=_drain, args=(proc.stderr, chunks["err"]))]
            for reader in readers:
                reader.daemon = True
                reader.start()
            rc = _wait(proc, timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        rc = None
    finally:
        if proc is not None and proc.poll() is None:
            _kill_group(proc)
            proc.wait()
    if timed_out:
        rc = proc.returncode
    for reader in readers:
        reader.join(PIPE_GRACE_SECONDS)
    return rc, _text(chunks["out"]), _text(chunks["err"]), timed_out


class Interrupted(BaseException):
    """The module was told to stop (SIGTERM, SIGINT) or its controller went away while a call ran.

    A ``BaseException`` like ``KeyboardInterrupt``, so that no ``except Exception`` on the way up turns an
    interrupt into a task result; the ``finally`` blocks (the call's process group, temporary files) still run.
    """

    def __init__(self, reason):
        super().__init__(reason)
        self.reason = reason


# How often a wait checks that someone still reads the module's result.
WATCH_INTERVAL = 0.2


def _wait(proc, timeout):
    """``proc.wait(timeout)``, raising :class:`Interrupted` as soon as the controller is gone."""
    deadline = time.monotonic() + timeout
    exit_fd = _exit_fd(proc)
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise subprocess.TimeoutExpired(proc.args, timeout)
            if _exited(proc, exit_fd, min(WATCH_INTERVAL, remaining)):
                return proc.wait()
            if controller_gone():
                raise Interrupted("the controller stopped reading this module's result")
    finally:
        if exit_fd is not None:
            os.close(exit_fd)


def _exit_fd(proc):
    """A descriptor that becomes readable when ``proc`` exits (Linux 5.3+ pidfd), else None."""
    try:
        return os.pidfd_open(proc.pid)
    except (AttributeError, OSError):
        return None


def _exited(proc, exit_fd, seconds):
    """Whether ``proc`` ended within ``seconds``.

    With a pidfd the wait ends the moment the process does; ``Popen.wait(timeout)`` polls with sleeps growing to
    50 ms, which made the emulator's ``version`` call 68 ms instead of 35 (issue 16). Without a pidfd (macOS, older
    kernels) that polling is what remains.
    """
    if exit_fd is None:
        try:
            proc.wait(timeout=seconds)
            return True
        except subprocess.TimeoutExpired:
            return False
    poller = select.poll()
    poller.register(exit_fd, select.POLLIN)
    return bool(poller.poll(seconds * 1000))


def controller_gone(fd=1):
    """True when the module's stdout is a pipe that nobody reads any more.

    Ansible reads a module's result from its stdout pipe (the worker process locally, sshd remotely). On SIGINT
    the 2.19 worker exits without signalling the module's process group, so the module only learns that the
    run was interrupted from the pipe: its read end is closed and ``poll`` reports an error on the write end.
    """
    try:
        if not stat.S_ISFIFO(os.fstat(fd).st_mode):
            return False
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        events = poller.poll(0)
    except (OSError, ValueError, AttributeError):
        return False
    return any(mask & (select.POLLERR | select.POLLHUP | select.POLLNVAL) for _fd, mask in events)


class _interrupts_raise:
    """While a call runs, SIGTERM and SIGINT raise :class:`Interrupted` so the wait's ``finally`` runs.

    Python's default SIGTERM ends the process at once and would leave the call's process group running; the
    previous handlers come back when the call ends. Handlers can only be set from the main thread; elsewhere
    this does nothing.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self, hold_while_starting=False):
        self.previous = {}
        self.holding = hold_while_starting
        self.held = None

    def __enter__(self):
        if threading.current_thread() is not threading.main_thread():
            return self
        for signum in self.SIGNALS:
            try:
                self.previous[signum] = signal.signal(signum, self._handle)
            except (OSError, ValueError):
                pass
        return self

    def _handle(self, signum, frame):
        if self.holding:
            self.held = signum
            return
        _raise_interrupted(signum, frame)

    def started(self):
        """The child is started: a signal held meanwhile raises now, and any later one at once."""
        self.holding = False
        if self.held is not None:
            _raise_interrupted(self.held, None)

    def __exit__(self, *exc_info):
        for signum, handler in self.previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        if self.holding and self.held is not None:
            # the child never started (Popen failed): the interrupt is still what ends the task
            _raise_interrupted(self.held, None)
        return False


def interrupts_raise():
    """The context manager of :func:`run_process` for other waits of a module (tp_binary's download)."""
    return _interrupts_raise()


def _raise_interrupted(signum, _frame):
    raise Interrupted("received %s" % signal.Signals(signum).name)


# prctl(2) option: the signal the kernel sends this process when its parent thread dies.
PR_SET_PDEATHSIG = 1


def _die_with_parent():
    """A ``preexec_fn`` that asks Linux to SIGKILL the CLI when the module process dies, or None elsewhere.

    This covers a module killed with SIGKILL, where no handler or ``finally`` runs. The module process is the
    right parent to watch: AnsiballZ runs the module in its own process, and the module process is what waits
    for the call. The death signal reaches the CLI process itself (not its children, which telepresence does
    not start in its group); it fires when the parent *thread* ends, and calls run from the module's main
    thread. macOS and the BSDs have no such signal; there the handlers and the controller watch are all.
    libc is loaded here, before the fork, because the child may only make async-signal-safe calls.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes  # pylint: disable=import-outside-toplevel
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (ImportError, OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec():
        prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != parent:
            # the module died between fork and prctl: the death signal will never come
            os.kill(os.getpid(), signal.SIGKILL)

    return preexec


def _drain(pipe, sink):
    try:
        # read1 returns what is there; read(n) would wait for n bytes or EOF, which never comes while a
        # daemon holds the pipe open.
        for block in iter(lambda: pipe.read1(65536), b""):
            sink.append(block)
    except (OSError, ValueError):
        pass


def _kill_group(proc):
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        proc.kill()


def _text(chunks):
    return b"".join(chunks).decode("utf-8", errors="replace")


class TelepresenceCli:
    """Runs the telepresence binary for a module and remembers every argv it ran."""

    def __init__(self, module, binary, timeout=60, kubeconfig=None, context=None):
        self.module = module
        self.binary = binary
        self.timeout = timeout
        self.kubeconfig = kubeconfig
        self.context = context
        self.commands = []
        self._capabilities = None

    @classmethod
    def from_params(cls, module, binary=None):
        """A runner configured from the common options (see ``common.COMMON_ARGUMENT_SPEC``)."""
        params = module.params
        return cls(module, binary or find_binary(module, params.get("binary_path")),
                   timeout=params.get("timeout") or 60,
                   kubeconfig=params.get("kubeconfig"), context=params.get("context"))

    def environment(self):
        """The child's environment: parseable C locale, and a kubeconfig list passed the way kubectl reads one."""
        env = dict(os.environ, LC_ALL="C", LANG="C")
        if self.kubeconfig and os.pathsep in self.kubeconfig:
            env["KUBECONFIG"] = self.kubeconfig
        return env

    def kube_flags(self):
        """``--kubeconfig``/``--context`` for commands that talk to the cluster, always in the same order."""
        flags = []
        if self.kubeconfig and os.pathsep not in self.kubeconfig:
            flags += ["--kubeconfig", os.path.expanduser(self.kubeconfig)]
        if self.context:
            flags += ["--context", self.context]
        return flags

    def argv(self, args):
        return [self.binary] + [str(arg) for arg in args]

    def run(self, args, timeout=None, check=True):
        """Run ``telepresence <args>``; raise :class:`TelepresenceError` on timeout or (with check) rc != 0."""
        argv = self.argv(args)
        self.commands.append(argv)
        limit = timeout or self.timeout
        started = time.monotonic()
        try:
            rc, out, err, timed_out = run_process(argv, limit, env=self.environment())
        except OSError as exc:
            raise TelepresenceError("cannot run %s: %s" % (self.binary, exc), argv=argv)
        result = CliResult(argv, rc, out, err, time.monotonic() - started)
        if timed_out:
            raise TelepresenceError(
                "telepresence %s did not finish within %s s and was stopped; raise the timeout option if the "
                "cluster is slow" % (command_name(args), limit),
                argv=argv, rc=rc, stdout=out, stderr=err, timed_out=True)
        if check and rc != 0:
            raise TelepresenceError(failure_message(args, out, err, rc), argv=argv, rc=rc, stdout=out, stderr=err)
        return result

    def run_json(self, args, timeout=None):
        """Run a command with JSON output and return its decoded payload.

        ``--output json`` is accepted by every supported version (2.29+ keeps it as a deprecated alias
        with the historical shapes), so a module never needs the client version just to parse output.
        """
        result = self.run(list(args) + ["--output", "json"], timeout=timeout, check=False)
        try:
            payload = decode_json_output(result.stdout, result.argv)
        except TelepresenceError as exc:
            if result.rc != 0:
                raise TelepresenceError(failure_message(args, result.stdout, result.stderr, result.rc),
                                        argv=result.argv, rc=result.rc, stdout=result.stdout, stderr=result.stderr)
            exc.rc, exc.stdout, exc.stderr = result.rc, result.stdout, result.stderr
            raise
        if payload.error or result.rc != 0:
            message = payload.error or failure_message(args, result.stdout, result.stderr, result.rc)
            raise TelepresenceError(message, argv=result.argv, rc=result.rc,
                                    stdout=result.stdout, stderr=result.stderr)
        return payload.data

    def client_version(self):
        """The client's version without ``v`` (one ``telepresence version`` call, cached)."""
        return self.capabilities().version_string

    def capabilities(self):
        if self._capabilities is None:
            result = self.run(["version"])
            self._capabilities = Capabilities(parse_client_version(result.stdout, result.argv))
        return self._capabilities


def command_name(args):
    """``helm install`` for ``["helm", "install", "--x"]``: the command path the user would recognise."""
    words = []
    for arg in args:
        arg = str(arg)
        if arg.startswith("-") or len(words) == 2 or (words and words[0] != "helm"):
            break
        words.append(arg)
    return " ".join(words) or "(no command)"


def failure_message(args, stdout, stderr, rc):
    """A readable one-line reason for a failed call, whatever shape the version printed it in."""
    reason = _error_from_json(stdout) or _last_meaningful_line(stderr) or _last_meaningful_line(stdout)
    if not reason:
        reason = "exit code %s with no output" % rc
    return "telepresence %s failed: %s" % (command_name(args), reason)


def _error_from_json(stdout):
    try:
        payload = decode_json_output(stdout)
    except TelepresenceError:
        return None
    return payload.error


def _last_meaningful_line(text):
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    # The deprecation banner of an implicit connect or of --output is noise, not the reason.
    lines = [line for line in lines if not line.startswith(("Warning:", "Flag --output has been deprecated"))]
    if not lines:
        return None
    line = lines[-1]
    return re.sub(r"^telepresence [a-z -]+: error: ", "", line)


class JsonOutput:
    """Decoded CLI output: ``shape`` is envelope, format, bare or empty; ``data`` the payload; ``error`` the failure."""

    def __init__(self, shape, data=None, error=None, stderr=None):
        self.shape = shape
        self.data = data
        self.error = error
        self.stderr = stderr


def decode_json_output(stdout, argv=None):
    """Decode the JSON printed by any supported version.

    Shapes (facts sheet sections 2, 3, 5 and 11):
      * the ``--output json`` envelope ``{"cmd", "stdout", "stderr", "err"}``; ``stdout`` is text or JSON;
      * a bare object (``status``, ``intercept --detailed-output``), also what 2.29+ ``--format json`` prints;
      * ``{"error": "..."}`` from 2.29+ ``--format json`` on failure;
      * nothing at all (2.23+ success with ``--output json`` on commands whose progress output is silenced).
    """
    text = (stdout or "").strip()
    if not text:
        return JsonOutput("empty")
    try:
        data = json.loads(text)
    except ValueError:
        raise TelepresenceError("telepresence printed output that is not JSON: %s" % _excerpt(text), argv=argv)
    if isinstance(data, dict) and data and set(data) <= ENVELOPE_KEYS and "cmd" in data:
        return JsonOutput("envelope", data=data.get("stdout"), error=data.get("err") or None,
                          stderr=data.get("stderr"))
    if isinstance(data, dict) and set(data) == {"error"}:
        return JsonOutput("format", error=data["error"] or "unknown error")
    return JsonOutput("bare", data=data)


def _excerpt(text, limit=200):
    return text if len(text) <= limit else text[:limit] + "..."


def parse_client_version(text, argv=None):
    """The client version (no ``v``) from ``telepresence version`` output, text or JSON.

    Accepts the padded 2.x text (``OSS Client : v2.24.0``), the old ``Client: v2.5.0 (api v3)`` form, the
    ``--output json`` envelope holding that text, and the 2.29+ ``{"client": "v2.29.0"}`` object.
    """
    candidate = text or ""
    try:
        payload = decode_json_output(candidate)
    except TelepresenceError:
        payload = None
    if payload is not None and payload.shape in ("envelope", "bare"):
        if isinstance(payload.data, dict) and payload.data.get("client"):
            return _checked_version(str(payload.data["client"]), candidate, argv)
        if isinstance(payload.data, str):
            candidate = payload.data
    match = CLIENT_VERSION_RE.search(candidate)
    if not match:
        raise TelepresenceError("cannot find the client version in the output of telepresence version: %s"
                                % _excerpt(candidate.strip() or "(empty)"), argv=argv, stdout=text)
    return _checked_version(match.group(1), candidate, argv)


def _checked_version(raw, text, argv):
    version = raw.lstrip("v")
    if parse_version(version) is None:
        raise TelepresenceError("telepresence version reported %r, which is not a version" % raw,
                                argv=argv, stdout=text)
    return version
