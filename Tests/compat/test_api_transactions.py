"""TransactWriteItems and TransactGetItems against a real `granary serve`: atomicity,
isolation under concurrent transfers, idempotency tokens, errors, and kill -9."""
import concurrent.futures
import random
import threading
import time
import uuid

import botocore.exceptions

from granary_process import Granary, make_table, refused




def pk(value):
    return {"pk": {"S": value}}


def test_write_transaction_applies_every_action(client):
    accounts, log = make_table(client, sort_type=None), make_table(client)
    client.put_item(TableName=accounts, Item={**pk("alice"), "balance": {"N": "100"}})
    client.put_item(TableName=accounts, Item={**pk("old"), "balance": {"N": "0"}})
    client.put_item(TableName=accounts, Item={**pk("guard"), "open": {"BOOL": True}})
    response = client.transact_write_items(TransactItems=[
        {"Update": {"TableName": accounts, "Key": pk("alice"), "UpdateExpression": "SET balance = balance - :a",
                    "ConditionExpression": "balance >= :a", "ExpressionAttributeValues": {":a": {"N": "30"}}}},
        {"Update": {"TableName": accounts, "Key": pk("bob"), "UpdateExpression": "ADD balance :a",
                    "ExpressionAttributeValues": {":a": {"N": "30"}}}},
        {"Put": {"TableName": log, "Item": {**pk("transfers"), "sk": {"N": "1"}, "amount": {"N": "30"}},
                 "ConditionExpression": "attribute_not_exists(pk)"}},
        {"Delete": {"TableName": accounts, "Key": pk("old")}},
        {"ConditionCheck": {"TableName": accounts, "Key": pk("guard"), "ConditionExpression": "#o = :t",
                            "ExpressionAttributeNames": {"#o": "open"}, "ExpressionAttributeValues": {":t": {"BOOL": True}}}},
    ], ReturnConsumedCapacity="TOTAL")
    assert sorted(entry["TableName"] for entry in response["ConsumedCapacity"]) == sorted([accounts, log])
    got = client.transact_get_items(TransactItems=[
        {"Get": {"TableName": accounts, "Key": pk("alice")}},
        {"Get": {"TableName": accounts, "Key": pk("bob"), "ProjectionExpression": "balance"}},
        {"Get": {"TableName": accounts, "Key": pk("old")}},
        {"Get": {"TableName": log, "Key": {**pk("transfers"), "sk": {"N": "1"}}}},
    ])["Responses"]
    assert got[0]["Item"]["balance"] == {"N": "70"}
    assert got[1] == {"Item": {"balance": {"N": "30"}}}
    assert got[2] == {}
    assert got[3]["Item"]["amount"] == {"N": "30"}


def test_failed_condition_cancels_everything_with_reasons_in_order(client):
    table = make_table(client, sort_type=None)
    client.put_item(TableName=table, Item={**pk("a"), "n": {"N": "1"}})
    client.put_item(TableName=table, Item={**pk("b"), "n": {"N": "5"}})
    response = refused(client.transact_write_items, TransactItems=[
        {"Put": {"TableName": table, "Item": {**pk("a"), "n": {"N": "2"}}}},
        {"Update": {"TableName": table, "Key": pk("b"), "UpdateExpression": "SET n = :z", "ConditionExpression": "n < :z",
                    "ExpressionAttributeValues": {":z": {"N": "0"}}, "ReturnValuesOnConditionCheckFailure": "ALL_OLD"}},
        {"Delete": {"TableName": table, "Key": pk("c"), "ConditionExpression": "attribute_exists(pk)"}},
    ])
    assert response["Error"]["Code"] == "TransactionCanceledException"
    assert response["Error"]["Message"] == \
        "Transaction cancelled, please refer cancellation reasons for specific reasons [None, ConditionalCheckFailed, ConditionalCheckFailed]"
    reasons = response["CancellationReasons"]
    assert [reason["Code"] for reason in reasons] == ["None", "ConditionalCheckFailed", "ConditionalCheckFailed"]
    assert reasons[1]["Item"] == {**pk("b"), "n": {"N": "5"}} and "Item" not in reasons[2]
    assert client.get_item(TableName=table, Key=pk("a"))["Item"]["n"] == {"N": "1"}
    # An update that fails against the stored item (here: a number added to a string)
    # cancels with ValidationError.
    client.put_item(TableName=table, Item={**pk("a"), "n": {"N": "1"}, "s": {"S": "text"}})
    response = refused(client.transact_write_items, TransactItems=[
        {"Update": {"TableName": table, "Key": pk("a"), "UpdateExpression": "SET n = s + :one",
                    "ExpressionAttributeValues": {":one": {"N": "1"}}}},
        {"Put": {"TableName": table, "Item": {**pk("d")}}},
    ])
    assert [reason["Code"] for reason in response["CancellationReasons"]] == ["ValidationError", "None"]
    assert "Item" not in client.get_item(TableName=table, Key=pk("d"))


