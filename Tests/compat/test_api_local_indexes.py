"""Local secondary indexes through boto3 and the AWS CLI against a real `granary serve`:
definitions and their errors, every write path keeping the indexes, Query and Scan on an
index with projections and pagination, a randomized comparison with a model of the table,
and kill -9 during writes."""
import random
import uuid

import boto3
import botocore.config
import pytest
from boto3.dynamodb.conditions import Key

from granary_process import Granary, aws, error


def resource(node):
    return boto3.resource("dynamodb", endpoint_url=node.endpoint, region_name="us-east-1",
                          aws_access_key_id="test", aws_secret_access_key="test")


def create_orders(client, name=None):
    """Orders by customer (pk) and order id (sk), with two local indexes: by total (N,
    everything projected) and by status (S, keys and `note` only)."""
    name = name or f"orders-{uuid.uuid4().hex[:10]}"
    client.create_table(
        TableName=name, BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": a, "AttributeType": t}
                              for a, t in [("pk", "S"), ("sk", "S"), ("total", "N"), ("status", "S")]],
        LocalSecondaryIndexes=[
            {"IndexName": "by-total",
             "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "total", "KeyType": "RANGE"}],
             "Projection": {"ProjectionType": "ALL"}},
            {"IndexName": "by-status",
             "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "status", "KeyType": "RANGE"}],
             "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["note"]}},
        ])
    return name


def query_all(table, **request):
    """Every item of a Query, following LastEvaluatedKey; the pages' keys too."""
    items, keys = [], []
    while True:
        page = table.query(**request)
        items += page["Items"]
        if "LastEvaluatedKey" not in page:
            return items, keys
        keys.append(page["LastEvaluatedKey"])
        request["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def test_create_and_describe_local_indexes(node, client):
    name = create_orders(client)
    table = client.describe_table(TableName=name)["Table"]
    indexes = {index["IndexName"]: index for index in table["LocalSecondaryIndexes"]}
    assert set(indexes) == {"by-total", "by-status"}
    assert indexes["by-total"]["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"},
                                                {"AttributeName": "total", "KeyType": "RANGE"}]
    assert indexes["by-status"]["Projection"] == {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["note"]}
    assert indexes["by-total"]["IndexArn"] == table["TableArn"] + "/index/by-total"
    resource(node).Table(name).put_item(Item={"pk": "c1", "sk": "o1", "total": 5, "status": "open"})
    described = client.describe_table(TableName=name)["Table"]["LocalSecondaryIndexes"]
    assert all(index["ItemCount"] == 1 for index in described)
    # The AWS CLI sees them too.
    code, listed, _ = aws(node, "describe-table", "--table-name", name)
    assert code == 0
    assert {index["IndexName"] for index in listed["Table"]["LocalSecondaryIndexes"]} == {"by-total", "by-status"}


def local_index(name, sort="total", projection=None):
    return {"IndexName": name,
            "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": sort, "KeyType": "RANGE"}],
            "Projection": projection or {"ProjectionType": "KEYS_ONLY"}}


