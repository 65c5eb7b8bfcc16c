"""How long a partition is without a leader after its leader's node is killed: the time
from a kill -9 of a leader to the first acknowledged write on each of its partitions,
over several kills. Writers, one per key on enough keys to cover every partition, write
through the surviving nodes; a key's gap is from the kill to its first acknowledged
write after it, and the kill's failover time is the largest gap.
Usage: python3 cluster_failover.py [KILLS] (tools/failover runs it)."""
import os
import statistics
import sys
import threading
import time

import botocore.config

sys.path.insert(0, os.path.dirname(__file__))
from cluster_process import Cluster  # noqa: E402

KEYS = 48


def measure(kills):
    cluster = Cluster(3).wait_ready()
    try:
        config = botocore.config.Config(retries={"max_attempts": 1}, read_timeout=10, connect_timeout=2)
        cluster.client(1).create_table(
            TableName="failover", BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}])
        time.sleep(1.5)
        gaps = []
        for round_number in range(kills):
            leaders = cluster.wait_for_leaders(cluster.ids)
            victim = leaders[round_number % len(leaders)]
            alive = [n for n in cluster.ids if n != victim]
            clients = {n: [cluster.client(n, config=config) for _ in range(KEYS)] for n in alive}
            first_ack = {}
            stop = threading.Event()
            killed_at = [None]

            def writer(key):
                count = 0
                while not stop.is_set():
                    node = alive[(key + count) % len(alive)]
                    count += 1
                    try:
                        clients[node][key].put_item(TableName="failover", Item={"k": {"S": f"key-{key}"}})
                    except Exception:
                        time.sleep(0.01)
                        continue
                    if killed_at[0] is not None and key not in first_ack:
                        first_ack[key] = time.monotonic()

            threads = [threading.Thread(target=writer, args=(key,)) for key in range(KEYS)]
            for thread in threads:
                thread.start()
            time.sleep(1)
            cluster.kill(victim)
            killed_at[0] = time.monotonic()
            deadline = killed_at[0] + 30
            while len(first_ack) < KEYS and time.monotonic() < deadline:
                time.sleep(0.05)
            stop.set()
            for thread in threads:
                thread.join()
            gap = max(first_ack.get(key, deadline) for key in range(KEYS)) - killed_at[0]
            gaps.append(gap)
            print(f"kill {round_number + 1}: node {victim}, first write on each of its partitions within {gap:.2f}s",
                  flush=True)
            cluster.start(victim).wait_ready(60)
        return gaps
    finally:
        cluster.stop_all()


if __name__ == "__main__":
    gaps = measure(int(sys.argv[1]) if len(sys.argv) > 1 else 20)
    print(f"{len(gaps)} kills: median {statistics.median(gaps):.2f}s, worst {max(gaps):.2f}s")
