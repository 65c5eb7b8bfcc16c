"""Global secondary indexes with multi-attribute keys (up to four partition key and four
sort key attributes) through boto3 against a real `granary serve`: definitions and their
errors, every query form DynamoDB allows against a model of the table (order, pages, both
directions), the forms it refuses, sparse items, wrongly typed key attributes refused on
every write path, an index added online, and the definitions kept across kill -9."""
import random
import uuid

import pytest
from boto3.dynamodb.conditions import Attr, Key

from granary_process import Granary, error
from test_api_global_indexes import query_all, resource, wait_for_active, wait_for_indexes

TOURNAMENTS = ["WINTER", "SPRING"]
REGIONS = ["NA", "EU", "AP"]
BRACKETS = ["lower", "upper", "final", "up"]

MATCH_INDEX = {
    "IndexName": "by-bracket",
    "KeySchema": [{"AttributeName": "tournament", "KeyType": "HASH"},
                  {"AttributeName": "region", "KeyType": "HASH"},
                  {"AttributeName": "round", "KeyType": "RANGE"},
                  {"AttributeName": "bracket", "KeyType": "RANGE"}],
    "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["score"]},
}


def create_matches(client, indexes=(MATCH_INDEX,)):
    name = f"matches-{uuid.uuid4().hex[:8]}"
    client.create_table(
        TableName=name, BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "matchId", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": a, "AttributeType": t} for a, t in
                              [("matchId", "S"), ("tournament", "S"), ("region", "S"), ("round", "N"),
                               ("bracket", "S")]],
        GlobalSecondaryIndexes=list(indexes))
    return name


def random_match(rng, n):
    item = {"matchId": f"m{n:05d}", "tournament": rng.choice(TOURNAMENTS), "region": rng.choice(REGIONS),
            "round": rng.randint(1, 4), "bracket": rng.choice(BRACKETS), "score": rng.randint(0, 99),
            "notes": "x" * rng.randint(0, 20)}
    if rng.random() < 0.1:
        del item[rng.choice(["tournament", "region", "round", "bracket"])]  # not in the index
    return item


def expected(model, tournament, region, keep=lambda item: True, forward=True):
    """The model's answer: the partition's items in (round, bracket) order, ties by the
    table's key, with what the index projects."""
    keys = ("matchId", "tournament", "region", "round", "bracket", "score")
    found = [item for item in model.values()
             if all(k in item for k in keys[1:5]) and item["tournament"] == tournament
             and item["region"] == region and keep(item)]
    found.sort(key=lambda i: (i["round"], i["bracket"].encode(), i["matchId"].encode()), reverse=not forward)
    return [{k: i[k] for k in keys if k in i} for i in found]


def plain(items):
    return [{k: (int(v) if not isinstance(v, str) else v) for k, v in item.items()} for item in items]


QUERIES = [
    (lambda t, r: Key("tournament").eq(t) & Key("region").eq(r), lambda i: True),
    (lambda t, r: Key("tournament").eq(t) & Key("region").eq(r) & Key("round").eq(2), lambda i: i["round"] == 2),
    (lambda t, r: Key("tournament").eq(t) & Key("region").eq(r) & Key("round").between(2, 3),
     lambda i: 2 <= i["round"] <= 3),
    (lambda t, r: Key("tournament").eq(t) & Key("region").eq(r) & Key("round").lt(3), lambda i: i["round"] < 3),
    (lambda t, r: Key("tournament").eq(t) & Key("region").eq(r) & Key("round").eq(3) & Key("bracket").eq("upper"),
     lambda i: i["round"] == 3 and i["bracket"] == "upper"),
    (lambda t, r: Key("tournament").eq(t) & Key("region").eq(r) & Key("round").eq(1)
     & Key("bracket").begins_with("up"), lambda i: i["round"] == 1 and i["bracket"].startswith("up")),
    (lambda t, r: Key("tournament").eq(t) & Key("region").eq(r) & Key("round").eq(4) & Key("bracket").gt("lower"),
     lambda i: i["round"] == 4 and i["bracket"] > "lower"),
    (lambda t, r: Key("tournament").eq(t) & Key("region").eq(r) & Key("round").eq(2) & Key("bracket").lte("lower"),
     lambda i: i["round"] == 2 and i["bracket"] <= "lower"),
]


@pytest.fixture(scope="module")
def matches(node):
    """A table of 600 matches, some without every index key attribute, and its model."""
    client = node.client()
    name = create_matches(client)
    table = resource(node).Table(name)
    rng, model = random.Random(1125), {}
    with table.batch_writer() as batch:
        for n in range(600):
            item = random_match(rng, n)
            batch.put_item(Item=item)
            model[item["matchId"]] = item
    wait_for_indexes(node)
    return table, model


def test_describe_shows_the_key_schema_in_order(node, client, matches):
    table, _ = matches
    index = client.describe_table(TableName=table.name)["Table"]["GlobalSecondaryIndexes"][0]
    assert index["KeySchema"] == MATCH_INDEX["KeySchema"]
    assert index["IndexStatus"] == "ACTIVE"


