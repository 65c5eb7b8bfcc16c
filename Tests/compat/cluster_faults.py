"""Jepsen's method on real processes: clients record a history of reads, writes and
conditional writes through every node while a nemesis kills (-9) and restarts nodes,
restarts one with its data directory deleted (a lost disk), pauses them (SIGSTOP/SIGCONT,
longer than a lease) and, with the nodes in network namespaces, cuts links (a node
isolated, a one-way cut, a "bridge" where two nodes lose each other but both still reach
the third). Throughout, the nodes' replica clocks run at rates up to 10% off the machine's
(the lease allows 12.5%), and with `lossy` each node drops 3% of its replication messages
and holds batches back up to 30 ms, so that they overtake each other. Then the faults
heal, the history is checked for linearizability, and every acknowledged write is read
back through every node. Used by test_cluster_faults.py (short) and tools/cluster-faults
(long)."""
import glob
import json
import os
import random
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from cluster_process import Cluster  # noqa: E402
from granary_process import LOAD_BINARY, fresh_data_dir  # noqa: E402
from netns import Network  # noqa: E402

PROCESS_FAULTS = ("kill", "wipe", "pause")
NETWORK_FAULTS = ("isolate", "one-way", "bridge")


def nemesis(cluster, until, rng, log, kinds, cut_seconds):
    """Faults one node at a time, so a quorum always remains (a bridge leaves a node that
    reaches both others): kill -9 and restart, a pause longer than the lease, or a cut
    lasting a time drawn from `cut_seconds`."""
    while time.monotonic() < until - 4:
        victim = rng.choice(cluster.ids)
        fault = rng.choice(kinds)
        if fault in NETWORK_FAULTS:
            others = [n for n in cluster.ids if n != victim]
            if fault == "isolate":
                cluster.network.isolate(victim)
            elif fault == "one-way":
                for other in others:
                    if rng.random() < 0.5:
                        cluster.network.cut(victim, other)
                    else:
                        cluster.network.cut(other, victim)
            else:
                cluster.network.cut(victim, others[0])
                cluster.network.cut(others[0], victim)
            log.append((fault, victim, time.monotonic()))
            time.sleep(rng.uniform(*cut_seconds))
            cluster.network.heal()
            log.append(("heal", victim, time.monotonic()))
        elif fault in ("kill", "wipe"):
            cluster.kill(victim)
            if fault == "wipe":
                cluster.wipe(victim)
            log.append((fault, victim, time.monotonic()))
            time.sleep(rng.uniform(0.5, 3))
            cluster.start(victim).wait_ready(60)
            log.append(("restart", victim, time.monotonic()))
            if fault == "wipe":
                # One fault at a time: a node without its disk counts as failed until it
                # has recovered (it votes again once it knows what it may have forgotten).
                deadline = time.monotonic() + 60
                while glob.glob(os.path.join(cluster.data_dirs[victim], "partition-*", "recovering")):
                    assert time.monotonic() < deadline, f"node {victim} still recovering 60 s after its restart"
                    time.sleep(0.1)
                log.append(("recovered", victim, time.monotonic()))
        else:
            process = cluster.nodes[victim].process
            process.send_signal(signal.SIGSTOP)
            log.append(("pause", victim, time.monotonic()))
            time.sleep(rng.uniform(1, 3))
            process.send_signal(signal.SIGCONT)
            log.append(("resume", victim, time.monotonic()))
        time.sleep(rng.uniform(0.5, 2))


def run(seconds, seed=1, extra_args=(), keys=50, concurrency=6, kinds=PROCESS_FAULTS, cut_seconds=(1, 4),
        lossy=False, read_back_after=True):
    """Runs the clients and the nemesis (faults of `kinds`) for `seconds`; returns (check
    exit code, its output, the faults, the run's summary). With `read_back_after`, every
    node must then read each key's last acknowledged write (a build that serves strong
    reads at followers fails that too, so its test asks the checker alone)."""
    rng = random.Random(seed)
    network = Network(3) if set(kinds) & set(NETWORK_FAULTS) else None
    node_args = {}
    for n in (1, 2, 3):
        node_args[n] = ["--clock-rate", f"{rng.uniform(0.9, 1.1):.3f}"]
        if lossy:
            node_args[n] += ["--drop-messages", "0.03", "--delay-messages-ms", "30"]
    try:
        cluster = Cluster(3, extra_args=extra_args, network=network, node_args=node_args).wait_ready(60)
        return run_cluster(cluster, seconds, rng, keys, concurrency, kinds, cut_seconds, read_back_after)
    finally:
        if network:
            network.close()


