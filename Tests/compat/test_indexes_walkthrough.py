"""A new user's single-table design, tried as DynamoDB's documentation describes it,
through the AWS CLI and boto3 against a real `granary serve`: customers and their orders in
one table with a local index and two global indexes, a few thousand items, every access
pattern queried and compared with a model, a third global index (a multi-attribute key)
added online while writes go on, and one deleted."""
import json
import random
import threading
import time

from boto3.dynamodb.conditions import Key

from granary_process import aws, error
from test_api_global_indexes import query_all, resource, wait_for_indexes

STATUSES = ["PLACED", "SHIPPED", "DELIVERED", "RETURNED"]
TIERS = ["gold", "silver"]
REGIONS = ["eu", "us"]


def cli_json(value):
    return json.dumps(value, separators=(",", ":"))


def cli(node, *args):
    code, output, errors = aws(node, *args)
    assert code == 0, errors
    return output


def build_model(rng):
    """200 customers (profile items) with 14 orders each."""
    model = {}
    for c in range(200):
        customer = f"CUST#{c:04d}"
        model[(customer, "PROFILE")] = {
            "pk": customer, "sk": "PROFILE", "email": f"user{c}@example.com", "name": f"User {c}",
            "tier": rng.choice(TIERS), "region": rng.choice(REGIONS), "joined": 2020 + c % 6}
        for o in range(14):
            placed = f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
            order = f"ORDER#{placed}#{c:04d}-{o:02d}"
            model[(customer, order)] = {
                "pk": customer, "sk": order, "status": rng.choice(STATUSES), "placed": placed,
                "total": rng.randint(5, 500)}
    return model


def check_access_patterns(node, table, model, customers):
    # 1. A customer's orders by total (the local index), strongly consistent.
    for customer in customers:
        got = query_all(table, IndexName="by-total", ConsistentRead=True,
                        KeyConditionExpression=Key("pk").eq(customer) & Key("total").gte(100))
        want = sorted(((i["total"], i["sk"]) for i in model.values() if i["pk"] == customer
                       and "total" in i and i["total"] >= 100))
        assert [(int(i["total"]), i["sk"]) for i in got] == want
    # 2. A customer by email (keys only), through the AWS CLI.
    for c in (0, 57, 199):
        found = cli(node, "query", "--table-name", table.name, "--index-name", "by-email",
                    "--key-condition-expression", "email = :e",
                    "--expression-attribute-values", cli_json({":e": {"S": f"user{c}@example.com"}}))
        assert [i["pk"]["S"] for i in found["Items"]] == [f"CUST#{c:04d}"]
        assert set(found["Items"][0]) == {"pk", "sk", "email"}
    # 3. Orders of a status in a month, newest first (the global index on status, placed).
    for status in STATUSES:
        got = query_all(table, IndexName="by-status", ScanIndexForward=False,
                        KeyConditionExpression=Key("status").eq(status) & Key("placed").begins_with("2026-03"))
        want = sorted(((i["placed"], i["pk"], i["sk"]) for i in model.values()
                       if i.get("status") == status and i["placed"].startswith("2026-03")), reverse=True)
        assert [(i["placed"], i["pk"], i["sk"]) for i in got] == want
        assert all(set(i) == {"pk", "sk", "status", "placed", "total"} for i in got)