@pytest.mark.parametrize("query", range(len(QUERIES)))
@pytest.mark.parametrize("forward", [True, False])
def test_every_query_form_matches_the_model(matches, query, forward):
    table, model = matches
    condition, keep = QUERIES[query]
    for tournament in TOURNAMENTS:
        for region in REGIONS + ["SA"]:
            got = query_all(table, IndexName="by-bracket", KeyConditionExpression=condition(tournament, region),
                            ScanIndexForward=forward, Limit=7)
            assert plain(got) == expected(model, tournament, region, keep, forward), (query, tournament, region)


def test_items_without_every_key_attribute_are_not_indexed(matches):
    table, model = matches
    scanned = {i["matchId"] for i in table.scan(IndexName="by-bracket")["Items"]}
    indexed = {k for k, i in model.items() if all(a in i for a in ("tournament", "region", "round", "bracket"))}
    assert scanned == indexed and len(indexed) < len(model)


def test_a_parallel_scan_of_the_index_sees_each_entry_once(matches):
    table, model = matches
    seen = []
    for segment in range(4):
        request = {"IndexName": "by-bracket", "Segment": segment, "TotalSegments": 4, "Limit": 50}
        while True:
            page = table.scan(**request)
            seen += [i["matchId"] for i in page["Items"]]
            if "LastEvaluatedKey" not in page:
                break
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    indexed = {k for k, i in model.items() if all(a in i for a in ("tournament", "region", "round", "bracket"))}
    assert sorted(seen) == sorted(indexed)


def test_a_filter_on_a_projected_attribute_and_a_count(matches):
    table, model = matches
    got = query_all(table, IndexName="by-bracket", FilterExpression=Attr("score").gte(50),
                    KeyConditionExpression=Key("tournament").eq("WINTER") & Key("region").eq("EU"))
    assert plain(got) == expected(model, "WINTER", "EU", lambda i: i["score"] >= 50)
    count = table.query(IndexName="by-bracket", Select="COUNT",
                        KeyConditionExpression=Key("tournament").eq("SPRING") & Key("region").eq("NA"))["Count"]
    assert count == len(expected(model, "SPRING", "NA"))


@pytest.mark.parametrize("condition, message", [
    (Key("tournament").eq("WINTER"), "Query condition missed key schema element: region"),
    (Key("tournament").eq("WINTER") & Key("region").gt("EU"), "Query key condition not supported"),
    (Key("tournament").eq("WINTER") & Key("region").eq("EU") & Key("bracket").eq("upper"),
     "Query condition missed key schema element: round"),
    (Key("tournament").eq("WINTER") & Key("region").eq("EU") & Key("round").gt(1) & Key("bracket").eq("upper"),
     "sort key attribute round is compared with other than ="),
    (Key("tournament").eq("WINTER") & Key("region").eq("EU") & Key("round").eq("2"),
     "Condition parameter type does not match schema type"),
])
def test_queries_dynamodb_refuses(matches, condition, message):
    table, _ = matches
    code, text = error(table.query, IndexName="by-bracket", KeyConditionExpression=condition)
    assert code == "ValidationException" and message in text, text


def test_a_start_key_outside_the_condition_is_refused(matches):
    table, _ = matches
    page = table.query(IndexName="by-bracket", Limit=1,
                       KeyConditionExpression=Key("tournament").eq("WINTER") & Key("region").eq("EU")
                       & Key("round").eq(2))
    start = dict(page["LastEvaluatedKey"])
    assert set(start) == {"matchId", "tournament", "region", "round", "bracket"}
    code, text = error(table.query, IndexName="by-bracket", ExclusiveStartKey=start,
                       KeyConditionExpression=Key("tournament").eq("WINTER") & Key("region").eq("EU")
                       & Key("round").eq(3))
    assert code == "ValidationException" and "does not match the range key predicate" in text
    start["region"] = "NA"
    code, _ = error(table.query, IndexName="by-bracket", ExclusiveStartKey=start,
                    KeyConditionExpression=Key("tournament").eq("WINTER") & Key("region").eq("EU"))
    assert code == "ValidationException"


def test_a_key_attribute_of_another_type_is_refused_on_every_write_path(node, client, matches):
    table, _ = matches
    bad = {"matchId": "bad", "tournament": "WINTER", "region": "EU", "round": "two", "bracket": "upper"}
    message = "Type mismatch for Index Key round Expected: N Actual: S IndexName: by-bracket"
    for call in [lambda: table.put_item(Item=bad),
                 lambda: table.update_item(Key={"matchId": "bad"}, UpdateExpression="SET #r = :r",
                                           ExpressionAttributeNames={"#r": "round"},
                                           ExpressionAttributeValues={":r": "two"}),
                 lambda: client.batch_write_item(RequestItems={table.name: [{"PutRequest": {"Item": {
                     "matchId": {"S": "bad"}, "round": {"S": "two"}}}}]})]:
        code, text = error(call)
        assert code == "ValidationException" and message in text, text
    code, text = error(client.transact_write_items, TransactItems=[
        {"Put": {"TableName": table.name, "Item": {"matchId": {"S": "ok"}, "round": {"N": "1"}}}},
        {"Put": {"TableName": table.name, "Item": {"matchId": {"S": "bad"}, "region": {"N": "1"}}}}])
    assert code in ("ValidationException", "TransactionCanceledException"), text
    assert "Item" not in table.get_item(Key={"matchId": "bad"}) and "Item" not in table.get_item(Key={"matchId": "ok"})


