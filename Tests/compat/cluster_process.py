"""Starts real `granary serve` processes as the members of one cluster, on loopback or each
in a network namespace of its own (netns.Network), where the test can cut links."""
import os
import shutil
import time
import uuid

import requests

from granary_process import Granary, free_port, fresh_data_dir


class Cluster:
    """N nodes of one cluster, each a `Granary` with its own data directory, pinned
    round-robin to the CPUs this process may use. With `network`, node n runs in its
    namespace at its address (with a cluster secret: its peer port is not on loopback).
    `node_args` adds arguments for some nodes only (node id -> list)."""

    def __init__(self, count=3, log_only=(), secret_file=None, extra_args=(), network=None, node_args=None):
        self.ids = list(range(1, count + 1))
        self.network = network
        self.hosts = {n: network.host(n) if network else "127.0.0.1" for n in self.ids}
        self.peer_ports = {n: 7000 if network else free_port() for n in self.ids}
        self.api_ports = {n: 8000 if network else free_port() for n in self.ids}
        self.data_dirs = {n: fresh_data_dir() for n in self.ids}
        self.cluster_id = "test-" + uuid.uuid4().hex[:8]
        self.peers = ",".join(
            f"{n}={self.hosts[n]}:{self.peer_ports[n]}" + ("/log-only" if n in log_only else "") for n in self.ids)
        if network and not secret_file:
            # Beside the data directories, not through one: a test may delete node 1's.
            secret_file = os.path.join(os.path.dirname(os.path.normpath(self.data_dirs[1])), f"{self.cluster_id}.secret")
            with open(secret_file, "w") as output:
                output.write(uuid.uuid4().hex + uuid.uuid4().hex)
        self.secret_file = secret_file
        self.extra_args = list(extra_args)
        self.node_args = node_args or {}
        cpus = sorted(os.sched_getaffinity(0))
        self.cpus = {n: cpus[(n - 1) % len(cpus)] for n in self.ids}
        self.nodes = {}
        for n in self.ids:
            self.start(n)

    def args(self, n):
        args = ["--node-id", str(n), "--peer-listen", f"{self.hosts[n]}:{self.peer_ports[n]}", "--peers", self.peers,
                "--cluster-id", self.cluster_id, "--cores", str(self.cpus[n]), "--memory", "64M", *self.extra_args,
                *self.node_args.get(n, ())]
        if self.secret_file:
            args += ["--cluster-secret-file", self.secret_file]
        return args

    def start(self, n):
        self.nodes[n] = Granary(data_dir=self.data_dirs[n], port=self.api_ports[n], extra_args=self.args(n),
                                host=self.hosts[n], prefix=self.network.prefix(n) if self.network else ())
        return self.nodes[n]

    def wait_ready(self, timeout=60.0):
        for node in self.nodes.values():
            node.wait_ready(timeout)
        return self

    def kill(self, n):
        self.nodes[n].kill()

    def wipe(self, n):
        """Deletes node n's data directory (it must be stopped): a lost disk."""
        shutil.rmtree(self.data_dirs[n])

    def stop_all(self):
        for node in self.nodes.values():
            node.kill()

    def client(self, n, **overrides):
        return self.nodes[n].client(**overrides)

    def status(self, n):
        return requests.get(self.nodes[n].endpoint + "/cluster", timeout=5).json()

    def leaders(self, n):
        """Partition index -> leader, as node n sees it."""
        return {p["index"]: p.get("leader") for p in self.status(n)["partitions"]}

    def wait_for_leaders(self, alive, timeout=30.0):
        """Waits until every live node names the same live leader for every partition."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                views = [self.leaders(n) for n in alive]
                if all(view == views[0] for view in views) and all(v in alive for v in views[0].values()):
                    return views[0]
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise TimeoutError("the live nodes did not agree on live leaders")