def run_cluster(cluster, seconds, rng, keys, concurrency, kinds, cut_seconds, read_back_after):
    history = os.path.join(fresh_data_dir(), "history.jsonl")
    faults = []
    try:
        endpoints = []
        for n in cluster.ids:
            endpoints += ["--endpoint", cluster.nodes[n].endpoint]
        clients = subprocess.Popen(
            [LOAD_BINARY, "registers", *endpoints, "--history", history, "--duration", f"{seconds}s",
             "--keys", str(keys), "--concurrency", str(concurrency), "--seed", str(rng.randrange(1 << 30))],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(2)  # the table exists on every node
        nemesis(cluster, time.monotonic() + seconds - 2, rng, faults, kinds, cut_seconds)
        summary, errors = clients.communicate(timeout=seconds + 120)
        assert clients.returncode == 0, errors
        # Healed: every node is up (resume anything paused, restart anything killed).
        if cluster.network:
            cluster.network.heal()
        for n in cluster.ids:
            cluster.nodes[n].process.send_signal(signal.SIGCONT)
            if cluster.nodes[n].process.poll() is not None:
                cluster.start(n).wait_ready(60)
        print(f"clients done; checking {history}", file=sys.stderr, flush=True)
        check = subprocess.run([LOAD_BINARY, "check-history", history], capture_output=True, text=True, timeout=600)
        if read_back_after:
            read_back(cluster, history)
        return check.returncode, check.stdout, faults, summary
    finally:
        cluster.stop_all()


def read_back(cluster, history):
    """Each key's last acknowledged blind write or successful conditional write, if no
    later write to it has an unknown outcome or overlaps it, must be what every node reads."""
    import boto3  # noqa: F401
    last = {}
    uncertain = set()
    with open(history) as lines:
        entries = [json.loads(line) for line in lines]
    for entry in sorted(entries, key=lambda e: e["call"]):
        if entry["op"] == "read":
            continue
        if entry["outcome"] is None:
            uncertain.add(entry["key"])
        elif entry["outcome"] == "ok":
            last[entry["key"]] = entry
    # Writes whose intervals overlap the last one may have landed after it.
    for key, final in list(last.items()):
        if any(e["key"] == key and e["op"] != "read" and e is not final and e["outcome"] == "ok"
               and e["return"] is not None and e["return"] > final["call"] for e in entries):
            uncertain.add(key)
    deadline = time.monotonic() + 30
    for n in cluster.ids:
        client = cluster.client(n)
        for key, final in last.items():
            if key in uncertain:
                continue
            while True:
                try:
                    item = client.get_item(TableName="registers", Key={"k": {"N": str(key)}},
                                           ConsistentRead=True).get("Item")
                    break
                except Exception:
                    assert time.monotonic() < deadline, f"node {n} cannot read key {key} after the faults healed"
                    time.sleep(0.2)
            assert item is not None and int(item["v"]["N"]) == final["value"], (n, key, item, final)


if __name__ == "__main__":
    seconds = int(sys.argv[1]) if len(sys.argv) > 1 else 3600
    kinds = PROCESS_FAULTS + (NETWORK_FAULTS if os.geteuid() == 0 else ())
    # About a thousand operations a key: the checker's search grows with each key's
    # operations of unknown outcome.
    keys = max(50, seconds // 8)
    code, output, faults, summary = run(seconds, seed=int(time.time()), kinds=kinds, lossy=True, keys=keys)
    print(summary.strip())
    print(f"{len(faults)} fault events:", ", ".join(f"{kind} {node}" for kind, node, _ in faults))
    print(output.strip()[:4000])
    sys.exit(code)