def key_schema(*pairs):
    return [{"AttributeName": name, "KeyType": kind} for name, kind in pairs]


@pytest.mark.parametrize("schema, message", [
    (key_schema(*[(a, "HASH") for a in "abcde"]), "at most 4 HASH and 4 RANGE key attributes"),
    (key_schema(("a", "HASH"), *[(a, "RANGE") for a in "bcdef"]), "at most 4 HASH and 4 RANGE key attributes"),
    (key_schema(("a", "HASH"), ("b", "RANGE"), ("c", "HASH")), "every HASH KeySchemaElement must come before"),
    (key_schema(("a", "HASH"), ("b", "HASH"), ("a", "RANGE")), "Duplicate attribute name in KeySchema: a"),
    (key_schema(*[(a, "HASH") for a in "abcd"], *[(a, "RANGE") for a in "efghi"]),
     "Member must have length less than or equal to 8"),
])
def test_invalid_multi_attribute_key_schemas_are_refused(client, schema, message):
    names = sorted({element["AttributeName"] for element in schema})
    code, text = error(
        client.create_table, TableName=f"bad-{uuid.uuid4().hex[:8]}", BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": a, "AttributeType": "S"} for a in ["id"] + names],
        GlobalSecondaryIndexes=[{"IndexName": "idx", "KeySchema": schema, "Projection": {"ProjectionType": "ALL"}}])
    assert code == "ValidationException" and message in text, text


def test_a_local_index_takes_one_attribute_of_each_kind(client):
    code, text = error(
        client.create_table, TableName=f"bad-{uuid.uuid4().hex[:8]}", BillingMode="PAY_PER_REQUEST",
        KeySchema=key_schema(("id", "HASH"), ("sk", "RANGE")),
        AttributeDefinitions=[{"AttributeName": a, "AttributeType": "S"} for a in ["id", "sk", "a", "b"]],
        LocalSecondaryIndexes=[{"IndexName": "idx", "KeySchema": key_schema(("id", "HASH"), ("a", "RANGE"), ("b", "RANGE")),
                                "Projection": {"ProjectionType": "ALL"}}])
    assert code == "ValidationException" and "less than or equal to 2" in text, text


def test_four_and_four_attributes_added_online_and_kept_across_kill_9():
    """The largest key DynamoDB allows, added to a table with items by UpdateTable; the
    definition and the entries survive kill -9."""
    node = Granary().wait_ready()
    try:
        client = node.client()
        client.create_table(TableName="wide", BillingMode="PAY_PER_REQUEST",
                            KeySchema=key_schema(("id", "HASH")),
                            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}])
        table = resource(node).Table("wide")
        rng, model = random.Random(8), {}
        with table.batch_writer() as batch:
            for n in range(800):
                item = {"id": f"i{n}", **{f"p{k}": rng.choice(["x", "y"]) for k in range(4)},
                        **{f"s{k}": rng.randint(0, 2) for k in range(4)}}
                batch.put_item(Item=item)
                model[item["id"]] = item
        schema = key_schema(*[(f"p{k}", "HASH") for k in range(4)], *[(f"s{k}", "RANGE") for k in range(4)])
        client.update_table(
            TableName="wide",
            AttributeDefinitions=[{"AttributeName": f"p{k}", "AttributeType": "S"} for k in range(4)]
            + [{"AttributeName": f"s{k}", "AttributeType": "N"} for k in range(4)],
            GlobalSecondaryIndexUpdates=[{"Create": {"IndexName": "wide-index", "KeySchema": schema,
                                                     "Projection": {"ProjectionType": "KEYS_ONLY"}}}])
        wait_for_active(client, "wide", "wide-index")
        wait_for_indexes(node)
        node.kill()
        node = Granary(data_dir=node.data_dir).wait_ready()
        client = node.client()
        described = client.describe_table(TableName="wide")["Table"]["GlobalSecondaryIndexes"][0]
        assert described["KeySchema"] == schema
        table = resource(node).Table("wide")
        condition = Key("p0").eq("x") & Key("p1").eq("y") & Key("p2").eq("x") & Key("p3").eq("y") \
            & Key("s0").eq(1) & Key("s1").eq(0) & Key("s2").eq(2) & Key("s3").gte(1)
        got = [i["id"] for i in query_all(table, IndexName="wide-index", KeyConditionExpression=condition)]
        want = sorted((i["s3"], i["id"]) for i in model.values()
                      if [i["p0"], i["p1"], i["p2"], i["p3"]] == ["x", "y", "x", "y"]
                      and [i["s0"], i["s1"], i["s2"]] == [1, 0, 2] and i["s3"] >= 1)
        assert got == [k for _, k in want] and got
    finally:
        node.kill()
