"""Global secondary indexes through boto3 against a real `granary serve`: definitions and
their errors, entries kept from the table's writes (eventually: `GET /indexes` says when
every change has arrived), Query and Scan on an index, what a global index refuses, a
randomized comparison with a model of the table, and kill -9 during writes."""
import random
import time
import uuid

import boto3
import botocore.config
import pytest
import requests
from boto3.dynamodb.conditions import Key

from granary_process import Granary, error


def resource(node):
    return boto3.resource("dynamodb", endpoint_url=node.endpoint, region_name="us-east-1",
                          aws_access_key_id="test", aws_secret_access_key="test")


def wait_for_indexes(node, timeout=30.0):
    """Until every change has reached the global indexes."""
    deadline = time.monotonic() + timeout
    while True:
        status = requests.get(node.endpoint + "/indexes", timeout=5).json()
        if status["pendingItems"] == 0 and status["unansweredPartitions"] == 0:
            return
        assert time.monotonic() < deadline, f"global indexes still behind: {status}"
        time.sleep(0.05)


def create_users(client, name=None):
    """Users by id, with a global index by email (keys only) and one by team and joined
    date (everything projected)."""
    name = name or f"users-{uuid.uuid4().hex[:10]}"
    client.create_table(
        TableName=name, BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": a, "AttributeType": t}
                              for a, t in [("id", "S"), ("email", "S"), ("team", "S"), ("joined", "N")]],
        GlobalSecondaryIndexes=[
            {"IndexName": "by-email", "KeySchema": [{"AttributeName": "email", "KeyType": "HASH"}],
             "Projection": {"ProjectionType": "KEYS_ONLY"}},
            {"IndexName": "by-team",
             "KeySchema": [{"AttributeName": "team", "KeyType": "HASH"}, {"AttributeName": "joined", "KeyType": "RANGE"}],
             "Projection": {"ProjectionType": "ALL"}},
        ])
    return name


def query_all(table, **request):
    items = []
    while True:
        page = table.query(**request)
        items += page["Items"]
        if "LastEvaluatedKey" not in page:
            return items
        request["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def test_create_and_describe_global_indexes(node, client):
    name = create_users(client)
    described = client.describe_table(TableName=name)["Table"]["GlobalSecondaryIndexes"]
    indexes = {index["IndexName"]: index for index in described}
    assert set(indexes) == {"by-email", "by-team"}
    assert indexes["by-email"]["KeySchema"] == [{"AttributeName": "email", "KeyType": "HASH"}]
    assert indexes["by-team"]["IndexStatus"] == "ACTIVE"
    assert indexes["by-team"]["IndexArn"].endswith(f"table/{name}/index/by-team")


@pytest.mark.parametrize("billing, indexes, message", [
    ("PAY_PER_REQUEST", [{"IndexName": "idx", "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}],
                          "Projection": {"ProjectionType": "ALL"},
                          "ProvisionedThroughput": {"ReadCapacityUnits": 1, "WriteCapacityUnits": 1}}],
     "ProvisionedThroughput should not be specified for index: idx"),
    ("PROVISIONED", [{"IndexName": "idx", "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}],
                      "Projection": {"ProjectionType": "ALL"}}],
     "ProvisionedThroughput must be specified for index: idx"),
    ("PAY_PER_REQUEST", [{"IndexName": f"idx{i}", "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}],
                          "Projection": {"ProjectionType": "ALL"}} for i in range(21)],
     "GlobalSecondaryIndex count exceeds the per-table limit of 20"),
    ("PAY_PER_REQUEST", [{"IndexName": "idx", "KeySchema": [{"AttributeName": "nope", "KeyType": "HASH"}],
                          "Projection": {"ProjectionType": "ALL"}}],
     "Some index key attributes are not defined in AttributeDefinitions"),
    ("PAY_PER_REQUEST", [], "List of GlobalSecondaryIndexes is empty"),
])
def test_invalid_global_index_definitions_are_refused(node, billing, indexes, message):
    client = node.client(config=botocore.config.Config(retries={"max_attempts": 1}, parameter_validation=False))
    request = dict(TableName=f"bad-{uuid.uuid4().hex[:8]}", BillingMode=billing,
                   KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                   AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"},
                                         {"AttributeName": "g", "AttributeType": "S"}],
                   GlobalSecondaryIndexes=indexes)
    if billing == "PROVISIONED":
        request["ProvisionedThroughput"] = {"ReadCapacityUnits": 1, "WriteCapacityUnits": 1}
    code, text = error(client.create_table, **request)
    assert code == "ValidationException" and message in text


