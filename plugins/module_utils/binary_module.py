# -*- coding: utf-8 -*-
# Copyright: devloop.telepresence contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The code of module tp_binary (plugins/modules/tp_binary.py holds its documentation).

Here, not in the module, so that tp_plan can run it in tp_plan's own process (issue 16).
"""

from __future__ import annotations

import os
import platform

from ansible.module_utils.basic import AnsibleModule, env_fallback
from ansible.module_utils.urls import open_url

from ansible_collections.devloop.telepresence.plugins.module_utils.binary import (
    GITHUB_RELEASES,
    TEMP_PREFIX,
    TEMP_SUFFIX,
    BinaryError,
    DirectoryLock,
    Downloader,
    artifact_name,
    artifact_url,
    detect_platform,
    digest_from_checksum_file,
    nearest_existing_folder,
    normalize_version,
    parse_checksum,
    published_digest,
    remove_stale_downloads,
    sha256_of_file,
    url_problem,
)
from ansible_collections.devloop.telepresence.plugins.module_utils.cli import TelepresenceCli, TelepresenceError, interrupts_raise
from ansible_collections.devloop.telepresence.plugins.module_utils.common import check_non_negative, check_positive, fail_with
from ansible_collections.devloop.telepresence.plugins.module_utils.status import normalize_status
from ansible_collections.devloop.telepresence.plugins.module_utils.tempfiles import private_file

CLI_TIMEOUT_MAX = 60
# Extra time a run waits for a concurrent run on the same folder, on top of that run's download budget.
LOCK_GRACE_SECONDS = 60

ARGUMENT_SPEC = dict(
    version=dict(type="str", default="v2.24.0", fallback=(env_fallback, ["TELEPRESENCE_VERSION"])),
    dest=dict(type="path", default="~/.local/bin/telepresence"),
    state=dict(type="str", default="present", choices=["present", "absent"]),
    prefer_system=dict(type="bool", default=True),
    base_url=dict(type="str", default=GITHUB_RELEASES),
    checksum=dict(type="str"),
    checksum_url=dict(type="str"),
    checksum_policy=dict(type="str", default="warn", choices=["warn", "require"]),
    allow_insecure_http=dict(type="bool", default=False),
    verify_in_check_mode=dict(type="bool", default=False),
    force=dict(type="bool", default=False),
    validate_certs=dict(type="bool", default=True),
    timeout=dict(type="int", default=300),
    retries=dict(type="int", default=3),
    # The action group's common options (module_defaults for group/devloop.telepresence.telepresence): ignored here.
    kubeconfig=dict(type="path"),
    context=dict(type="str"),
    manager_namespace=dict(type="str"),
    binary_path=dict(type="path"),
)

DIGEST_ORIGINS = {
    "checksum": "the checksum option",
    "checksum_url": "checksum_url",
    "published": "the published digest (built-in table)",
}


class Request:
    """The validated options, resolved once: version, absolute dest, platform, artifact URL, explicit digest."""

    def __init__(self, module):
        params = module.params
        self.state = params["state"]
        self.version = self._version(module)
        self.dest = self._dest(module)
        self.folder = os.path.dirname(self.dest)
        check_positive(module, "timeout")
        check_non_negative(module, "retries")
        self.timeout = params["timeout"]
        self.retries = params["retries"]
        for name in ("base_url", "checksum_url"):
            problem = params[name] is not None and url_problem(params[name], params["allow_insecure_http"])
            if problem:
                module.fail_json(msg="%s %r %s" % (name, params[name], problem))
        self.checksum = None
        if params["checksum"] is not None:
            self.checksum = parse_checksum(params["checksum"])
            if not self.checksum:
                module.fail_json(msg="checksum %r is not a SHA-256 digest: give sha256:<64 hex digits> or the 64 hex "
                                     "digits alone" % params["checksum"])
        try:
            self.platform = detect_platform(platform.system(), platform.machine())
        except BinaryError as exc:
            module.fail_json(msg=str(exc))
        self.artifact = artifact_name(self.platform)
        self.url = artifact_url(params["base_url"], self.version, self.platform)
        self.checksum_url = params["checksum_url"]
        self.policy = params["checksum_policy"]
        self.prefer_system = params["prefer_system"]
        self.force = params["force"]

    @staticmethod
    def _version(module):
        raw = module.params["version"]
        version = normalize_version(raw)
        if not version:
            module.fail_json(msg="version %r (from the task or TELEPRESENCE_VERSION) is not a release version: use "
                                 "X.Y.Z or vX.Y.Z, for example v2.24.0; partial versions and 'latest' are refused so "
                                 "the pin stays reproducible" % raw)
        return version

    @staticmethod
    def _dest(module):
        dest = module.params["dest"]
        if not dest or not os.path.isabs(dest):
            module.fail_json(msg="dest %r must be an absolute path (after ~ expansion), for example "
                                 "~/.local/bin/telepresence" % dest)
        if dest.endswith(os.sep) or os.path.isdir(dest):
            module.fail_json(msg="dest %s is a folder; give the path of the executable itself, for example %s"
                                 % (dest, os.path.join(dest.rstrip(os.sep), "telepresence")))
        folder = nearest_existing_folder(os.path.dirname(dest))
        if not os.path.isdir(folder):
            module.fail_json(msg="dest %s cannot be created: %s exists and is not a folder" % (dest, folder))
        return os.path.normpath(dest)


class BinaryManager:
    """Reads the current state, decides, and acts for one tp_binary task."""

    def __init__(self, module, request):
        self.module = module
        self.req = request
        self.commands = []
        self.acting_command = None
        self.daemons_stopped = False
        self.downloader = Downloader(open_url, request.timeout, request.retries,
                                     validate_certs=module.params["validate_certs"],
                                     allow_insecure_http=module.params["allow_insecure_http"])
        self.lock = DirectoryLock(request.folder, request.timeout * (request.retries + 1) + LOCK_GRACE_SECONDS)
        self._digest = None

    # --- reading ---------------------------------------------------------------------------------

    def cli(self, binary):
        runner = TelepresenceCli(self.module, binary, timeout=min(self.req.timeout, CLI_TIMEOUT_MAX))
        runner.commands = self.commands  # one ordered record of every call, whichever binary ran it
        return runner

    def version_of(self, binary):
        """The version ``binary`` reports, or None when it cannot run or prints no version."""
        try:
            return self.cli(binary).client_version()
        except TelepresenceError:
            return None

    def inspect(self, path):
        """``{exists, version, sha256}`` of a binary; runs ``version`` once when it is an executable file."""
        if not os.path.lexists(path):
            return {"exists": False, "version": None, "sha256": None}
        if not os.path.isfile(path):
            return {"exists": True, "version": None, "sha256": None}
        runnable = os.access(path, os.X_OK)
        return {"exists": True, "sha256": sha256_of_file(path), "version": self.version_of(path) if runnable else None}

    def find_system_binary(self):
        """The first ``telepresence`` on PATH that is not ``dest`` (what a shell would run besides ours)."""
        own = os.path.realpath(self.req.dest)
        for folder in os.environ.get("PATH", "").split(os.pathsep):
            candidate = os.path.join(folder or ".", "telepresence")
            if os.path.isfile(candidate) and os.access(candidate, os.X_OK) and os.path.realpath(candidate) != own:
                return os.path.abspath(candidate)
        return None

    def known_digest(self):
        """``(digest, origin)`` by precedence checksum > checksum_url > built-in table; ``(None, None)`` if unknown.

        In check mode checksum_url is not fetched unless verify_in_check_mode: the origin is then ``checksum_url``
        with an unknown digest.
        """
        if self._digest is not None:
            return self._digest
        req = self.req
        published = published_digest(req.version, req.platform)
        digest, origin = None, None
        if req.checksum:
            digest, origin = req.checksum, "checksum"
        elif req.checksum_url and self.module.check_mode and not self.module.params["verify_in_check_mode"]:
            return None, "checksum_url"
        elif req.checksum_url:
            digest = digest_from_checksum_file(
                self.downloader.fetch_text(req.checksum_url, not_found="checksum_url %s does not exist (HTTP 404)"
                                           % req.checksum_url), req.artifact)
            origin = "checksum_url" if digest else None
            if not digest:
                self.module.warn("checksum_url %s lists no digest for %s; using the built-in table instead"
                                 % (req.checksum_url, req.artifact))
        if digest and published and digest != published:
            self.module.warn("the digest from %s (%s) differs from the published digest of v%s %s (%s); installing "
                             "the one you gave" % (DIGEST_ORIGINS[origin], digest, req.version, req.artifact, published))
        if not digest and published:
            digest, origin = published, "published"
        self._digest = (digest, origin)
        return self._digest

    def existing_is_valid(self, current):
        """Whether ``dest`` already holds the pin and, when a digest is known, matches it."""
        if current["version"] != self.req.version:
            return False
        digest, origin = self.known_digest()
        if digest and current["sha256"] != digest:
            self.module.warn("%s reports v%s but its SHA-256 %s differs from %s (%s); replacing it" % (
                self.req.dest, self.req.version, current["sha256"], DIGEST_ORIGINS[origin], digest))
            return False
        return True

    def local_digest_matches(self, sha256):
        """Whether a file matches a digest known without the network (checksum option, built-in table)."""
        known = self.req.checksum or published_digest(self.req.version, self.req.platform)
        return bool(known) and sha256 == known

    # --- deciding and acting -----------------------------------------------------------------------

    def present(self):
        req = self.req
        try:
            if not self.module.check_mode and os.path.isdir(req.folder):
                self.lock.acquire()
            current = self.inspect(req.dest)
            if not req.force and self.existing_is_valid(current):
                return self.result(False, current, current, self.used(req.dest, current), "existing")
            if req.prefer_system and not req.force:
                found = self.system_binary()
                if found:
                    return self.result(False, current, current, found, "system",
                                       verified=self.local_digest_matches(found["sha256"]))
            digest, origin = self.known_digest()
            if not digest and origin is None and req.policy == "require":
                raise BinaryError("no known SHA-256 digest for v%s %s and checksum_policy is require: give checksum "
                                  "or checksum_url, or set checksum_policy: warn" % (req.version, req.artifact))
            self.check_writable()
            if self.module.check_mode:
                planned = {"exists": True, "version": req.version, "sha256": None}
                return self.result(True, current, planned, self.used(req.dest, planned), "downloaded", url=req.url)
            if not self.lock.held:
                self.create_folder()
                self.lock.acquire()
                # Another run may have installed it while the folder did not exist yet.
                current = self.inspect(req.dest)
                if not req.force and self.existing_is_valid(current):
                    return self.result(False, current, current, self.used(req.dest, current), "existing")
            installed = self.install(current, digest, origin)
            return self.result(True, current, installed, self.used(req.dest, installed), "downloaded", url=req.url,
                               verified=digest is not None)
        finally:
            self.lock.release()

    @staticmethod
    def used(path, state):
        return {"path": path, "version": state["version"], "sha256": state["sha256"]}

    def system_binary(self):
        """The system binary as a ``used`` dict when it reports the pin, else None."""
        system = self.find_system_binary()
        if not system or self.version_of(system) != self.req.version:
            return None
        return {"path": system, "version": self.req.version, "sha256": sha256_of_file(system)}

    def check_writable(self):
        folder = nearest_existing_folder(self.req.folder)
        if not os.access(folder, os.W_OK | os.X_OK):
            raise BinaryError("dest %s cannot be written: the folder %s is not writable by this user (uid %d); choose "
                              "another dest or run the task with become" % (self.req.dest, folder, os.geteuid()))

    def create_folder(self):
        try:
            os.makedirs(self.req.folder, mode=0o755, exist_ok=True)
        except OSError as exc:
            raise BinaryError("dest %s cannot be written: creating %s failed: %s" % (
                self.req.dest, self.req.folder, exc.strerror or exc))

    def install(self, current, digest, origin):
        """Download, verify, test-run and atomically rename the artifact over dest; return the new state."""
        req = self.req
        remove_stale_downloads(req.folder)
        try:
            fd, temp = private_file(TEMP_PREFIX, TEMP_SUFFIX, req.folder)
        except OSError as exc:
            raise BinaryError("dest %s cannot be written: creating a temporary file in %s failed: %s" % (
                req.dest, req.folder, exc.strerror or exc))
        try:
            with os.fdopen(fd, "wb") as handle:
                not_found = ("v%s has no artifact %s at %s (HTTP 404): check that the version option names a "
                             "released Telepresence client (X.Y.Z, see the releases page) and that base_url serves "
                             "<base_url>/v<X.Y.Z>/telepresence-<os>-<arch>" % (req.version, req.artifact, req.url))
                with interrupts_raise():
                    sha256, _size = self.downloader.fetch_to_file(req.url, handle, not_found=not_found)
                os.fsync(handle.fileno())
            self.verify_digest(sha256, digest, origin)
            os.chmod(temp, 0o755)
            self.check_reported_version(temp)
            replaced = req.dest if current["version"] else None
            self.stop_daemons(replaced or temp, replaced, current["version"], new_version=req.version)
            os.replace(temp, req.dest)
            temp = None
            self.lock.sync()
        finally:
            if temp is not None:
                try:
                    os.remove(temp)
                except OSError:
                    pass
        return {"exists": True, "version": req.version, "sha256": sha256}

    def verify_digest(self, sha256, digest, origin):
        req = self.req
        if digest is None:
            self.module.warn("no known SHA-256 digest for v%s %s: installed it unverified; its digest is %s, pin it "
                             "with checksum: sha256:%s (or set checksum_policy: require to refuse unverified "
                             "downloads)" % (req.version, req.artifact, sha256, sha256))
            return
        if sha256 != digest:
            raise BinaryError("checksum mismatch for %s: the download has SHA-256 %s but %s says %s; nothing was "
                              "installed" % (req.url, sha256, DIGEST_ORIGINS[origin], digest))

    def check_reported_version(self, temp):
        req = self.req
        try:
            reported = self.cli(temp).client_version()
        except TelepresenceError as exc:
            raise BinaryError("the file downloaded from %s does not run as a Telepresence client (%s); nothing was "
                              "installed" % (req.url, exc.msg))
        if reported != req.version:
            raise BinaryError("the file downloaded from %s reports version v%s, not the pinned v%s; nothing was "
                              "installed" % (req.url, reported, req.version))

    def stop_daemons(self, binary, replaced, replaced_version, new_version=None):
        """``quit -s`` with ``binary`` for daemons started from ``replaced``, the executable this task replaces.

        Daemons are ours when the status names ``replaced`` as their executable (real paths compared), or names
        none and runs ``replaced_version``. Those are stopped when removing, or when their version differs from
        ``new_version``. Daemons of another executable are never stopped: they belong to another client (another
        folder, another user's install); when their version differs from ``new_version`` the next ``connect``
        with dest would be refused, so the task warns instead.
        """
        status = self.daemon_status(binary)
        if status is None or not (status["user_daemon_running"] or status["root_daemon_running"]):
            return
        outdated = new_version is None or not daemons_match(status, new_version)
        own = os.path.realpath(replaced) if replaced else None
        ours = own is not None and (status["executable"] == own or (
            status["executable"] is None and daemons_match(status, replaced_version)))
        if ours and outdated:
            result = self.cli(binary).run(["quit", "-s"])
            self.acting_command = result.argv
            self.daemons_stopped = True
        elif not ours and outdated and new_version is not None:
            self.module.warn("Telepresence daemons of another client are running (executable %s, version %s); "
                             "they were left alone because this task did not replace that executable. Before "
                             "connecting with %s, stop them with '%s quit -s'" % (
                                 status["executable"] or "unknown", status["daemon_version"] or "unknown",
                                 self.req.dest, status["executable"] or "telepresence"))

    def daemon_status(self, binary):
        """The normalised status read with ``binary`` (executable as a real path), or None (warned) when unreadable."""
        try:
            raw = self.cli(binary).run_json(["status"])
        except TelepresenceError as exc:
            self.module.warn("could not read the daemon status with %s (%s); if Telepresence daemons of another "
                             "version are running, stop them with 'telepresence quit -s'" % (binary, exc.msg))
            return None
        status = normalize_status(raw)
        status["executable"] = os.path.realpath(status["executable"]) if status["executable"] else None
        return status

    def absent(self):
        req = self.req
        try:
            if not self.module.check_mode and os.path.isdir(req.folder):
                self.lock.acquire()
            if not os.path.lexists(req.dest):
                return self.result(False, None, None, None, None)
            current = self.inspect(req.dest)
            if self.module.check_mode:
                return self.result(True, current, None, None, None)
            if current["version"]:
                self.stop_daemons(req.dest, req.dest, current["version"])
            try:
                os.remove(req.dest)
            except OSError as exc:
                raise BinaryError("dest %s cannot be removed: %s" % (req.dest, exc.strerror or exc))
            self.lock.sync()
            return self.result(True, current, None, None, None)
        finally:
            self.lock.release()

    # --- reporting ---------------------------------------------------------------------------------

    def result(self, changed, dest_before, dest_after, used, source, url=None, verified=None):
        """The module result.

        ``dest_before``/``dest_after`` describe dest (inspect() dicts, None when no file) for the diff; ``used`` is
        the binary the task leaves for use (``{path, version, sha256}``), None after state=absent.
        """
        used = used or {"path": self.req.dest, "version": None, "sha256": None}
        if verified is None:
            digest = self._digest[0] if self._digest else None
            verified = bool(digest) and used["sha256"] == digest
        result = dict(changed=changed, path=used["path"], version=used["version"], source=source,
                      sha256=used["sha256"], checksum_verified=bool(verified and used["sha256"]), url=url,
                      platform=self.req.platform, daemons_stopped=self.daemons_stopped,
                      command=self.acting_command, commands=self.commands)
        if self.module._diff:
            result["diff"] = {"before": self.diff_view(dest_before), "after": self.diff_view(dest_after)}
        return result

    def diff_view(self, state):
        if state and state.get("exists"):
            return {"path": self.req.dest, "version": state.get("version")}
        return {"path": None, "version": None}


def daemons_match(status, version):
    """Whether every running daemon is of ``version`` (an unknown daemon version counts as another one)."""
    versions = [status["daemon_version"] if status["user_daemon_running"] else version,
                status["root_daemon_version"] if status["root_daemon_running"] else version]
    return all(found == version for found in versions)


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    request = Request(module)
    manager = BinaryManager(module, request)
    try:
        result = manager.present() if request.state == "present" else manager.absent()
    except TelepresenceError as exc:
        fail_with(module, exc, commands=manager.commands, platform=request.platform,
                  daemons_stopped=manager.daemons_stopped)
    except BinaryError as exc:
        module.fail_json(msg=str(exc), commands=manager.commands, command=manager.acting_command,
                         platform=request.platform, daemons_stopped=manager.daemons_stopped)
    except OSError as exc:
        module.fail_json(msg="dest %s: %s" % (request.dest, exc), commands=manager.commands,
                         platform=request.platform, daemons_stopped=manager.daemons_stopped)
    module.exit_json(**result)