@pytest.mark.parametrize("schema, definitions, indexes, message", [
    ([("pk", "HASH")], [("pk", "S"), ("total", "N")], [local_index("idx")],
     "Table KeySchema does not have a range key, which is required when specifying a LocalSecondaryIndex"),
    ([("pk", "HASH"), ("sk", "RANGE")], [("pk", "S"), ("sk", "S"), ("total", "N")],
     [local_index(f"idx{i}") for i in range(6)], "Number of LocalSecondaryIndexes exceeds per-table limit of 5"),
    ([("pk", "HASH"), ("sk", "RANGE")], [("pk", "S"), ("sk", "S"), ("total", "N")],
     [local_index("idx"), local_index("idx")], "Duplicate index name: idx"),
    ([("pk", "HASH"), ("sk", "RANGE")], [("pk", "S"), ("sk", "S")], [local_index("idx")],
     "Some index key attributes are not defined in AttributeDefinitions"),
    ([("pk", "HASH"), ("sk", "RANGE")], [("pk", "S"), ("sk", "S"), ("total", "N"), ("extra", "S")],
     [local_index("idx")], "Some AttributeDefinitions are not used"),
    ([("pk", "HASH"), ("sk", "RANGE")], [("pk", "S"), ("sk", "S"), ("total", "N")],
     [local_index("idx", projection={"ProjectionType": "ALL", "NonKeyAttributes": ["a"]})],
     "ProjectionType is ALL, but NonKeyAttributes is specified"),
    ([("pk", "HASH"), ("sk", "RANGE")], [("pk", "S"), ("sk", "S"), ("total", "N")],
     [{"IndexName": "idx", "KeySchema": [{"AttributeName": "total", "KeyType": "HASH"},
                                         {"AttributeName": "sk", "KeyType": "RANGE"}],
       "Projection": {"ProjectionType": "ALL"}}],
     "Index KeySchema does not have the same leading hash key as table KeySchema for index: idx"),
    ([("pk", "HASH"), ("sk", "RANGE")], [("pk", "S"), ("sk", "S"), ("total", "N")],
     [local_index("ab")], "Member must have length greater than or equal to 3"),
    ([("pk", "HASH"), ("sk", "RANGE")], [("pk", "S"), ("sk", "S"), ("total", "N")],
     [local_index("idx", projection={"ProjectionType": "INCLUDE", "NonKeyAttributes": [f"a{i}" for i in range(101)]})],
     "Number of projected attributes in all indexes exceeds limit of 100"),
])
def test_invalid_local_index_definitions_are_refused(node, schema, definitions, indexes, message):
    # Without boto3's own checks, so that the server's answer shows.
    client = node.client(config=botocore.config.Config(retries={"max_attempts": 1}, parameter_validation=False))
    code, text = error(
        client.create_table, TableName=f"bad-{uuid.uuid4().hex[:8]}", BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": a, "KeyType": k} for a, k in schema],
        AttributeDefinitions=[{"AttributeName": a, "AttributeType": t} for a, t in definitions],
        LocalSecondaryIndexes=indexes)
    assert code == "ValidationException" and message in text


