"""A network the test makes for itself, so that it can cut links between nodes: one
network namespace per node, each with a veth on a bridge, and nftables rules inside a
node's namespace to drop what it sends to, or receives from, another node. The test
process reaches every node through the bridge; cuts never touch that path. Needs root
(the nodes run under `ip netns exec`)."""
import os
import subprocess


def sh(*args):
    result = subprocess.run(args, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {result.stderr.strip()}")


class Network:
    """Namespaces for nodes 1...count on 10.77.S.0/24 (S and the names from the process id
    and a count, so that no two networks meet, even while the kernel still tears down a
    closed one), the bridge at .254. `close()` removes all of it."""

    made = 0

    def __init__(self, count):
        if os.geteuid() != 0:
            raise RuntimeError("network namespaces need root")
        Network.made += 1
        tag = f"g{os.getpid() % 100000}x{Network.made % 100}"
        self.subnet = f"10.77.{(os.getpid() + Network.made) % 250}"
        self.bridge = f"{tag}br"
        self.namespaces = {n: f"{tag}n{n}" for n in range(1, count + 1)}
        self.veths = {n: f"{tag}v{n}" for n in self.namespaces}
        self.cuts = set()
        try:
            sh("ip", "link", "add", self.bridge, "type", "bridge")
            sh("ip", "addr", "add", f"{self.subnet}.254/24", "dev", self.bridge)
            sh("ip", "link", "set", self.bridge, "up")
            for n, namespace in self.namespaces.items():
                sh("ip", "netns", "add", namespace)
                sh("ip", "link", "add", self.veths[n], "type", "veth", "peer", "name", "eth0", "netns", namespace)
                sh("ip", "link", "set", self.veths[n], "master", self.bridge, "up")
                sh("ip", "-n", namespace, "addr", "add", f"{self.host(n)}/24", "dev", "eth0")
                sh("ip", "-n", namespace, "link", "set", "eth0", "up")
                sh("ip", "-n", namespace, "link", "set", "lo", "up")
                self.nft(n, "add table inet cuts")
                self.nft(n, "add chain inet cuts out { type filter hook output priority 0; }")
                self.nft(n, "add chain inet cuts in { type filter hook input priority 0; }")
        except BaseException:
            self.close()
            raise

    def host(self, n):
        return f"{self.subnet}.{n}"

    def prefix(self, n):
        """The command prefix that runs a process in node n's namespace."""
        return ["ip", "netns", "exec", self.namespaces[n]]

    def nft(self, n, command):
        sh(*self.prefix(n), "nft", command)

    def cut(self, source, destination):
        """Drops every packet from `source` to `destination` (one way: replies still flow
        the other way, so TCP connections stall rather than reset)."""
        if (source, destination) in self.cuts:
            return
        self.nft(source, f"add rule inet cuts out ip daddr {self.host(destination)} drop")
        self.nft(destination, f"add rule inet cuts in ip saddr {self.host(source)} drop")
        self.cuts.add((source, destination))

    def isolate(self, n):
        """Cuts n from every other node, both ways."""
        for other in self.namespaces:
            if other != n:
                self.cut(n, other)
                self.cut(other, n)

    def heal(self):
        for n in self.namespaces:
            self.nft(n, "flush chain inet cuts out")
            self.nft(n, "flush chain inet cuts in")
        self.cuts.clear()

    def close(self):
        # Deleting a veth deletes its pair: a namespace can outlive its deletion (sockets
        # closing keep it), and its interfaces with it.
        for veth in self.veths.values():
            subprocess.run(["ip", "link", "del", veth], capture_output=True)
        for namespace in self.namespaces.values():
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)
