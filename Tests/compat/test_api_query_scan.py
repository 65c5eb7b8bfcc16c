"""Query and Scan through boto3 and the AWS CLI against a real `granary serve`."""
import concurrent.futures
import decimal
import json
import threading

import boto3
import pytest
from boto3.dynamodb.conditions import Attr, Key

from granary_process import aws, error, make_table, raw_post



def resource(node):
    return boto3.resource("dynamodb", endpoint_url=node.endpoint, region_name="us-east-1",
                          aws_access_key_id="test", aws_secret_access_key="test")



@pytest.fixture
def numbers(node, client):
    """pk "a" holds sk -5..14 (20 items, odd ones flagged), pk "b" holds 3 items."""
    name = make_table(client)
    table = resource(node).Table(name)
    with table.batch_writer() as batch:
        for sk in range(-5, 15):
            batch.put_item(Item={"pk": "a", "sk": sk, "odd": sk % 2 != 0, "payload": "x" * 10})
        for sk in range(3):
            batch.put_item(Item={"pk": "b", "sk": sk})
    return table


def sks(items):
    return [int(item["sk"]) for item in items]


def test_query_sort_key_conditions_in_numeric_order(numbers):
    everything = numbers.query(KeyConditionExpression=Key("pk").eq("a"))
    assert sks(everything["Items"]) == list(range(-5, 15))
    assert everything["Count"] == 20 and everything["ScannedCount"] == 20 and "LastEvaluatedKey" not in everything
    cases = [
        (Key("sk").eq(3), [3]),
        (Key("sk").lt(0), [-5, -4, -3, -2, -1]),
        (Key("sk").lte(-4), [-5, -4]),
        (Key("sk").gt(12), [13, 14]),
        (Key("sk").gte(12), [12, 13, 14]),
        (Key("sk").between(-1, 2), [-1, 0, 1, 2]),
    ]
    for condition, expected in cases:
        assert sks(numbers.query(KeyConditionExpression=Key("pk").eq("a") & condition)["Items"]) == expected
    backwards = numbers.query(KeyConditionExpression=Key("pk").eq("a") & Key("sk").lt(0), ScanIndexForward=False)
    assert sks(backwards["Items"]) == [-1, -2, -3, -4, -5]
    assert numbers.query(KeyConditionExpression=Key("pk").eq("nobody"))["Items"] == []


def test_query_decimal_sort_keys(node, client):
    table = resource(node).Table(make_table(client))
    values = ["-1E+10", "-10.5", "-10", "-1", "-0.001", "0", "0.001", "1", "1.5", "10", "1E+20"]
    for value in reversed(values):
        table.put_item(Item={"pk": "d", "sk": decimal.Decimal(value)})
    found = [item["sk"] for item in table.query(KeyConditionExpression=Key("pk").eq("d"))["Items"]]
    assert found == [decimal.Decimal(value) for value in values]


def test_query_string_and_binary_sort_keys_begins_with(node, client):
    table = resource(node).Table(make_table(client, "S"))
    for sk in ["a", "ab", "abc", "abd", "b", "ba", "\u00e9t\u00e9"]:
        table.put_item(Item={"pk": "s", "sk": sk})
    query = table.query(KeyConditionExpression=Key("pk").eq("s") & Key("sk").begins_with("ab"))
    assert [item["sk"] for item in query["Items"]] == ["ab", "abc", "abd"]
    query = table.query(KeyConditionExpression=Key("pk").eq("s") & Key("sk").gt("b"))
    assert [item["sk"] for item in query["Items"]] == ["ba", "\u00e9t\u00e9"]
    binary = resource(node).Table(make_table(client, "B"))
    for sk in [b"\x00", b"\x01\x02", b"\x01\xff", b"\xff", b"\xff\xff"]:
        binary.put_item(Item={"pk": "b", "sk": sk})
    query = binary.query(KeyConditionExpression=Key("pk").eq("b") & Key("sk").begins_with(b"\xff"))
    assert [bytes(item["sk"]) for item in query["Items"]] == [b"\xff", b"\xff\xff"]
    query = binary.query(KeyConditionExpression=Key("pk").eq("b") & Key("sk").begins_with(b"\x01"))
    assert [bytes(item["sk"]) for item in query["Items"]] == [b"\x01\x02", b"\x01\xff"]