def test_query_on_local_indexes_with_projections_and_pages(node, client):
    name = create_orders(client)
    table = resource(node).Table(name)
    with table.batch_writer() as batch:
        for n in range(40):
            item = {"pk": "c1", "sk": f"o{n:02}", "total": (n * 7) % 23, "note": f"n{n}", "secret": f"s{n}"}
            if n % 4 != 0:  # sparse: every fourth order has no status
                item["status"] = ["open", "paid", "shipped"][n % 3]
            batch.put_item(Item=item)
        batch.put_item(Item={"pk": "c2", "sk": "o1", "total": 1, "status": "open"})

    everything, pages = query_all(table, IndexName="by-total", KeyConditionExpression=Key("pk").eq("c1"), Limit=7)
    assert [(int(i["total"]), i["sk"]) for i in everything] == sorted((n * 7 % 23, f"o{n:02}") for n in range(40))
    assert all(set(key) == {"pk", "sk", "total"} for key in pages) and len(pages) >= 5
    assert everything[0]["secret"].startswith("s")  # ALL projection: the whole item

    backwards, _ = query_all(table, IndexName="by-total", ScanIndexForward=False,
                             KeyConditionExpression=Key("pk").eq("c1") & Key("total").between(3, 10))
    assert [int(i["total"]) for i in backwards] == sorted((t for t in (n * 7 % 23 for n in range(40)) if 3 <= t <= 10),
                                                        reverse=True)

    statuses, _ = query_all(table, IndexName="by-status", KeyConditionExpression=Key("pk").eq("c1"), Limit=4)
    assert len(statuses) == 30  # the orders without a status are not in the index
    assert [i["status"] for i in statuses] == sorted(i["status"] for i in statuses)
    assert all(set(i) == {"pk", "sk", "status", "note"} for i in statuses)  # what the index projects

    paid, _ = query_all(table, IndexName="by-status", KeyConditionExpression=Key("pk").eq("c1") & Key("status").begins_with("pa"))
    assert {i["status"] for i in paid} == {"paid"} and len(paid) == 10
    # More than the index projects: read from the table, as a local index allows.
    whole, _ = query_all(table, IndexName="by-status", Select="ALL_ATTRIBUTES", ConsistentRead=True,
                         KeyConditionExpression=Key("pk").eq("c1") & Key("status").eq("open"))
    assert len(whole) == 10 and all("secret" in i and "total" in i for i in whole)
    named, _ = query_all(table, IndexName="by-status", ProjectionExpression="sk, secret",
                         KeyConditionExpression=Key("pk").eq("c1") & Key("status").eq("open"))
    assert all(set(i) == {"sk", "secret"} for i in named)
    counted = table.query(IndexName="by-status", Select="COUNT", KeyConditionExpression=Key("pk").eq("c1"))
    assert counted["Count"] == 30

    scanned = []
    request = {"IndexName": "by-total", "Limit": 9}
    while True:
        page = table.scan(**request)
        scanned += page["Items"]
        if "LastEvaluatedKey" not in page:
            break
        request["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    assert len(scanned) == 41

    # A hostile starting key (a partition key past DynamoDB's 2048 bytes) is refused.
    code, _ = error(table.query, IndexName="by-total", KeyConditionExpression=Key("pk").eq("c1"),
                    ExclusiveStartKey={"pk": "x" * 5000, "sk": "o1", "total": 1})
    assert code == "ValidationException"
    code, _ = error(table.scan, IndexName="by-total", ExclusiveStartKey={"pk": "c1", "sk": "o1", "total": "1"})
    assert code == "ValidationException"
    code, message = error(table.query, IndexName="nope", KeyConditionExpression=Key("pk").eq("c1"))
    assert code == "ValidationException" and "does not have the specified index: nope" in message
    code, message = error(table.query, IndexName="by-total",
                          KeyConditionExpression=Key("pk").eq("c1") & Key("sk").eq("o1"))
    assert code == "ValidationException"


def test_every_write_path_keeps_the_indexes(node, client):
    name = create_orders(client)
    table = resource(node).Table(name)
    low = client
    table.put_item(Item={"pk": "c", "sk": "a", "total": 10, "status": "open", "note": "first"})
    table.update_item(Key={"pk": "c", "sk": "a"}, UpdateExpression="SET #t = :t, #s = :s",
                      ExpressionAttributeNames={"#t": "total", "#s": "status"},
                      ExpressionAttributeValues={":t": 3, ":s": "paid"})
    assert [int(i["total"]) for i in table.query(IndexName="by-total", KeyConditionExpression=Key("pk").eq("c"))["Items"]] == [3]
    assert [i["status"] for i in table.query(IndexName="by-status", KeyConditionExpression=Key("pk").eq("c"))["Items"]] == ["paid"]
    table.update_item(Key={"pk": "c", "sk": "a"}, UpdateExpression="REMOVE #s", ExpressionAttributeNames={"#s": "status"})
    assert table.query(IndexName="by-status", KeyConditionExpression=Key("pk").eq("c"))["Items"] == []

    low.transact_write_items(TransactItems=[
        {"Put": {"TableName": name, "Item": {"pk": {"S": "c"}, "sk": {"S": "b"}, "total": {"N": "1"}, "status": {"S": "open"}}}},
        {"Delete": {"TableName": name, "Key": {"pk": {"S": "c"}, "sk": {"S": "a"}}}},
    ])
    assert [i["sk"] for i in table.query(IndexName="by-total", KeyConditionExpression=Key("pk").eq("c"))["Items"]] == ["b"]
    low.batch_write_item(RequestItems={name: [
        {"PutRequest": {"Item": {"pk": {"S": "c"}, "sk": {"S": "d"}, "total": {"N": "0"}}}},
        {"DeleteRequest": {"Key": {"pk": {"S": "c"}, "sk": {"S": "b"}}}},
    ]})
    assert [i["sk"] for i in table.query(IndexName="by-total", KeyConditionExpression=Key("pk").eq("c"))["Items"]] == ["d"]
    assert table.query(IndexName="by-status", KeyConditionExpression=Key("pk").eq("c"))["Items"] == []

    # An index key of the wrong type, or empty, is refused on every path; nothing is written.
    code, message = error(table.put_item, Item={"pk": "c", "sk": "e", "total": "ten"})
    assert code == "ValidationException" and "Type mismatch for Index Key total Expected: N Actual: S IndexName: by-total" in message
    code, message = error(table.put_item, Item={"pk": "c", "sk": "e", "status": ""})
    assert code == "ValidationException" and "IndexName: by-status" in message
    code, _ = error(table.update_item, Key={"pk": "c", "sk": "d"}, UpdateExpression="SET #t = :t",
                    ExpressionAttributeNames={"#t": "total"}, ExpressionAttributeValues={":t": "x"})
    assert code == "ValidationException"
    code, _ = error(low.batch_write_item, RequestItems={name: [
        {"PutRequest": {"Item": {"pk": {"S": "c"}, "sk": {"S": "f"}, "total": {"S": "x"}}}}]})
    assert code == "ValidationException"
    code, _ = error(low.transact_write_items, TransactItems=[
        {"Put": {"TableName": name, "Item": {"pk": {"S": "c"}, "sk": {"S": "g"}, "total": {"N": "2"}}}},
        {"Put": {"TableName": name, "Item": {"pk": {"S": "c"}, "sk": {"S": "h"}, "status": {"N": "2"}}}},
    ])
    assert code in ("ValidationException", "TransactionCanceledException")
    assert [i["sk"] for i in table.query(KeyConditionExpression=Key("pk").eq("c"))["Items"]] == ["d"]
    assert int(table.get_item(Key={"pk": "c", "sk": "d"})["Item"]["total"]) == 0


def test_large_items_projected_whole_are_read_back_whole(node, client):
    """Three 390 KB copies do not fit one log record with the item: the entries refer to the
    table's item, and the Query reads it."""
    name = f"big-{uuid.uuid4().hex[:8]}"
    client.create_table(
        TableName=name, BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": a, "AttributeType": t} for a, t in
                              [("pk", "S"), ("sk", "S"), ("a", "N"), ("b", "N"), ("c", "N")]],
        LocalSecondaryIndexes=[local_index(f"by-{x}", sort=x, projection={"ProjectionType": "ALL"}) for x in "abc"])
    table = resource(node).Table(name)
    blob = "x" * 390_000
    for n in range(3):
        table.put_item(Item={"pk": "p", "sk": f"s{n}", "a": n, "b": -n, "c": n % 2, "blob": blob})
    for index, order in [("by-a", ["s0", "s1", "s2"]), ("by-b", ["s2", "s1", "s0"]), ("by-c", ["s0", "s2", "s1"])]:
        items, _ = query_all(table, IndexName=index, KeyConditionExpression=Key("pk").eq("p"))
        assert [i["sk"] for i in items] == order
        assert all(i["blob"] == blob for i in items)


