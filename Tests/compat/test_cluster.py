"""Three real nodes replicating every partition: writes through any node, a leader killed
with kill -9, writes resuming on the others, and the killed node catching up."""
import glob
import os
import shutil
import signal
import socket
import struct
import time

import botocore.config
import botocore.exceptions
import pytest
import requests

from cluster_process import Cluster
from granary_process import Granary, aws, free_port


@pytest.fixture
def cluster():
    nodes = Cluster(3).wait_ready()
    yield nodes
    nodes.stop_all()


def make_table(client, name):
    client.create_table(TableName=name, BillingMode="PAY_PER_REQUEST",
                        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}])


def wait_for_table(cluster, name, nodes, timeout=10.0):
    deadline = time.monotonic() + timeout
    for n in nodes:
        while True:
            try:
                cluster.client(n).describe_table(TableName=name)
                break
            except botocore.exceptions.ClientError:
                assert time.monotonic() < deadline, f"node {n} never saw table {name}"
                time.sleep(0.1)


def read_all(client, keys, consistent):
    """The `n` of each key in table Music, by BatchGetItem (100 keys a call)."""
    found = {}
    keys = list(keys)
    for start in range(0, len(keys), 100):
        request = {"Music": {"Keys": [{"pk": {"S": key}} for key in keys[start:start + 100]],
                             "ConsistentRead": consistent}}
        while request:
            answer = client.batch_get_item(RequestItems=request)
            for item in answer["Responses"].get("Music", []):
                found[item["pk"]["S"]] = item["n"]["N"]
            request = answer.get("UnprocessedKeys") or None
    return found


def test_any_node_answers_and_a_killed_leader_loses_nothing(cluster):
    # The README's walk-through, against node 2, then reads through the others.
    code, _, stderr = aws(cluster.nodes[2], "create-table", "--table-name", "Music",
                          "--attribute-definitions", "AttributeName=pk,AttributeType=S",
                          "--key-schema", "AttributeName=pk,KeyType=HASH", "--billing-mode", "PAY_PER_REQUEST")
    assert code == 0, stderr
    wait_for_table(cluster, "Music", [1, 2, 3])
    code, _, stderr = aws(cluster.nodes[3], "put-item", "--table-name", "Music",
                          "--item", '{"pk": {"S": "song-0"}, "n": {"N": "0"}}')
    assert code == 0, stderr
    code, got, stderr = aws(cluster.nodes[1], "get-item", "--table-name", "Music", "--consistent-read",
                            "--key", '{"pk": {"S": "song-0"}}')
    assert code == 0 and got["Item"]["n"] == {"N": "0"}, stderr

    acknowledged = {"song-0": "0"}
    for i in range(1, 120):
        cluster.client(1 + i % 3).put_item(TableName="Music", Item={"pk": {"S": f"song-{i}"}, "n": {"N": str(i)}})
        acknowledged[f"song-{i}"] = str(i)

    # Kill the node that leads the catalog's partition (and others), with no warning.
    leaders = cluster.wait_for_leaders([1, 2, 3])
    victim = leaders[0]
    alive = [n for n in (1, 2, 3) if n != victim]
    cluster.kill(victim)
    killed_at = time.monotonic()
    resumed_at = None
    for i in range(120, 240):
        n = alive[i % 2]
        deadline = time.monotonic() + 20
        while True:
            try:
                cluster.client(n).put_item(TableName="Music", Item={"pk": {"S": f"song-{i}"}, "n": {"N": str(i)}})
                acknowledged[f"song-{i}"] = str(i)
                resumed_at = resumed_at or time.monotonic()
                break
            except botocore.exceptions.ClientError as error:
                # Unavailable while the group elects; such a write's outcome is unknown.
                assert error.response["Error"]["Code"] == "InternalServerError", error.response
                assert time.monotonic() < deadline, "writes did not resume within 20 s of the kill"
                acknowledged.pop(f"song-{i}", None)
                time.sleep(0.1)
    assert resumed_at - killed_at < 10, f"the first write after the kill took {resumed_at - killed_at:.1f}s"
    # Enough writes while it is down that its groups compact their logs past where it
    # stopped: it catches up from a snapshot.
    for batch in range(40):
        keys = [f"bulk-{batch}-{i}" for i in range(25)]
        cluster.client(alive[batch % 2]).batch_write_item(RequestItems={"Music": [
            {"PutRequest": {"Item": {"pk": {"S": key}, "n": {"N": str(batch)}}}} for key in keys]})
        for key in keys:
            acknowledged[key] = str(batch)
    for n in alive:
        assert read_all(cluster.client(n), acknowledged, consistent=True) == acknowledged, n

    # Back under its old id with its data: it catches up, and every acknowledged write
    # is in each node's own replica (eventually consistent reads answer from it).
    cluster.start(victim).wait_ready(60)
    deadline = time.monotonic() + 30
    for n in (1, 2, 3):
        while (found := read_all(cluster.client(n), acknowledged, consistent=False)) != acknowledged:
            missing = [key for key in acknowledged if found.get(key) != acknowledged[key]]
            assert time.monotonic() < deadline, f"node {n} lacks {len(missing)} writes 30 s after the restart"
            time.sleep(0.2)
    assert cluster.client(victim).scan(TableName="Music", ConsistentRead=True)["Count"] == len(acknowledged)