def test_query_and_scan_global_indexes(node, client):
    name = create_users(client)
    table = resource(node).Table(name)
    with table.batch_writer() as batch:
        for n in range(60):
            item = {"id": f"u{n:02}", "email": f"user{n}@example.com", "joined": 2000 + n % 17, "bio": f"b{n}"}
            if n % 5 != 0:
                item["team"] = ["red", "blue", "green"][n % 3]
            batch.put_item(Item=item)
    wait_for_indexes(node)

    found = table.query(IndexName="by-email", KeyConditionExpression=Key("email").eq("user7@example.com"))["Items"]
    assert found == [{"id": "u07", "email": "user7@example.com"}]  # keys only
    red = query_all(table, IndexName="by-team", KeyConditionExpression=Key("team").eq("red"), Limit=5)
    expected = sorted((2000 + n % 17, f"u{n:02}") for n in range(60) if n % 5 != 0 and n % 3 == 0)
    assert [(int(i["joined"]), i["id"]) for i in red] == expected
    assert all(i["bio"].startswith("b") for i in red)  # ALL projection
    recent = query_all(table, IndexName="by-team", ScanIndexForward=False,
                       KeyConditionExpression=Key("team").eq("blue") & Key("joined").gte(2010))
    assert [int(i["joined"]) for i in recent] == sorted(
        (2000 + n % 17 for n in range(60) if n % 5 != 0 and n % 3 == 1 and n % 17 >= 10), reverse=True)
    scanned, request = [], {"IndexName": "by-team", "Limit": 7}
    while True:
        page = table.scan(**request)
        scanned += page["Items"]
        if "LastEvaluatedKey" not in page:
            break
        assert set(page["LastEvaluatedKey"]) == {"id", "team", "joined"}
        request["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    assert len(scanned) == 48  # every fourth of five users has a team

    # Moves and deletes reach the indexes.
    table.update_item(Key={"id": "u01"}, UpdateExpression="SET team = :t, email = :e",
                      ExpressionAttributeValues={":t": "green", ":e": "new@example.com"})
    table.delete_item(Key={"id": "u02"})
    wait_for_indexes(node)
    assert table.query(IndexName="by-email", KeyConditionExpression=Key("email").eq("user1@example.com"))["Items"] == []
    assert table.query(IndexName="by-email", KeyConditionExpression=Key("email").eq("new@example.com"))["Count"] == 1
    assert "u01" in [i["id"] for i in query_all(table, IndexName="by-team", KeyConditionExpression=Key("team").eq("green"))]
    assert "u02" not in [i["id"] for i in query_all(table, IndexName="by-team", KeyConditionExpression=Key("team").eq("blue"))]

    # What a global index refuses.
    for request, message in [
        (dict(ConsistentRead=True), "Consistent reads are not supported on global secondary indexes"),
        (dict(Select="ALL_ATTRIBUTES"), "ALL_ATTRIBUTES is not supported for global secondary index by-email"),
        (dict(ProjectionExpression="bio"), "does not project"),
    ]:
        code, text = error(table.query, IndexName="by-email", KeyConditionExpression=Key("email").eq("x"), **request)
        assert code == "ValidationException" and message in text, text
    code, text = error(table.put_item, Item={"id": "bad", "joined": "soon", "team": "red"})
    assert code == "ValidationException" and "IndexName: by-team" in text
    code, _ = error(client.transact_write_items, TransactItems=[
        {"Put": {"TableName": name, "Item": {"id": {"S": "t1"}, "email": {"S": ""}}}}])
    assert code in ("ValidationException", "TransactionCanceledException")


def random_writes(table, model, rng, count):
    for _ in range(count):
        key = f"u{rng.randrange(60)}"
        roll = rng.random()
        if roll < 0.55:
            item = {"id": key, "bio": f"b{rng.randrange(1000)}"}
            if rng.random() < 0.8:
                item["email"] = f"e{rng.randrange(40)}"
            if rng.random() < 0.7:
                item["team"] = rng.choice(["red", "blue", "green", "gr\u00e9y"])
                item["joined"] = rng.randrange(-5, 5)
            table.put_item(Item=item)
            model[key] = item
        elif roll < 0.8:
            team = rng.choice(["red", "blue"])
            table.update_item(Key={"id": key}, UpdateExpression="SET team = :t, joined = :j REMOVE email",
                              ExpressionAttributeValues={":t": team, ":j": rng.randrange(-5, 5)})
            item = dict(model.get(key, {"id": key}))
            item.update(team=team)
            item["joined"] = table.get_item(Key={"id": key}, ConsistentRead=True)["Item"]["joined"]
            item.pop("email", None)
            model[key] = item
        else:
            table.delete_item(Key={"id": key})
            model.pop(key, None)


def check_against_model(node, table, model):
    wait_for_indexes(node)
    for email in {f"e{n}" for n in range(40)}:
        got = query_all(table, IndexName="by-email", KeyConditionExpression=Key("email").eq(email))
        assert sorted(i["id"] for i in got) == sorted(k for k, i in model.items() if i.get("email") == email)
    for team in ["red", "blue", "green", "gr\u00e9y"]:
        got = query_all(table, IndexName="by-team", KeyConditionExpression=Key("team").eq(team))
        expected = sorted((int(i["joined"]), k) for k, i in model.items() if i.get("team") == team)
        assert [(int(i["joined"]), i["id"]) for i in got] == expected
        assert all(i == model[i["id"]] for i in got)


def test_global_indexes_match_a_model_after_random_writes(node, client):
    table = resource(node).Table(create_users(client))
    model, rng = {}, random.Random(2027)
    random_writes(table, model, rng, 2000)
    check_against_model(node, table, model)


def test_global_index_changes_survive_kill_9():
    node = Granary().wait_ready()
    try:
        name = create_users(node.client(), "users")
        model, rng = {}, random.Random(11)
        random_writes(resource(node).Table(name), model, rng, 400)
        node.kill()  # changes not yet shipped are in the outbox, on disk
        node = Granary(data_dir=node.data_dir).wait_ready()
        check_against_model(node, resource(node).Table(name), model)
    finally:
        node.kill()


def wait_for_active(client, name, index, timeout=60.0):
    deadline = time.monotonic() + timeout
    while True:
        described = client.describe_table(TableName=name)["Table"].get("GlobalSecondaryIndexes", [])
        status = {i["IndexName"]: i["IndexStatus"] for i in described}.get(index)
        if status == "ACTIVE":
            return
        assert status == "CREATING" and time.monotonic() < deadline, f"{index}: {status}"
        time.sleep(0.1)


def create_plain(client, name):
    client.create_table(TableName=name, BillingMode="PAY_PER_REQUEST",
                        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}])


