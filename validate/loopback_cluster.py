"""A Ray cluster of several nodes on this machine's loopback, to try `estimate campaign --ray`.

    python -m estimator.validate.loopback_cluster lab-a lab-b [--minutes 30]

starts a head node advertising the resource `device:lab-a` and one worker node per further
name (`device:lab-b`, ...), all bound to 127.0.0.1, prints the cluster address and each node's
raylet process id (to make a node die, kill its raylet and the raylet's children, its workers:
`pkill -9 -P PID; kill -9 PID`), and stops by itself after
--minutes (or on Ctrl-C, or `kill` of its own process id, which it prints too). On a real fleet, start the nodes with `ray start` instead
(docs/campaigns.md): this is Ray's own multi-node test cluster (ray.cluster_utils), because
`ray start --node-ip-address 127.0.0.1` makes Ray advertise the host's outward address instead.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m estimator.validate.loopback_cluster",
                                 description="A loopback-only Ray cluster with one node per device name.")
    ap.add_argument("devices", nargs="+", help="device names: node i advertises the resource device:NAME (1 unit)")
    ap.add_argument("--minutes", type=float, default=30.0, help="stop after this many minutes (default 30)")
    ap.add_argument("--cpus", type=int, default=1, help="CPUs each node advertises (default 1)")
    a = ap.parse_args(argv)
    if a.minutes <= 0 or a.cpus < 0 or len(set(a.devices)) != len(a.devices):
        ap.error("--minutes must be > 0, --cpus >= 0, and the device names distinct")
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"   # Ray's local-only mode: every address is 127.0.0.1
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        from ray._private import ray_constants
        from ray.cluster_utils import Cluster
    except ImportError:
        print("error: needs Ray, an optional extra: pip install 'estimate[fleet]'", file=sys.stderr)
        return 2
    head, *rest = a.devices
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": a.cpus, "resources": {f"device:{head}": 1},
                                                      "include_dashboard": False})
    nodes = [(head, c.head_node)] + [(d, c.add_node(num_cpus=a.cpus, resources={f"device:{d}": 1})) for d in rest]
    print(f"address: {c.address}")
    for d, n in nodes:
        pid = n.all_processes[ray_constants.PROCESS_TYPE_RAYLET][0].process.pid
        print(f"node device:{d}: raylet pid {pid}")
    print(f"estimate campaign PLAN --ray {c.address} --out DIR   (this cluster stops in {a.minutes:g} min; "
          f"to stop it now: kill {os.getpid()}, or Ctrl-C in its terminal)", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    why, address = f"after {a.minutes:g} min", c.address
    try:
        time.sleep(a.minutes * 60)
    except KeyboardInterrupt:
        why = "on request"
    finally:
        c.shutdown()
        print(f"cluster {address} stopped ({why})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