def recovery_marks(cluster, n):
    return sorted(glob.glob(os.path.join(cluster.data_dirs[n], "partition-*", "recovering")))


def test_a_node_that_lost_its_data_votes_only_once_caught_up(cluster):
    make_table(cluster.client(1), "Music")
    wait_for_table(cluster, "Music", [1, 2, 3])
    acknowledged = {}
    for i in range(60):
        cluster.client(1 + i % 3).put_item(TableName="Music", Item={"pk": {"S": f"song-{i}"}, "n": {"N": str(i)}})
        acknowledged[f"song-{i}"] = str(i)
    assert recovery_marks(cluster, 3) == []
    # Node 3 loses its disk; node 2 is down too. Node 1 alone holds the log: with node 3
    # voting as if it had never promised or accepted anything, the two would make a quorum
    # that could contradict what node 2 voted for. So node 3 must wait for node 2.
    cluster.kill(3)
    cluster.kill(2)
    shutil.rmtree(cluster.data_dirs[3])
    cluster.start(3)
    time.sleep(4)  # elections run every 0.5 to 1 s
    slow = cluster.client(1, config=botocore.config.Config(retries={"max_attempts": 1}, read_timeout=30))
    with pytest.raises(botocore.exceptions.ClientError) as refused:
        slow.put_item(TableName="Music", Item={"pk": {"S": "x"}, "n": {"N": "0"}})
    assert refused.value.response["Error"]["Code"] == "InternalServerError"
    assert len(recovery_marks(cluster, 3)) == len(cluster.status(1)["partitions"])
    roles = {r["role"] for p in cluster.status(1)["partitions"] for r in p["replicas"] if r["node"] == 3}
    assert roles == {"recovering"}, roles
    # Node 2 is back: node 3 learns the ballots and the log's end from both, catches up,
    # drops its marks, and serves every acknowledged write from its own replica.
    cluster.start(2)
    cluster.wait_ready(60)
    deadline = time.monotonic() + 30
    while recovery_marks(cluster, 3):
        assert time.monotonic() < deadline, f"node 3 still recovering: {recovery_marks(cluster, 3)}"
        time.sleep(0.2)
    while (found := read_all(cluster.client(3), acknowledged, consistent=False)) != acknowledged:
        assert time.monotonic() < deadline, f"node 3 lacks {len(acknowledged) - len(found)} writes"
        time.sleep(0.2)
    # It votes again: with node 1 down, nodes 2 and 3 make the quorum.
    cluster.kill(1)
    deadline = time.monotonic() + 20
    while True:
        try:
            cluster.client(3).put_item(TableName="Music", Item={"pk": {"S": "after"}, "n": {"N": "1"}})
            break
        except botocore.exceptions.ClientError as error:
            assert error.response["Error"]["Code"] == "InternalServerError", error.response
            assert time.monotonic() < deadline, "nodes 2 and 3 did not take writes without node 1"
            time.sleep(0.2)
    assert read_all(cluster.client(2), acknowledged, consistent=True) == acknowledged