def add_team_index(client, name):
    return client.update_table(
        TableName=name,
        AttributeDefinitions=[{"AttributeName": "team", "AttributeType": "S"}, {"AttributeName": "joined", "AttributeType": "N"}],
        GlobalSecondaryIndexUpdates=[{"Create": {
            "IndexName": "by-team", "Projection": {"ProjectionType": "ALL"},
            "KeySchema": [{"AttributeName": "team", "KeyType": "HASH"}, {"AttributeName": "joined", "KeyType": "RANGE"}]}}])


def check_team_index(table, model):
    for team in ["red", "blue", "green", "gr\u00e9y"]:
        got = query_all(table, IndexName="by-team", KeyConditionExpression=Key("team").eq(team))
        expected = sorted((int(i["joined"]), k) for k, i in model.items()
                          if isinstance(i.get("team"), str) and i.get("team") == team and "joined" in i)
        assert [(int(i["joined"]), i["id"]) for i in got] == expected


def test_a_global_index_built_online_while_writes_go_on(node, client):
    name = f"online-{uuid.uuid4().hex[:8]}"
    create_plain(client, name)
    table = resource(node).Table(name)
    model, rng = {}, random.Random(5)
    with table.batch_writer() as batch:
        for n in range(3000):
            item = {"id": f"u{n}", "team": rng.choice(["red", "blue", "green"]), "joined": n % 50}
            if n % 97 == 0:
                item["team"] = 7  # an index key of another type: skipped by the build, not a failure
            batch.put_item(Item=item)
            model[item["id"]] = item
    answer = add_team_index(client, name)
    created = {i["IndexName"]: i for i in answer["TableDescription"]["GlobalSecondaryIndexes"]}["by-team"]
    assert created["IndexStatus"] == "CREATING" and created["Backfilling"] is True
    random_writes(table, model, rng, 300)  # writes meanwhile reach the new index too
    wait_for_active(client, name, "by-team")
    wait_for_indexes(node)
    check_team_index(table, model)
    # Items 0, 97, ... have a team of another type: left out and counted (u0 may have been
    # rewritten by the random writes before the build reached it).
    status = requests.get(node.endpoint + "/indexes", timeout=5).json()
    built = [i for i in status["indexes"] if i["table"] == name and i["index"] == "by-team"]
    assert built and built[0]["status"] == "ACTIVE" and built[0]["keyViolations"] in (30, 31), built

    client.update_table(TableName=name, GlobalSecondaryIndexUpdates=[{"Delete": {"IndexName": "by-team"}}])
    assert "GlobalSecondaryIndexes" not in client.describe_table(TableName=name)["Table"]
    code, text = error(table.query, IndexName="by-team", KeyConditionExpression=Key("team").eq("red"))
    assert code == "ValidationException" and "does not have the specified index" in text