def check_against_model(table, model):
    """Every partition key's items through each index, in index order, as the model says."""
    for pk in {pk for pk, _ in model}:
        items = {sk: item for (p, sk), item in model.items() if p == pk}
        got, _ = query_all(table, IndexName="by-total", KeyConditionExpression=Key("pk").eq(pk), ConsistentRead=True)
        expected = sorted((int(i["total"]), sk) for sk, i in items.items() if "total" in i)
        assert [(int(i["total"]), i["sk"]) for i in got] == expected
        assert all(i == items[i["sk"]] for i in got)
        got, _ = query_all(table, IndexName="by-status", KeyConditionExpression=Key("pk").eq(pk))
        expected = sorted((i["status"], sk) for sk, i in items.items() if "status" in i)
        assert [(i["status"], i["sk"]) for i in got] == expected
        assert all(i.get("note") == items[i["sk"]].get("note") for i in got)


def random_writes(table, model, rng, count):
    for _ in range(count):
        pk, sk = f"p{rng.randrange(4)}", f"s{rng.randrange(30)}"
        roll = rng.random()
        if roll < 0.5:
            item = {"pk": pk, "sk": sk, "note": f"n{rng.randrange(1000)}"}
            if rng.random() < 0.8:
                item["total"] = rng.randrange(-20, 20)
            if rng.random() < 0.6:
                item["status"] = rng.choice(["a", "ab", "b", "a\u00e9", "z"])
            table.put_item(Item=item)
            model[(pk, sk)] = item
        elif roll < 0.8:
            total = rng.randrange(-20, 20)
            table.update_item(Key={"pk": pk, "sk": sk}, UpdateExpression="SET #t = :t REMOVE #s",
                              ExpressionAttributeNames={"#t": "total", "#s": "status"},
                              ExpressionAttributeValues={":t": total})
            item = dict(model.get((pk, sk), {"pk": pk, "sk": sk}))
            item["total"] = total
            item.pop("status", None)
            model[(pk, sk)] = item
        else:
            table.delete_item(Key={"pk": pk, "sk": sk})
            model.pop((pk, sk), None)


