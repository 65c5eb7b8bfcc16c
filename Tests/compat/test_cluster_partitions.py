"""Three nodes, each in a network namespace of its own, and links cut between them: an
isolated leader is replaced and acknowledges nothing, a one-way cut does not stop the
majority, and every write acknowledged meanwhile is on the cut-off node once it heals."""
import time

import botocore.config
import botocore.exceptions
import pytest

from cluster_process import Cluster
from netns import Network


@pytest.fixture
def cluster():
    network = Network(3)
    nodes = None
    try:
        nodes = Cluster(3, network=network).wait_ready(60)
        nodes.wait_for_leaders(nodes.ids)
        yield nodes
    finally:
        if nodes:
            nodes.stop_all()
        network.close()


def make_registers(client):
    client.create_table(
        TableName="registers", BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}])


def put_until_acknowledged(client, key, value, deadline):
    """Puts until the node acknowledges (a failover in progress fails some tries)."""
    while True:
        try:
            client.put_item(TableName="registers", Item={"k": {"S": key}, "v": {"N": str(value)}})
            return
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError):
            assert time.monotonic() < deadline, f"{key} not acknowledged in time"
            time.sleep(0.1)


def read_until(client, key, value, deadline, consistent):
    while True:
        try:
            item = client.get_item(TableName="registers", Key={"k": {"S": key}},
                                   ConsistentRead=consistent).get("Item")
            if item and int(item["v"]["N"]) == value:
                return
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError):
            pass
        assert time.monotonic() < deadline, f"{key} never read as {value} (consistent={consistent})"
        time.sleep(0.1)


def busiest_leader(cluster):
    leaders = cluster.leaders(1)
    return max(cluster.ids, key=lambda n: sum(1 for leader in leaders.values() if leader == n))


def test_an_isolated_leader_is_replaced_and_acknowledges_nothing(cluster):
    make_registers(cluster.client(1))
    for i in range(40):
        put_until_acknowledged(cluster.client(1), f"before-{i}", i, time.monotonic() + 10)
    victim = busiest_leader(cluster)
    majority = [n for n in cluster.ids if n != victim]
    cluster.network.isolate(victim)

    # The majority elects new leaders and acknowledges every write, on every partition.
    deadline = time.monotonic() + 30
    for i in range(40):
        put_until_acknowledged(cluster.client(majority[i % 2]), f"during-{i}", i, deadline)
    assert set(cluster.wait_for_leaders(majority).values()) <= set(majority)

    # The isolated node acknowledges no write and serves no strongly consistent read (its
    # leases have run out), but serves eventually consistent reads from its own replica.
    short = cluster.client(victim, config=botocore.config.Config(
        retries={"max_attempts": 1}, read_timeout=20, connect_timeout=5))
    with pytest.raises((botocore.exceptions.ClientError, botocore.exceptions.ReadTimeoutError)):
        short.put_item(TableName="registers", Item={"k": {"S": "refused"}, "v": {"N": "1"}})
    with pytest.raises((botocore.exceptions.ClientError, botocore.exceptions.ReadTimeoutError)):
        short.get_item(TableName="registers", Key={"k": {"S": "before-1"}}, ConsistentRead=True)
    item = short.get_item(TableName="registers", Key={"k": {"S": "before-1"}})["Item"]
    assert item["v"] == {"N": "1"}

    # Healed: the node catches up, and reads everything the majority acknowledged.
    cluster.network.heal()
    deadline = time.monotonic() + 30
    for i in range(40):
        read_until(cluster.client(victim), f"during-{i}", i, deadline, consistent=True)
        read_until(cluster.client(victim), f"during-{i}", i, deadline, consistent=False)
    cluster.wait_for_leaders(cluster.ids)


@pytest.mark.parametrize("direction", ["out", "in"])
def test_a_one_way_cut_does_not_stop_the_majority(cluster, direction):
    """Only what the victim sends is lost ("out"), or only what it receives ("in"): the
    other two must still agree on leaders and acknowledge writes (a node that hears no
    leader must not depose one the majority hears)."""
    make_registers(cluster.client(1))
    victim = busiest_leader(cluster)
    majority = [n for n in cluster.ids if n != victim]
    for other in majority:
        if direction == "out":
            cluster.network.cut(victim, other)
        else:
            cluster.network.cut(other, victim)
    deadline = time.monotonic() + 30
    for i in range(40):
        put_until_acknowledged(cluster.client(majority[i % 2]), f"k-{i}", i, deadline)
    leaders = cluster.wait_for_leaders(majority)
    # Still serving, a while later: no churn of elections.
    time.sleep(3)
    assert cluster.wait_for_leaders(majority, timeout=5) == leaders
    for i in range(40):
        read_until(cluster.client(majority[i % 2]), f"k-{i}", i, time.monotonic() + 5, consistent=True)
    cluster.network.heal()
    deadline = time.monotonic() + 30
    for i in range(40):
        read_until(cluster.client(victim), f"k-{i}", i, deadline, consistent=True)