def test_a_single_table_design_through_the_cli_and_boto3(node, client):
    name = "shop-walkthrough"
    cli(node, "create-table", "--table-name", name, "--billing-mode", "PAY_PER_REQUEST",
        "--attribute-definitions", *[f"AttributeName={a},AttributeType={t}" for a, t in
                                     [("pk", "S"), ("sk", "S"), ("total", "N"), ("email", "S"), ("status", "S"),
                                      ("placed", "S")]],
        "--key-schema", "AttributeName=pk,KeyType=HASH", "AttributeName=sk,KeyType=RANGE",
        "--local-secondary-indexes", cli_json([{
            "IndexName": "by-total", "Projection": {"ProjectionType": "ALL"},
            "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "total", "KeyType": "RANGE"}]}]),
        "--global-secondary-indexes", cli_json([
            {"IndexName": "by-email", "Projection": {"ProjectionType": "KEYS_ONLY"},
             "KeySchema": [{"AttributeName": "email", "KeyType": "HASH"}]},
            {"IndexName": "by-status", "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["total"]},
             "KeySchema": [{"AttributeName": "status", "KeyType": "HASH"},
                           {"AttributeName": "placed", "KeyType": "RANGE"}]}]))
    described = cli(node, "describe-table", "--table-name", name)["Table"]
    assert [i["IndexName"] for i in described["LocalSecondaryIndexes"]] == ["by-total"]
    assert sorted(i["IndexName"] for i in described["GlobalSecondaryIndexes"]) == ["by-email", "by-status"]

    table = resource(node).Table(name)
    rng = random.Random(20261207)
    model = build_model(rng)
    with table.batch_writer() as batch:
        for item in model.values():
            batch.put_item(Item=item)
    wait_for_indexes(node)
    customers = [f"CUST#{c:04d}" for c in rng.sample(range(200), 12)]
    check_access_patterns(node, table, model, customers)
    described = client.describe_table(TableName=name)["Table"]
    assert {i["IndexName"]: i["ItemCount"] for i in described["GlobalSecondaryIndexes"]} == {
        "by-email": 200, "by-status": 2800}

    # A third access pattern arrives: customers by tier and region, by year joined. The
    # index is added online while orders keep changing status and customers move.
    stop = threading.Event()
    changes = []
    lock = threading.Lock()

    def writes():
        writer = resource(node).Table(name)
        local = random.Random(3)
        deadline = time.monotonic() + 30
        while not stop.is_set() and time.monotonic() < deadline and len(changes) < 1500:
            key = local.choice(list(model))
            if key[1] == "PROFILE":
                tier, region = local.choice(TIERS), local.choice(REGIONS)
                writer.update_item(Key={"pk": key[0], "sk": key[1]}, UpdateExpression="SET tier = :t, #r = :r",
                                   ExpressionAttributeNames={"#r": "region"},
                                   ExpressionAttributeValues={":t": tier, ":r": region})
                change = (key, {"tier": tier, "region": region})
            else:
                status = local.choice(STATUSES)
                writer.update_item(Key={"pk": key[0], "sk": key[1]}, UpdateExpression="SET #s = :s",
                                   ExpressionAttributeNames={"#s": "status"}, ExpressionAttributeValues={":s": status})
                change = (key, {"status": status})
            with lock:
                changes.append(change)

    writer = threading.Thread(target=writes)
    writer.start()
    try:
        time.sleep(0.3)
        updated = cli(node, "update-table", "--table-name", name,
                      "--attribute-definitions", "AttributeName=tier,AttributeType=S",
                      "AttributeName=region,AttributeType=S", "AttributeName=joined,AttributeType=N",
                      "--global-secondary-index-updates", cli_json([{"Create": {
                          "IndexName": "by-tier-region", "Projection": {"ProjectionType": "ALL"},
                          "KeySchema": [{"AttributeName": "tier", "KeyType": "HASH"},
                                        {"AttributeName": "region", "KeyType": "HASH"},
                                        {"AttributeName": "joined", "KeyType": "RANGE"}]}}]))
        new = [i for i in updated["TableDescription"]["GlobalSecondaryIndexes"]
               if i["IndexName"] == "by-tier-region"][0]
        assert new["IndexStatus"] == "CREATING" and new["Backfilling"] is True
        code, text = error(table.query, IndexName="by-tier-region",
                           KeyConditionExpression=Key("tier").eq("gold") & Key("region").eq("eu"))
        assert code == "ValidationException" and "backfilling" in text
        deadline = time.monotonic() + 120
        while True:
            indexes = cli(node, "describe-table", "--table-name", name)["Table"]["GlobalSecondaryIndexes"]
            status = {i["IndexName"]: i["IndexStatus"] for i in indexes}["by-tier-region"]
            if status == "ACTIVE":
                break
            assert time.monotonic() < deadline, status
            time.sleep(0.2)
    finally:
        stop.set()
        writer.join()
    assert len(changes) > 20, f"{len(changes)} writes went on during the build"
    for key, attributes in changes:
        model[key].update(attributes)
    wait_for_indexes(node)
    check_access_patterns(node, table, model, customers)
    for tier in TIERS:
        for region in REGIONS:
            got = query_all(table, IndexName="by-tier-region",
                            KeyConditionExpression=Key("tier").eq(tier) & Key("region").eq(region)
                            & Key("joined").between(2021, 2023))
            want = sorted((i["joined"], i["pk"]) for i in model.values() if i["sk"] == "PROFILE"
                          and (i["tier"], i["region"]) == (tier, region) and 2021 <= i["joined"] <= 2023)
            assert [(int(i["joined"]), i["pk"]) for i in got] == want

    # The email lookup is retired.
    cli(node, "update-table", "--table-name", name, "--global-secondary-index-updates",
        cli_json([{"Delete": {"IndexName": "by-email"}}]))
    indexes = cli(node, "describe-table", "--table-name", name)["Table"]["GlobalSecondaryIndexes"]
    assert sorted(i["IndexName"] for i in indexes) == ["by-status", "by-tier-region"]
    code, output, errors = aws(node, "query", "--table-name", name, "--index-name", "by-email",
                               "--key-condition-expression", "email = :e",
                               "--expression-attribute-values", cli_json({":e": {"S": "user1@example.com"}}))
    assert code != 0 and "ValidationException" in errors and "does not have the specified index" in errors