def test_cluster_status_and_spread_leaders(cluster):
    leaders = cluster.wait_for_leaders([1, 2, 3])
    # Leaders settle on the preferred ones, spread evenly over the nodes.
    deadline = time.monotonic() + 15
    while sorted(list(leaders.values()).count(n) for n in (1, 2, 3)) != [2, 2, 2]:
        assert time.monotonic() < deadline, leaders
        time.sleep(0.2)
        leaders = cluster.wait_for_leaders([1, 2, 3])
    status = cluster.status(2)
    assert status["node"] == 2
    assert [node["id"] for node in status["nodes"]] == [1, 2, 3]
    assert all(node["reachable"] for node in status["nodes"])
    # Every replica of every group, as each node reports its own: one leader per group,
    # the one the group names, and the others following.
    for partition in status["partitions"]:
        replicas = partition["replicas"]
        assert [r["node"] for r in replicas] == [1, 2, 3], partition
        assert [r["node"] for r in replicas if r["role"] == "leader"] == [partition["leader"]], partition
        assert all(r["role"] in ("leader", "follower") and r["applied"] <= r["chosen"] for r in replicas), partition


def test_tables_and_batches_through_any_node(cluster):
    make_table(cluster.client(1), "Shared")
    # Known at once through every node: a node that does not know a table reads the
    # catalog again before it answers.
    for n in (2, 3):
        cluster.client(n).put_item(TableName="Shared", Item={"pk": {"S": f"first-{n}"}})
        cluster.client(n).delete_item(TableName="Shared", Key={"pk": {"S": f"first-{n}"}})
    names = {n: cluster.client(n).list_tables()["TableNames"] for n in (1, 2, 3)}
    assert all(tables == ["Shared"] for tables in names.values()), names
    cluster.client(2).batch_write_item(RequestItems={"Shared": [
        {"PutRequest": {"Item": {"pk": {"S": f"b{i}"}, "v": {"N": str(i)}}}} for i in range(25)]})
    got = cluster.client(3).batch_get_item(RequestItems={"Shared": {
        "Keys": [{"pk": {"S": f"b{i}"}} for i in range(25)], "ConsistentRead": True}})
    assert len(got["Responses"]["Shared"]) == 25
    assert all(cluster.client(n).describe_table(TableName="Shared")["Table"]["ItemCount"] == 25 for n in (1, 2, 3))
    # A conditional write evaluated at the leader, from any node.
    with pytest.raises(botocore.exceptions.ClientError) as raised:
        cluster.client(1).put_item(TableName="Shared", Item={"pk": {"S": "b1"}},
                                   ConditionExpression="attribute_not_exists(pk)")
    assert raised.value.response["Error"]["Code"] == "ConditionalCheckFailedException"
    cluster.client(3).delete_table(TableName="Shared")
    deadline = time.monotonic() + 5
    while cluster.client(2).list_tables()["TableNames"]:
        assert time.monotonic() < deadline, "node 2 still lists the deleted table"
        time.sleep(0.1)


def crc32c(data):
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def frame(kind, payload):
    return struct.pack("<IBBI", len(payload), 1, kind, crc32c(payload)) + payload


