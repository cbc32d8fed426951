# -*- coding: utf-8 -*-
# Copyright: devloop.telepresence contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a module pays for reading the cluster through module_utils/kube.py, for bench/run.

    python kube_probe.py COLLECTIONS_ROOT KUBECONFIG CONTEXT plain|freeze

Reads what tp_intercept's pre-flight reads on a no-op run (the Namespace, the Deployment and the Service of
app/fresh-app) with the collection's ``Kube`` helper and prints one JSON object: seconds to import the helper,
seconds for the first read (the client's kubeconfig loader and ApiClient imported, the kubeconfig loaded, one GET),
for the reads that follow, and ``end``, the wall clock just before the interpreter starts shutting down; bench/run
stamps the process exit to measure the shutdown. With ``freeze``, ``gc.freeze()`` is also registered at exit from
here: equal shutdown times show that kube.py's own registration does the job.
"""

from __future__ import annotations

import atexit
import gc
import json
import sys
import time


def main(collections_root, kubeconfig, context, mode):
    if mode == "freeze":
        atexit.register(gc.freeze)
    sys.path.insert(0, collections_root)
    started = time.perf_counter()
    # pylint: disable-next=import-outside-toplevel
    from ansible_collections.devloop.telepresence.plugins.module_utils.kube import Kube
    imported = time.perf_counter()
    kube = Kube(kubeconfig, context, 30)
    kube.get("core", "namespace", "app")
    first = time.perf_counter()
    kube.get("apps", "deployment", "fresh-app", "app")
    kube.get("core", "service", "fresh-app", "app")
    rest = time.perf_counter()
    print(json.dumps({"import_seconds": imported - started, "first_call_seconds": first - imported,
                      "next_calls_seconds": rest - first, "end": time.time()}), flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:5])