def test_a_build_stopped_by_kill_9_resumes():
    node = Granary().wait_ready()
    try:
        client = node.client()
        create_plain(client, "online")
        table = resource(node).Table("online")
        model = {}
        with table.batch_writer() as batch:
            for n in range(5000):
                item = {"id": f"u{n}", "team": ["red", "blue"][n % 2], "joined": n % 100}
                batch.put_item(Item=item)
                model[item["id"]] = item
        add_team_index(client, "online")
        node.kill()  # most likely during the backfill
        node = Granary(data_dir=node.data_dir).wait_ready()
        wait_for_active(node.client(), "online", "by-team")
        wait_for_indexes(node)
        check_team_index(resource(node).Table("online"), model)
    finally:
        node.kill()


def test_consumed_capacity_itemizes_index_writes_and_reads(node, client):
    """ReturnConsumedCapacity INDEXES: a write charges each index whose entry it puts or
    deletes (two writes when the index key moves, none when the entry stays as it was);
    a read of an index charges the index; TOTAL is the sum."""
    name = f"capacity-{uuid.uuid4().hex[:8]}"
    client.create_table(
        TableName=name, BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}, {"AttributeName": "at", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": a, "AttributeType": t}
                              for a, t in [("id", "S"), ("at", "N"), ("email", "S"), ("rank", "N")]],
        LocalSecondaryIndexes=[{"IndexName": "by-rank", "Projection": {"ProjectionType": "ALL"},
                                "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"},
                                              {"AttributeName": "rank", "KeyType": "RANGE"}]}],
        GlobalSecondaryIndexes=[{"IndexName": "by-email", "Projection": {"ProjectionType": "KEYS_ONLY"},
                                 "KeySchema": [{"AttributeName": "email", "KeyType": "HASH"}]}])

    def put(item, mode="INDEXES"):
        return client.put_item(TableName=name, Item=item, ReturnConsumedCapacity=mode)["ConsumedCapacity"]

    big = "x" * 1500  # two write units wherever it is copied whole
    first = put({"id": {"S": "a"}, "at": {"N": "1"}, "email": {"S": "a@x"}, "rank": {"N": "3"}, "bio": {"S": big}})
    assert first["Table"] == {"CapacityUnits": 2.0}
    assert first["LocalSecondaryIndexes"] == {"by-rank": {"CapacityUnits": 2.0}}
    assert first["GlobalSecondaryIndexes"] == {"by-email": {"CapacityUnits": 1.0}}
    assert first["CapacityUnits"] == 5.0

    # The email moves: the global entry is deleted and put; rank stays, the local entry changes.
    moved = client.update_item(TableName=name, Key={"id": {"S": "a"}, "at": {"N": "1"}},
                               UpdateExpression="SET email = :e", ExpressionAttributeValues={":e": {"S": "b@x"}},
                               ReturnConsumedCapacity="INDEXES")["ConsumedCapacity"]
    assert moved["GlobalSecondaryIndexes"] == {"by-email": {"CapacityUnits": 2.0}}
    assert moved["LocalSecondaryIndexes"] == {"by-rank": {"CapacityUnits": 2.0}}

    # Only the bio changes: the keys-only global entry is left as it was.
    same = client.update_item(TableName=name, Key={"id": {"S": "a"}, "at": {"N": "1"}},
                              UpdateExpression="SET bio = :b", ExpressionAttributeValues={":b": {"S": "short"}},
                              ReturnConsumedCapacity="INDEXES")["ConsumedCapacity"]
    assert "GlobalSecondaryIndexes" not in same and same["LocalSecondaryIndexes"] == {"by-rank": {"CapacityUnits": 1.0}}

    # An item outside both indexes charges the table alone; TOTAL gives the sum only.
    alone = put({"id": {"S": "b"}, "at": {"N": "1"}})
    assert alone == {"TableName": name, "CapacityUnits": 1.0, "Table": {"CapacityUnits": 1.0}}
    total = put({"id": {"S": "c"}, "at": {"N": "1"}, "email": {"S": "c@x"}}, mode="TOTAL")
    assert total == {"TableName": name, "CapacityUnits": 2.0}

    deleted = client.delete_item(TableName=name, Key={"id": {"S": "a"}, "at": {"N": "1"}},
                                 ReturnConsumedCapacity="INDEXES")["ConsumedCapacity"]
    assert deleted["GlobalSecondaryIndexes"] == {"by-email": {"CapacityUnits": 1.0}}
    assert deleted["LocalSecondaryIndexes"] == {"by-rank": {"CapacityUnits": 1.0}}

    batch = client.batch_write_item(ReturnConsumedCapacity="INDEXES", RequestItems={name: [
        {"PutRequest": {"Item": {"id": {"S": f"d{n}"}, "at": {"N": "1"}, "email": {"S": f"d{n}@x"}}}}
        for n in range(3)]})["ConsumedCapacity"]
    assert batch == [{"TableName": name, "CapacityUnits": 6.0, "Table": {"CapacityUnits": 3.0},
                      "GlobalSecondaryIndexes": {"by-email": {"CapacityUnits": 3.0}}}]
    transaction = client.transact_write_items(ReturnConsumedCapacity="INDEXES", TransactItems=[
        {"Put": {"TableName": name, "Item": {"id": {"S": "e"}, "at": {"N": "1"}, "email": {"S": "e@x"}}}}])
    assert transaction["ConsumedCapacity"][0]["GlobalSecondaryIndexes"] == {"by-email": {"CapacityUnits": 2.0}}

    wait_for_indexes(node)
    read = client.query(TableName=name, IndexName="by-email", KeyConditionExpression="email = :e",
                        ExpressionAttributeValues={":e": {"S": "c@x"}}, ReturnConsumedCapacity="INDEXES")
    assert read["Count"] == 1
    assert read["ConsumedCapacity"] == {"TableName": name, "CapacityUnits": 0.5, "Table": {"CapacityUnits": 0.0},
                                        "GlobalSecondaryIndexes": {"by-email": {"CapacityUnits": 0.5}}}
    scanned = client.scan(TableName=name, IndexName="by-rank", ConsistentRead=True,
                          ReturnConsumedCapacity="INDEXES")["ConsumedCapacity"]
    assert scanned["LocalSecondaryIndexes"] == {"by-rank": {"CapacityUnits": 1.0}}