def test_transaction_validation(client):
    table = make_table(client, sort_type=None)

    def code_and_message(**kwargs):
        error = refused(client.transact_write_items, **kwargs)["Error"]
        return error["Code"], error["Message"]

    assert code_and_message(TransactItems=[{"Put": {"TableName": table, "Item": pk("x")}},
                                           {"Delete": {"TableName": table, "Key": pk("x")}}]) == \
        ("ValidationException", "Transaction request cannot include multiple operations on one item")
    assert code_and_message(TransactItems=[{"Put": {"TableName": table, "Item": pk(f"k{n}")}} for n in range(101)])[0] == \
        "ValidationException"
    assert code_and_message(TransactItems=[{"Put": {"TableName": "no-such-table", "Item": pk("x")}}])[0] == \
        "ResourceNotFoundException"
    assert code_and_message(TransactItems=[{"Update": {"TableName": table, "Key": pk("x"), "UpdateExpression": "SET pk = :v",
                                                       "ExpressionAttributeValues": {":v": {"S": "y"}}}}]) == \
        ("ValidationException", "One or more parameter values were invalid: Cannot update attribute pk. This attribute is part of the key")
    assert code_and_message(TransactItems=[{"Put": {"TableName": table, "Item": {"other": {"S": "x"}}}}])[0] == "ValidationException"
    assert client.scan(TableName=table)["Count"] == 0
    error = refused(client.transact_get_items, TransactItems=[{"Get": {"TableName": table, "Key": pk("x")}}] * 2)["Error"]
    assert error["Message"] == "Transaction request cannot include multiple operations on one item"


def test_large_transaction_spans_ledger_chunks(client):
    """Ten 390 KB items (3.9 MB) commit together, through several ledger chunks; past 4 MB
    the request is refused and writes nothing."""
    table = make_table(client, sort_type=None)
    blob = "b" * 390_000
    client.transact_write_items(TransactItems=[{"Put": {"TableName": table, "Item": {**pk(f"big-{n}"), "blob": {"S": blob}}}}
                                               for n in range(10)])
    got = client.transact_get_items(TransactItems=[{"Get": {"TableName": table, "Key": pk(f"big-{n}")}} for n in range(10)])
    assert all(response["Item"]["blob"]["S"] == blob for response in got["Responses"])
    error = refused(client.transact_write_items, TransactItems=[
        {"Put": {"TableName": table, "Item": {**pk(f"huge-{n}"), "blob": {"S": blob}}}} for n in range(11)])["Error"]
    assert (error["Code"], error["Message"]) == ("ValidationException", "Transaction request cannot be larger than 4 MB")
    assert client.describe_table(TableName=table)["Table"]["ItemCount"] == 10


def test_client_request_token_is_idempotent(client):
    table = make_table(client, sort_type=None)
    request = {"TransactItems": [{"Update": {"TableName": table, "Key": pk("counter"), "UpdateExpression": "ADD n :one",
                                             "ExpressionAttributeValues": {":one": {"N": "1"}}}}],
               "ClientRequestToken": "token-" + uuid.uuid4().hex[:8]}
    for _ in range(3):
        client.transact_write_items(**request)
    assert client.get_item(TableName=table, Key=pk("counter"))["Item"]["n"] == {"N": "1"}
    changed = dict(request, TransactItems=[{"Put": {"TableName": table, "Item": pk("other")}}])
    assert refused(client.transact_write_items, **changed)["Error"]["Code"] == "IdempotentParameterMismatchException"
    request["ClientRequestToken"] = "token-" + uuid.uuid4().hex[:8]
    client.transact_write_items(**request)
    assert client.get_item(TableName=table, Key=pk("counter"))["Item"]["n"] == {"N": "2"}


