"""kill -9 under concurrent API load: every PutItem that was acknowledged is there after a
restart, with its value, on a 2-core node where writes cross cores and share group commits."""
import random
import threading
import time

import botocore.exceptions

from granary_process import Granary

CYCLES = 4
WRITERS = 16


def writer(node, number, stop, acknowledged, lock):
    client = node.client()
    sequence = 0
    while not stop.is_set():
        key = f"w{number}-{sequence}"
        value = f"value-{key}-" + "x" * random.randint(0, 2000)
        try:
            client.put_item(TableName="crash", Item={"pk": {"S": key}, "v": {"S": value}})
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError):
            return  # the node was killed mid-request: this write was never acknowledged
        with lock:
            acknowledged[key] = value
        sequence += 1


def test_acknowledged_puts_survive_kill_9_under_load():
    node = Granary().wait_ready()
    node.client().create_table(TableName="crash", BillingMode="PAY_PER_REQUEST",
                               KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                               AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}])
    acknowledged, lock = {}, threading.Lock()
    try:
        for cycle in range(CYCLES):
            stop = threading.Event()
            threads = [threading.Thread(target=writer, args=(node, cycle * 100 + n, stop, acknowledged, lock)) for n in range(WRITERS)]
            for thread in threads:
                thread.start()
            time.sleep(random.uniform(0.5, 2.0))
            node.kill()  # SIGKILL while writes are in flight
            stop.set()
            for thread in threads:
                thread.join(timeout=30)
            node = Granary(data_dir=node.data_dir).wait_ready()
            client = node.client()
            with lock:
                expected = dict(acknowledged)
            assert expected, "no write was acknowledged before the kill"
            for key, value in expected.items():
                item = client.get_item(TableName="crash", Key={"pk": {"S": key}}, ConsistentRead=True).get("Item")
                assert item is not None, f"cycle {cycle}: acknowledged {key} is missing after kill -9"
                assert item["v"]["S"] == value, f"cycle {cycle}: {key} came back garbled"
    finally:
        node.kill()
