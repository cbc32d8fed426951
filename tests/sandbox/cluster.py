#!/usr/bin/env python
"""The sandbox's Kubernetes API server: `cluster.py --dir DIR`.

Serves a simulated cluster on 127.0.0.1 (a port chosen by the system, written to DIR/ports/api once the cluster is
seeded and ready), runs the workload controller in the same event loop, and stops on SIGTERM or SIGINT.
Built on kmock 0.8 (see clusterkit/emulator.py and tests/sandbox/README.md).
"""
import argparse
import asyncio
import logging
import secrets
import pathlib
import signal
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import kmock  # noqa: E402  (the path above makes clusterkit importable when run as a script)

from clusterkit import seed  # noqa: E402
from clusterkit.controller import Knobs, WorkloadController  # noqa: E402
from clusterkit.emulator import SandboxCluster  # noqa: E402
from clusterkit.files import SandboxFiles, write_atomically  # noqa: E402

log = logging.getLogger('sandbox.cluster')


def sandbox_secret(files: SandboxFiles) -> str:
    """One secret per sandbox; a restarted cluster in the same directory keeps the value `up` already exported."""
    if files.secret.exists() and files.secret.read_text().strip():
        return files.secret.read_text().strip()
    value = f'sbx-secret-{secrets.token_hex(12)}'
    write_atomically(files.secret, value + '\n')
    return value


async def seed_cluster(cluster: SandboxCluster, controller: WorkloadController, secret: str) -> None:
    """CONTRACT.md's seeded cluster, with the seeded workloads already rolled out (their pods Running)."""
    namespaces = cluster.kind_of('namespaces')
    for name in seed.NAMESPACES:
        await cluster.create_object(namespaces, None, seed.namespace_manifest(name))
    for name in seed.SEEDED_WORKLOADS:
        resource = 'statefulsets' if seed.workload_kind(name) == 'StatefulSet' else 'deployments'
        await cluster.create_object(cluster.kind_of(resource, 'apps'), seed.APP_NAMESPACE,
                                    seed.workload_manifest(name, secret))
    for name in seed.seeded_services():
        await cluster.create_object(cluster.kind_of('services'), seed.APP_NAMESPACE, seed.service_manifest(name))
    await controller.reconcile(Knobs(ready_delay=0.0))  # seeded pods start Running


async def serve(files: SandboxFiles) -> None:
    files.make_dirs()
    files.api_port.unlink(missing_ok=True)
    secret = sandbox_secret(files)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    cluster = SandboxCluster(files=files)
    controller = WorkloadController(cluster, files)
    async with cluster, kmock.Server(cluster, host='127.0.0.1') as server:
        await seed_cluster(cluster, controller, secret)
        controller_task = asyncio.create_task(controller.run(), name='controller')
        write_atomically(files.api_port, f'{server.port}\n')
        log.info('serving the sandbox cluster on http://127.0.0.1:%d', server.port)
        await stop.wait()
        controller_task.cancel()
        await asyncio.gather(controller_task, return_exceptions=True)
    files.api_port.unlink(missing_ok=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--dir', required=True, help='the sandbox directory ($TP_SANDBOX_DIR)')
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format='%(asctime)s %(name)s %(levelname)s %(message)s')
    asyncio.run(serve(SandboxFiles(args.dir)))


if __name__ == '__main__':
    main()