def test_query_filter_projection_select_limit(numbers):
    filtered = numbers.query(KeyConditionExpression=Key("pk").eq("a"), FilterExpression=Attr("odd").eq(True))
    assert sks(filtered["Items"]) == [-5, -3, -1, 1, 3, 5, 7, 9, 11, 13]
    assert filtered["Count"] == 10 and filtered["ScannedCount"] == 20
    # Limit counts items read, before the filter, as DynamoDB's does.
    limited = numbers.query(KeyConditionExpression=Key("pk").eq("a"), FilterExpression=Attr("odd").eq(True), Limit=4)
    assert sks(limited["Items"]) == [-5, -3] and limited["ScannedCount"] == 4
    assert limited["LastEvaluatedKey"] == {"pk": "a", "sk": -2}
    projected = numbers.query(KeyConditionExpression=Key("pk").eq("a") & Key("sk").eq(1), ProjectionExpression="odd, #p",
                              ExpressionAttributeNames={"#p": "payload"})
    assert projected["Items"] == [{"odd": True, "payload": "x" * 10}]
    counted = numbers.query(KeyConditionExpression=Key("pk").eq("a"), Select="COUNT")
    assert counted["Count"] == 20 and "Items" not in counted
    specific = numbers.query(KeyConditionExpression=Key("pk").eq("b"), Select="SPECIFIC_ATTRIBUTES", ProjectionExpression="sk")
    assert specific["Items"] == [{"sk": 0}, {"sk": 1}, {"sk": 2}]


def test_query_pages_both_ways_with_paginator(node, numbers):
    client = node.client()
    for forward in (True, False):
        pages = list(client.get_paginator("query").paginate(
            TableName=numbers.name, KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": "a"}},
            ScanIndexForward=forward, PaginationConfig={"PageSize": 3}))
        found = [int(item["sk"]["N"]) for page in pages for item in page["Items"]]
        assert found == (list(range(-5, 15)) if forward else list(range(14, -6, -1)))
        assert all(page["Count"] <= 3 for page in pages) and len(pages) >= 7


def test_query_one_megabyte_page(node, client):
    table = resource(node).Table(make_table(client))
    blob = "z" * 100_000
    with table.batch_writer() as batch:
        for sk in range(25):
            batch.put_item(Item={"pk": "big", "sk": sk, "blob": blob})
    first = table.query(KeyConditionExpression=Key("pk").eq("big"), Select="COUNT")
    # About 100 KB an item: the page stops once 1 MB has been read.
    assert 10 <= first["ScannedCount"] <= 11 and "LastEvaluatedKey" in first
    total, start = 0, None
    while True:
        kwargs = {"ExclusiveStartKey": start} if start else {}
        page = table.query(KeyConditionExpression=Key("pk").eq("big"), Select="COUNT", **kwargs)
        total += page["Count"]
        start = page.get("LastEvaluatedKey")
        if not start:
            break
    assert total == 25


def test_query_consumed_capacity(numbers):
    strong = numbers.query(KeyConditionExpression=Key("pk").eq("a"), ConsistentRead=True, ReturnConsumedCapacity="TOTAL")
    eventual = numbers.query(KeyConditionExpression=Key("pk").eq("a"), ReturnConsumedCapacity="TOTAL")
    assert strong["ConsumedCapacity"]["CapacityUnits"] == 1.0
    assert eventual["ConsumedCapacity"]["CapacityUnits"] == 0.5