def test_indexes_match_a_model_after_random_writes(node, client):
    table = resource(node).Table(create_orders(client))
    model, rng = {}, random.Random(2026)
    random_writes(table, model, rng, 2000)
    check_against_model(table, model)


def test_indexes_survive_kill_9():
    node = Granary().wait_ready()
    try:
        client = node.client()
        name = create_orders(client, "orders")
        model, rng = {}, random.Random(7)
        random_writes(resource(node).Table(name), model, rng, 300)
        node.kill()
        node = Granary(data_dir=node.data_dir).wait_ready()
        check_against_model(resource(node).Table(name), model)
        random_writes(resource(node).Table(name), model, rng, 100)
        check_against_model(resource(node).Table(name), model)
        node.client().delete_table(TableName=name)
        create_orders(node.client(), "orders")  # the same name again: the old entries are gone
        assert resource(node).Table(name).query(IndexName="by-total", KeyConditionExpression=Key("pk").eq("p1"))["Items"] == []
    finally:
        node.kill()


def test_writes_report_their_item_collection(node, client):
    name = create_orders(client)
    answer = client.put_item(TableName=name, Item={"pk": {"S": "c"}, "sk": {"S": "a"}, "total": {"N": "1"}},
                             ReturnItemCollectionMetrics="SIZE")
    assert answer["ItemCollectionMetrics"] == {"ItemCollectionKey": {"pk": {"S": "c"}}, "SizeEstimateRangeGB": [0.0, 1.0]}
    answer = client.update_item(TableName=name, Key={"pk": {"S": "c"}, "sk": {"S": "a"}},
                                UpdateExpression="SET note = :n", ExpressionAttributeValues={":n": {"S": "x"}},
                                ReturnItemCollectionMetrics="SIZE")
    assert answer["ItemCollectionMetrics"]["ItemCollectionKey"] == {"pk": {"S": "c"}}
    answer = client.batch_write_item(RequestItems={name: [{"PutRequest": {"Item": {"pk": {"S": "d"}, "sk": {"S": "a"}}}}]},
                                     ReturnItemCollectionMetrics="SIZE")
    assert answer["ItemCollectionMetrics"][name][0]["ItemCollectionKey"] == {"pk": {"S": "d"}}
    assert "ItemCollectionMetrics" not in client.put_item(TableName=name, Item={"pk": {"S": "c"}, "sk": {"S": "b"}})


def test_fetching_from_the_table_is_charged_to_the_table(node, client):
    """A Query of a local index that asks for attributes it does not project reads each
    item from the table: the index is charged its entries, the table each item read."""
    name = create_orders(client)
    big = "x" * 5000  # two read units whole, a fraction of one in the index
    for n in range(3):
        client.put_item(TableName=name, Item={"pk": {"S": "c"}, "sk": {"S": f"o{n}"}, "status": {"S": "open"},
                                              "note": {"S": "n"}, "blob": {"S": big}})
    projected = client.query(TableName=name, IndexName="by-status", ConsistentRead=True,
                             KeyConditionExpression="pk = :c", ExpressionAttributeValues={":c": {"S": "c"}},
                             ReturnConsumedCapacity="INDEXES")["ConsumedCapacity"]
    assert projected["Table"] == {"CapacityUnits": 0.0}
    assert projected["LocalSecondaryIndexes"] == {"by-status": {"CapacityUnits": 1.0}}
    whole = client.query(TableName=name, IndexName="by-status", ConsistentRead=True, Select="ALL_ATTRIBUTES",
                         KeyConditionExpression="pk = :c", ExpressionAttributeValues={":c": {"S": "c"}},
                         ReturnConsumedCapacity="INDEXES")
    assert [len(i["blob"]["S"]) for i in whole["Items"]] == [5000] * 3
    assert whole["ConsumedCapacity"]["Table"] == {"CapacityUnits": 6.0}
    assert whole["ConsumedCapacity"]["CapacityUnits"] == 7.0