def transfer_loop(node, table, accounts, seed, deadline, transfers, running):
    """Random transfers between accounts; a conflict or a short balance is retried or skipped.
    Each transfer waits for `running`, which the snapshot reader clears when it starves."""
    client = node.client()
    rng = random.Random(seed)
    done = conflicts = 0
    while done < transfers and time.time() < deadline:
        running.wait()
        source, target = rng.sample(accounts, 2)
        amount = rng.randint(1, 20)
        try:
            client.transact_write_items(TransactItems=[
                {"Update": {"TableName": table, "Key": pk(source), "UpdateExpression": "SET balance = balance - :a",
                            "ConditionExpression": "balance >= :a", "ExpressionAttributeValues": {":a": {"N": str(amount)}}}},
                {"Update": {"TableName": table, "Key": pk(target), "UpdateExpression": "SET balance = balance + :a",
                            "ExpressionAttributeValues": {":a": {"N": str(amount)}}}},
            ])
            done += 1
        except botocore.exceptions.ClientError as error:
            assert error.response["Error"]["Code"] == "TransactionCanceledException", error.response
            codes = {reason["Code"] for reason in error.response["CancellationReasons"]}
            assert codes <= {"None", "ConditionalCheckFailed", "TransactionConflict"}, codes
            conflicts += "TransactionConflict" in codes
    return done, conflicts


def total_balance(client, table, accounts):
    items = client.transact_get_items(TransactItems=[{"Get": {"TableName": table, "Key": pk(a)}} for a in accounts])["Responses"]
    return sum(int(item["Item"]["balance"]["N"]) for item in items)


def test_concurrent_transfers_conserve_the_total(node, client):
    table = make_table(client, sort_type=None)
    accounts = [f"acct-{n}" for n in range(12)]
    for account in accounts:
        client.put_item(TableName=table, Item={**pk(account), "balance": {"N": "100"}})
    deadline = time.time() + 60
    running = threading.Event()
    running.set()
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(transfer_loop, node, table, accounts, seed, deadline, 150, running) for seed in range(8)]
        # Snapshot reads while the transfers run: every one sees the conserved total. A read
        # of all twelve accounts conflicts with any transfer in flight; on a slow build (the
        # sanitizers') it may never find a gap, so after 20 conflicts in a row the writers
        # pause until one read gets through.
        snapshots = conflicts_in_a_row = 0
        while not all(future.done() for future in futures) and time.time() < deadline:
            try:
                assert total_balance(client, table, accounts) == 1200
                snapshots += 1
                conflicts_in_a_row = 0
                running.set()
            except botocore.exceptions.ClientError as error:
                assert error.response["Error"]["Code"] == "TransactionCanceledException"
                conflicts_in_a_row += 1
                if conflicts_in_a_row >= 20:
                    running.clear()
        running.set()
        results = [future.result() for future in futures]
    assert sum(done for done, _ in results) >= 400
    assert snapshots > 0
    scanned = client.scan(TableName=table, ConsistentRead=True)["Items"]
    assert sum(int(item["balance"]["N"]) for item in scanned) == 1200
    assert all(int(item["balance"]["N"]) >= 0 for item in scanned)


def test_transfers_survive_kill_9():
    """Kill the node while transfers run; after each restart the total is still conserved
    (a transaction committed in the ledger is finished before the node serves again)."""
    server = Granary().wait_ready()
    try:
        client = server.client()
        table = make_table(client, sort_type=None)
        accounts = [f"acct-{n}" for n in range(10)]
        for account in accounts:
            client.put_item(TableName=table, Item={**pk(account), "balance": {"N": "50"}})
        for cycle in range(3):
            deadline = time.time() + 30
            with concurrent.futures.ThreadPoolExecutor(6) as pool:
                futures = [pool.submit(transfer_loop, server, table, accounts, cycle * 10 + seed, deadline, 10_000) for seed in range(6)]
                time.sleep(0.5 + random.random())
                server.kill()
                for future in futures:
                    try:
                        future.result()
                    except Exception:
                        pass  # the connection died with the node
            server = Granary(data_dir=server.data_dir).wait_ready()
            client = server.client()
            assert total_balance(client, table, accounts) == 500, cycle
    finally:
        server.kill()