def test_query_errors(node, numbers):
    client = node.client()
    name = numbers.name

    def query(**kwargs):
        return error(client.query, TableName=name, **kwargs)

    values = {":p": {"S": "a"}, ":s": {"N": "1"}}
    assert query(KeyConditionExpression="pk = :p OR sk = :s", ExpressionAttributeValues=values) == \
        ("ValidationException", "Invalid KeyConditionExpression: Invalid operator used in KeyConditionExpression: OR")
    assert query(KeyConditionExpression="sk = :s", ExpressionAttributeValues={":s": {"N": "1"}}) == \
        ("ValidationException", "Query condition missed key schema element: pk")
    assert query(KeyConditionExpression="pk > :p", ExpressionAttributeValues={":p": {"S": "a"}}) == \
        ("ValidationException", "Query key condition not supported")
    assert query(KeyConditionExpression="pk = :p AND colour = :s", ExpressionAttributeValues=values) == \
        ("ValidationException", "Query condition missed key schema element: sk")
    assert query(KeyConditionExpression="pk = :p AND sk = :s AND sk > :s", ExpressionAttributeValues=values)[0] == "ValidationException"
    assert query(KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"N": "1"}}) == \
        ("ValidationException", "One or more parameter values were invalid: Condition parameter type does not match schema type")
    assert query(KeyConditionExpression="pk = :p AND begins_with(sk, :s)", ExpressionAttributeValues=values) == \
        ("ValidationException", "Invalid KeyConditionExpression: Incorrect operand type for operator or function; operator or function: begins_with, operand type: N")
    assert query(KeyConditionExpression="pk = :p", FilterExpression="sk > :s", ExpressionAttributeValues=values) == \
        ("ValidationException", "Filter Expression can only contain non-primary key attributes: Primary key attribute: sk")
    assert query(KeyConditionExpression="pk = :p", ExpressionAttributeValues=values)[1] == \
        "Value provided in ExpressionAttributeValues unused in expressions: keys: {:s}"
    assert query() == \
        ("ValidationException", "Either the KeyConditions or KeyConditionExpression parameter must be specified in the request.")
    response = raw_post(node, "Query", json.dumps({"TableName": name, "KeyConditionExpression": "pk = :p",
                                                   "ExpressionAttributeValues": {":p": {"S": "a"}}, "Limit": 0}).encode())
    assert response.status_code == 400 and response.json()["message"] == \
        "1 validation error detected: Value '0' at 'limit' failed to satisfy constraint: Member must have value greater than or equal to 1"
    assert query(KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": "a"}}, Select="ALL_ATTRIBUTES",
                 ProjectionExpression="sk") == \
        ("ValidationException", "Cannot specify the ProjectionExpression when choosing to get ALL_ATTRIBUTES")
    assert query(KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": "a"}},
                 ExclusiveStartKey={"pk": {"S": "b"}, "sk": {"N": "1"}})[0] == "ValidationException"
    assert query(KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": "a"}},
                 ExclusiveStartKey={"pk": {"S": "a"}})[0] == "ValidationException"
    assert query(KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": "a"}}, IndexName="nope") == \
        ("ValidationException", "The table does not have the specified index: nope")
    assert error(client.query, TableName="missing-table", KeyConditionExpression="pk = :p",
                 ExpressionAttributeValues={":p": {"S": "a"}})[0] == "ResourceNotFoundException"


def test_scan_whole_table_with_paginator_filter_and_count(node, numbers):
    client = node.client()
    pages = list(client.get_paginator("scan").paginate(TableName=numbers.name, PaginationConfig={"PageSize": 4}))
    keys = [(item["pk"]["S"], int(item["sk"]["N"])) for page in pages for item in page["Items"]]
    assert sorted(keys) == sorted([("a", sk) for sk in range(-5, 15)] + [("b", sk) for sk in range(3)])
    assert len(keys) == len(set(keys))
    # One partition key's items come together, in sort-key order.
    assert [sk for pk, sk in keys if pk == "a"] == list(range(-5, 15))
    filtered = numbers.scan(FilterExpression=Attr("odd").eq(True) & Attr("pk").eq("a"))
    assert sorted(sks(filtered["Items"])) == [-5, -3, -1, 1, 3, 5, 7, 9, 11, 13] and filtered["ScannedCount"] == 23
    assert numbers.scan(Select="COUNT")["Count"] == 23


def test_parallel_scan_segments_are_disjoint_and_cover(node, client):
    table = resource(node).Table(make_table(client, sort_type=None))
    with table.batch_writer() as batch:
        for number in range(400):
            batch.put_item(Item={"pk": f"item-{number}"})
    for total in (1, 2, 4, 7):
        seen = []
        for segment in range(total):
            start = None
            while True:
                kwargs = {"ExclusiveStartKey": start} if start else {}
                page = table.scan(Segment=segment, TotalSegments=total, Limit=50, **kwargs)
                seen += [item["pk"] for item in page["Items"]]
                start = page.get("LastEvaluatedKey")
                if not start:
                    break
        assert sorted(seen) == sorted(f"item-{number}" for number in range(400)), total


def test_aws_cli_scan_and_query_auto_paginate(node, numbers):
    code, scanned, stderr = aws(node, "scan", "--table-name", numbers.name, "--page-size", "5")
    assert code == 0, stderr
    assert len(scanned["Items"]) == 23
    code, queried, stderr = aws(node, "query", "--table-name", numbers.name, "--key-condition-expression", "pk = :p",
                                "--expression-attribute-values", '{":p": {"S": "a"}}', "--page-size", "3")
    assert code == 0, stderr
    assert [int(item["sk"]["N"]) for item in queried["Items"]] == list(range(-5, 15))


def test_scan_errors(node, numbers):
    client = node.client()
    name = numbers.name
    assert error(client.scan, TableName=name, Segment=4, TotalSegments=4) == \
        ("ValidationException", "The Segment parameter is zero-based and must be less than parameter TotalSegments: Segment: 4 is out of bounds of TotalSegments: 4")
    assert error(client.scan, TableName=name, Segment=0)[0] == "ValidationException"
    response = raw_post(node, "Scan", json.dumps({"TableName": name, "TotalSegments": 0, "Segment": 0}).encode())
    assert response.status_code == 400 and "at 'totalSegments' failed to satisfy constraint" in response.json()["message"]
    assert error(client.scan, TableName=name, FilterExpression="a = :a")[1] == \
        "An expression attribute value used in expression is not defined; attribute value: :a"
    assert error(client.scan, TableName=name, Select="ALL_PROJECTED_ATTRIBUTES") == \
        ("ValidationException", "ALL_PROJECTED_ATTRIBUTES can be used only when Querying using an IndexName")
    assert error(client.scan, TableName=name, ExclusiveStartKey={"pk": {"N": "1"}, "sk": {"N": "1"}})[0] == "ValidationException"


def test_scan_is_stable_under_concurrent_writes(node, client):
    """Items present for the whole scan come back exactly once while others come and go."""
    table = resource(node).Table(make_table(client, sort_type=None))
    with table.batch_writer() as batch:
        for number in range(300):
            batch.put_item(Item={"pk": f"stay-{number}"})
    stop = threading.Event()

    def churn(worker):
        writer = resource(node).Table(table.name)
        count = 0
        while not stop.is_set() and count < 2000:
            writer.put_item(Item={"pk": f"churn-{worker}-{count % 50}", "n": count})
            writer.delete_item(Key={"pk": f"churn-{worker}-{(count + 25) % 50}"})
            count += 1

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(churn, worker) for worker in range(4)]
        try:
            for _ in range(3):
                seen, start = [], None
                while True:
                    kwargs = {"ExclusiveStartKey": start} if start else {}
                    page = table.scan(Limit=37, **kwargs)
                    seen += [item["pk"] for item in page["Items"]]
                    start = page.get("LastEvaluatedKey")
                    if not start:
                        break
                stayed = [pk for pk in seen if pk.startswith("stay-")]
                assert sorted(stayed) == sorted(f"stay-{number}" for number in range(300))
                assert len(seen) == len(set(seen))
        finally:
            stop.set()
            for future in futures:
                future.result()
