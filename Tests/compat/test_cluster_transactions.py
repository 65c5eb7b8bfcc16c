"""Transactions across the partitions of three real nodes when their coordinator dies half
way: the participants' leaders finish what it committed (their locks are durable and
survive a change of leader), so the transaction is applied everywhere, and a write that
arrives meanwhile waits for it rather than being overwritten by it."""
import concurrent.futures
import random
import threading
import time

import botocore.exceptions

from cluster_process import Cluster

ACCOUNTS = [f"acct-{n}" for n in range(10)]  # ten keys: several partitions of six


def balances(client):
    found = {}
    for account in ACCOUNTS:
        item = client.get_item(TableName="Bank", Key={"pk": {"S": account}}, ConsistentRead=True).get("Item")
        found[account] = int(item["balance"]["N"])
    return found


def retried(call, seconds=30.0):
    """Calls until it succeeds; a ConditionalCheckFailed means an earlier try applied."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return call()
        except botocore.exceptions.ClientError as error:
            if error.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return None
            assert time.monotonic() < deadline, error.response
        except botocore.exceptions.BotoCoreError:
            assert time.monotonic() < deadline
        time.sleep(0.1)


def coordinator_dies_after_one_apply(node_args):
    """Node 1 coordinates a transaction adding 1 to every account and exits once one
    participant has applied it; meanwhile each account gets a deposit of 1000 through
    the other nodes. Returns the balances once no lock is left, as nodes 2 and 3 see them."""
    cluster = Cluster(3, node_args=node_args).wait_ready()
    try:
        client = cluster.client(2)
        client.create_table(TableName="Bank", BillingMode="PAY_PER_REQUEST",
                            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}])
        for account in ACCOUNTS:
            retried(lambda: cluster.client(3).put_item(
                TableName="Bank", Item={"pk": {"S": account}, "balance": {"N": "100"}}))
        try:
            cluster.client(1).transact_write_items(TransactItems=[
                {"Update": {"TableName": "Bank", "Key": {"pk": {"S": account}},
                            "UpdateExpression": "SET balance = balance + :one",
                            "ExpressionAttributeValues": {":one": {"N": "1"}}}} for account in ACCOUNTS])
            raise AssertionError("the coordinator answered instead of stopping half way")
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError):
            pass  # it died with the request
        code, _ = cluster.nodes[1].wait_exit()
        assert code == 137, code
        # Deposits, once each, while the participants' leaders resolve the transaction.
        with concurrent.futures.ThreadPoolExecutor(len(ACCOUNTS)) as pool:
            list(pool.map(lambda n: retried(lambda: cluster.client(2 + n % 2).update_item(
                TableName="Bank", Key={"pk": {"S": ACCOUNTS[n]}},
                UpdateExpression="SET balance = balance + :k, deposited = :yes",
                ConditionExpression="attribute_not_exists(deposited)",
                ExpressionAttributeValues={":k": {"N": "1000"}, ":yes": {"BOOL": True}})), range(len(ACCOUNTS))))
        seen = [retried(lambda: balances(cluster.client(n))) for n in (2, 3)]
        assert seen[0] == seen[1]
        # Node 1 back, as an ordinary node: it serves the same balances.
        cluster.node_args = {}
        cluster.start(1).wait_ready(60)
        assert retried(lambda: balances(cluster.client(1))) == seen[0]
        return seen[0]
    finally:
        cluster.stop_all()


def test_a_coordinator_that_dies_half_way_is_finished_by_the_participants():
    found = coordinator_dies_after_one_apply({1: ["--exit-after-transaction-applies", "1"]})
    assert found == {account: 1101 for account in ACCOUNTS}


def test_a_build_aborting_unread_decisions_is_caught():
    """The deliberate bug: leaders abort a lock their coordinator left without reading
    the decision. The participant that applied keeps the transaction; the others lose
    it: the same check sees the transaction half applied."""
    broken = ["--unsafe-abort-unfinished-transactions"]
    found = coordinator_dies_after_one_apply(
        {1: ["--exit-after-transaction-applies", "1", *broken], 2: broken, 3: broken})
    assert found != {account: 1101 for account in ACCOUNTS}
    assert set(found.values()) == {1100, 1101}, found


def test_transfers_conserve_the_total_while_nodes_are_killed():
    """Transfers between twelve accounts through every node while each node in turn is
    killed with kill -9 and restarted: every snapshot read (TransactGetItems) sees the
    total, and at the end no lock is left behind and the total is whole."""
    cluster = Cluster(3).wait_ready()
    accounts = [f"acct-{n}" for n in range(12)]
    try:
        cluster.client(1).create_table(
            TableName="Bank", BillingMode="PAY_PER_REQUEST", KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}])
        for account in accounts:
            retried(lambda: cluster.client(2).put_item(
                TableName="Bank", Item={"pk": {"S": account}, "balance": {"N": "100"}}))
        stop = threading.Event()
        down = set()

        def transfers(seed):
            rng = random.Random(seed)
            done = 0
            while not stop.is_set():
                node = rng.choice([n for n in (1, 2, 3) if n not in down] or [1])
                source, target = rng.sample(accounts, 2)
                amount = str(rng.randint(1, 20))
                try:
                    cluster.client(node).transact_write_items(TransactItems=[
                        {"Update": {"TableName": "Bank", "Key": {"pk": {"S": source}},
                                    "UpdateExpression": "SET balance = balance - :a",
                                    "ConditionExpression": "balance >= :a",
                                    "ExpressionAttributeValues": {":a": {"N": amount}}}},
                        {"Update": {"TableName": "Bank", "Key": {"pk": {"S": target}},
                                    "UpdateExpression": "SET balance = balance + :a",
                                    "ExpressionAttributeValues": {":a": {"N": amount}}}}])
                    done += 1
                except botocore.exceptions.ClientError as error:
                    # Cancelled, or (leaders changing) of unknown outcome: either way all or
                    # nothing. (boto3 gives every call a token: its retry of one whose
                    # outcome was unknown may find it still being applied.)
                    assert error.response["Error"]["Code"] in (
                        "TransactionCanceledException", "InternalServerError", "ThrottlingException",
                        "TransactionInProgressException"), error.response
                except botocore.exceptions.BotoCoreError:
                    time.sleep(0.05)  # its node is down
            return done

        def snapshot(node):
            items = cluster.client(node).transact_get_items(TransactItems=[
                {"Get": {"TableName": "Bank", "Key": {"pk": {"S": account}}}} for account in accounts])["Responses"]
            return [int(item["Item"]["balance"]["N"]) for item in items]

        snapshots = 0
        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            futures = [pool.submit(transfers, seed) for seed in range(6)]
            for victim in (1, 2, 3):
                cluster.kill(victim)
                down.add(victim)
                deadline = time.monotonic() + 6
                while time.monotonic() < deadline:
                    try:
                        assert sum(snapshot(random.choice([n for n in (1, 2, 3) if n != victim]))) == 1200
                        snapshots += 1
                    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError):
                        time.sleep(0.05)
                cluster.start(victim).wait_ready(60)
                down.discard(victim)
                time.sleep(3)
            stop.set()
            done = sum(future.result() for future in futures)
        assert done >= 30, done
        assert snapshots > 0
        for node in (1, 2, 3):
            balances = retried(lambda: snapshot(node))
            assert sum(balances) == 1200 and min(balances) >= 0, (node, balances)
        for account in accounts:  # no lock is left behind
            retried(lambda: cluster.client(3).update_item(
                TableName="Bank", Key={"pk": {"S": account}}, UpdateExpression="SET touched = :t",
                ExpressionAttributeValues={":t": {"BOOL": True}}), seconds=15)
    finally:
        cluster.stop_all()
