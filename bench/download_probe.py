# -*- coding: utf-8 -*-
# Copyright: devloop.telepresence contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One download through tp_binary's own code path, for bench/run (measurement 4).

    python download_probe.py COLLECTIONS_ROOT URL FOLDER

Streams URL into a temporary file in FOLDER with ``Downloader.fetch_to_file`` (plugins/module_utils/binary.py, with
``ansible.module_utils.urls.open_url``, as tp_binary does: SHA-256 computed while writing), fsyncs it like the module,
removes it, and prints one JSON object: bytes, digest, seconds for the fetch and for the fsync, and the peak RSS.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import tempfile
import time


def main(collections_root, url, folder):
    sys.path.insert(0, collections_root)
    started = time.perf_counter()
    # pylint: disable-next=import-outside-toplevel
    from ansible.module_utils.urls import open_url
    # pylint: disable-next=import-outside-toplevel
    from ansible_collections.devloop.telepresence.plugins.module_utils.binary import TEMP_PREFIX, TEMP_SUFFIX, Downloader
    imported = time.perf_counter()
    downloader = Downloader(open_url, 600, 0, allow_insecure_http=True)
    fd, temp = tempfile.mkstemp(dir=folder, prefix=TEMP_PREFIX, suffix=TEMP_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as handle:
            fetch_started = time.perf_counter()
            sha256, size = downloader.fetch_to_file(url, handle)
            fetched = time.perf_counter()
            os.fsync(handle.fileno())
            synced = time.perf_counter()
    finally:
        os.remove(temp)
    print(json.dumps({
        "bytes": size,
        "sha256": sha256,
        "import_seconds": imported - started,
        "fetch_seconds": fetched - fetch_started,
        "fsync_seconds": synced - fetched,
        "maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    }))


if __name__ == "__main__":
    main(*sys.argv[1:4])