def test_peer_port_refuses_strangers_and_garbage(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("a cluster secret of some length\n")
    cluster = Cluster(3, secret_file=str(secret)).wait_ready()
    try:
        make_table(cluster.client(1), "Guarded")
        port = cluster.peer_ports[1]
        cluster_name = f"{cluster.cluster_id}/partitions=6".encode()
        attempts = [
            b"\x00" * 64,  # not a frame
            struct.pack("<IBBI", 1 << 30, 1, 0xF0, 0),  # a gigabyte frame
            frame(0xF0, b"garbage"),  # a hello that does not parse
            frame(1, b"\x00" * 16),  # data before any handshake
            # A well-formed hello of a node that is not a member, then of another cluster.
            frame(0xF0, struct.pack("<H", len(cluster_name)) + cluster_name + struct.pack("<II", 9, 1) + b"n" * 16),
            frame(0xF0, struct.pack("<H", 5) + b"other" + struct.pack("<II", 2, 1) + b"n" * 16),
            # A member's hello: the welcome comes, then a forged proof is refused.
            frame(0xF0, struct.pack("<H", len(cluster_name)) + cluster_name + struct.pack("<II", 2, 1) + b"n" * 16)
            + frame(0xF2, b"\x00" * 32) + frame(1, b"\x00\x00\x00\x00"),
        ]
        for attempt in attempts:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
                connection.sendall(attempt)
                connection.settimeout(5)
                received = b""
                try:
                    while chunk := connection.recv(4096):
                        received += chunk
                except (TimeoutError, ConnectionResetError):
                    pass
                assert len(received) <= 10 + 48  # at most a welcome, never data
        # A node with the right cluster id and the wrong secret is not let in.
        wrong = tmp_path / "wrong"
        wrong.write_text("not the cluster secret at all\n")
        intruder = Granary(extra_args=[
            "--node-id", "2", "--peer-listen", f"127.0.0.1:{free_port()}", "--peers", cluster.peers,
            "--cluster-id", cluster.cluster_id, "--cluster-secret-file", str(wrong), "--memory", "64M"])
        time.sleep(2)
        _, intruder_log = intruder.stop(signal.SIGKILL)
        # Each member's welcome fails the intruder's check: nobody proved the same secret.
        assert "failed the handshake: not our cluster secret" in intruder_log, intruder_log[-2000:]
        assert "waiting for a quorum" in intruder_log or "granary listening" not in intruder_log
        # Every member still serves.
        for n in (1, 2, 3):
            cluster.client(n).put_item(TableName="Guarded", Item={"pk": {"S": f"after-{n}"}})
            assert requests.get(cluster.nodes[n].endpoint + "/", timeout=5).status_code == 200
    finally:
        cluster.stop_all()


def test_start_up_refuses_an_open_peer_port_without_a_secret():
    node = Granary(extra_args=["--node-id", "1", "--peer-listen", "0.0.0.0:0", "--peers",
                               "1=10.0.0.1:9000,2=10.0.0.2:9000,3=10.0.0.3:9000", "--cluster-id", "x"])
    code, stderr = node.wait_exit()
    assert code != 0 and "--cluster-secret-file" in stderr



def scan_all(client, consistent):
    """Every item's pk and n, read through `client` (eventually consistent: that node's own
    replica)."""
    found, request = {}, {"TableName": "Music", "ProjectionExpression": "pk, n", "ConsistentRead": consistent}
    while True:
        page = client.scan(**request)
        found.update((item["pk"]["S"], item["n"]["N"]) for item in page["Items"])
        if "LastEvaluatedKey" not in page:
            return found
        request["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def test_a_node_catches_up_from_a_snapshot_larger_than_a_send_queue():
    """One partition holding 37 MB (a snapshot larger than a peer's 32 MiB send queue)
    written while node 3 is down. Back up, it catches up from the snapshot (read beside the
    leader's log, so heartbeats and writes go on; sent in fragments) while writes go on,
    and then holds exactly what the leader holds, every item read from its own replica."""
    cluster = Cluster(3, extra_args=["--partitions", "1"]).wait_ready()
    try:
        make_table(cluster.client(1), "Music")
        wait_for_table(cluster, "Music", [1, 2, 3])
        cluster.kill(3)
        cluster.wait_for_leaders([1, 2])

        def put(node, item, timeout=20):
            deadline = time.monotonic() + timeout
            while True:
                try:
                    return cluster.client(node).put_item(TableName="Music", Item=item)
                except botocore.exceptions.ClientError:
                    assert time.monotonic() < deadline
                    time.sleep(0.1)

        blob = os.urandom(290_000).hex()[:390_000]  # 390 KB, under the 400 KB item limit
        for i in range(96):
            put(1 + i % 2, {"pk": {"S": f"big-{i}"}, "n": {"N": str(i)}, "blob": {"S": blob}})
        cluster.start(3)
        # Small writes through nodes 1 and 2 while node 3 catches up: they must reach it too.
        written = 0
        started = time.monotonic()
        while time.monotonic() - started < 8 and written < 400:
            put(1 + written % 2, {"pk": {"S": f"small-{written % 50}"}, "n": {"N": str(written)}})
            written += 1
        assert written >= 50
        cluster.wait_ready(60)
        expected = scan_all(cluster.client(1), consistent=True)
        assert len(expected) == 96 + 50
        deadline = time.monotonic() + 90
        while True:
            found = scan_all(cluster.client(3), consistent=False)
            if found == expected:
                break
            assert time.monotonic() < deadline, \
                f"node 3 holds {len(found)} items, {sum(found.get(k) == v for k, v in expected.items())} " \
                f"as the leader does, of {len(expected)}, 90 s after its restart"
            time.sleep(0.5)
        status = cluster.status(3)["partitions"][0]
        assert {replica["node"] for replica in status["replicas"]} == {1, 2, 3}
    finally:
        cluster.stop_all()


def test_global_and_local_indexes_across_nodes(cluster):
    """A table with a global and a local index, written through every node: the global
    index's entries reach the partitions (and nodes) that own them, and every node answers
    Query on both indexes."""
    client = cluster.client(1)
    client.create_table(
        TableName="Orders", BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": a, "AttributeType": t}
                              for a, t in [("pk", "S"), ("sk", "S"), ("status", "S"), ("total", "N")]],
        LocalSecondaryIndexes=[{"IndexName": "by-total", "Projection": {"ProjectionType": "ALL"},
                                "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"},
                                              {"AttributeName": "total", "KeyType": "RANGE"}]}],
        GlobalSecondaryIndexes=[{"IndexName": "by-status", "Projection": {"ProjectionType": "ALL"},
                                 "KeySchema": [{"AttributeName": "status", "KeyType": "HASH"},
                                               {"AttributeName": "sk", "KeyType": "RANGE"}]}])
    wait_for_table(cluster, "Orders", [1, 2, 3])
    for n in range(60):
        cluster.client(1 + n % 3).put_item(TableName="Orders", Item={
            "pk": {"S": f"c{n % 7}"}, "sk": {"S": f"o{n:02}"}, "total": {"N": str(n % 11)},
            "status": {"S": ["open", "paid"][n % 2]}})
    deadline = time.monotonic() + 30
    while requests.get(cluster.nodes[2].endpoint + "/indexes", timeout=5).json()["pendingItems"] != 0:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    for node in (1, 2, 3):
        paid, request = [], {"TableName": "Orders", "IndexName": "by-status", "KeyConditionExpression": "#s = :s",
                             "ExpressionAttributeNames": {"#s": "status"},
                             "ExpressionAttributeValues": {":s": {"S": "paid"}}}
        deadline = time.monotonic() + 10
        while True:  # eventually consistent: this node's own replica of the index partition
            paid = cluster.client(node).query(**request)["Items"]
            if len(paid) == 30 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert [item["sk"]["S"] for item in paid] == [f"o{n:02}" for n in range(60) if n % 2 == 1]
        by_total = cluster.client(node).query(
            TableName="Orders", IndexName="by-total", ConsistentRead=True, KeyConditionExpression="pk = :p",
            ExpressionAttributeValues={":p": {"S": "c3"}})["Items"]
        assert [int(item["total"]["N"]) for item in by_total] == sorted(n % 11 for n in range(60) if n % 7 == 3)
