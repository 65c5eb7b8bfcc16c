"""Items and expressions through boto3 and the AWS CLI against a real `granary serve`."""
import concurrent.futures
import decimal
import gzip
import json
import uuid
import zlib

import boto3
import botocore.exceptions
import pytest

from granary_process import Granary, aws, make_table, raw_post


@pytest.fixture
def table(client):
    return make_table(client, prefix="items")


def error(call, **kwargs):
    with pytest.raises(botocore.exceptions.ClientError) as raised:
        call(**kwargs)
    return raised.value.response["Error"]["Code"], raised.value.response["Error"]["Message"], raised.value.response


KEY = {"pk": {"S": "user#1"}, "sk": {"N": "1"}}


def test_every_type_round_trips(node, table):
    resource = boto3.resource("dynamodb", endpoint_url=node.endpoint, region_name="us-east-1",
                              aws_access_key_id="test", aws_secret_access_key="test")
    item = {
        "pk": "user#1", "sk": decimal.Decimal("1"), "s": "", "n": decimal.Decimal("-12.50"), "b": b"\x00\x01\xff",
        "t": True, "z": None, "m": {"nested": {"list": [1, "two", {"deep": [b"x"]}]}}, "l": [],
        "ss": {"a", "b"}, "ns": {decimal.Decimal("1"), decimal.Decimal("2.5")}, "bs": {b"x", b"y"},
        "big": decimal.Decimal("12345678901234567890123456789012345678"), "tiny": decimal.Decimal("1E-130"),
    }
    resource.Table(table).put_item(Item=item)
    stored = resource.Table(table).get_item(Key={"pk": "user#1", "sk": 1}, ConsistentRead=True)["Item"]
    assert stored["n"] == decimal.Decimal("-12.5") and stored["b"].value == b"\x00\x01\xff"
    assert stored["m"]["nested"]["list"][2]["deep"][0].value == b"x"
    assert stored["ss"] == {"a", "b"} and stored["ns"] == {1, decimal.Decimal("2.5")}
    assert stored["big"] == item["big"] and stored["tiny"] == item["tiny"] and stored["s"] == "" and stored["z"] is None


def test_numbers_are_canonical_and_keys_compare_by_value(client, table):
    client.put_item(TableName=table, Item={"pk": {"S": "n"}, "sk": {"N": "1.50"}, "v": {"N": "0001.2300E+2"}})
    got = client.get_item(TableName=table, Key={"pk": {"S": "n"}, "sk": {"N": "1.5"}})["Item"]
    assert got["sk"] == {"N": "1.5"} and got["v"] == {"N": "123"}
    code, message, _ = error(client.put_item, TableName=table, Item={"pk": {"S": "n"}, "sk": {"N": "1"}, "v": {"N": "1E+126"}})
    assert code == "ValidationException" and "Number overflow" in message
    code, message, _ = error(client.put_item, TableName=table, Item={"pk": {"S": "n"}, "sk": {"N": "1"}, "v": {"N": "1" * 39}})
    assert code == "ValidationException" and "38 significant digits" in message
    code, message, _ = error(client.put_item, TableName=table, Item={"pk": {"S": "n"}, "sk": {"N": "abc"}})
    assert code == "ValidationException"


def test_conditions_and_return_values(client, table):
    client.put_item(TableName=table, Item={**KEY, "count": {"N": "1"}, "state": {"S": "new"}})
    code, message, response = error(client.put_item, TableName=table, Item={**KEY}, ConditionExpression="attribute_not_exists(pk)",
                                    ReturnValuesOnConditionCheckFailure="ALL_OLD")
    assert code == "ConditionalCheckFailedException" and message == "The conditional request failed"
    assert response["Item"]["count"] == {"N": "1"}
    old = client.put_item(TableName=table, Item={**KEY, "count": {"N": "2"}}, ReturnValues="ALL_OLD",
                          ConditionExpression="#s = :new AND #c BETWEEN :zero AND :ten",
                          ExpressionAttributeNames={"#s": "state", "#c": "count"},
                          ExpressionAttributeValues={":new": {"S": "new"}, ":zero": {"N": "0"}, ":ten": {"N": "10"}})
    assert old["Attributes"]["state"] == {"S": "new"}
    deleted = client.delete_item(TableName=table, Key=KEY, ReturnValues="ALL_OLD", ConditionExpression="#c IN (:one, :two)",
                                 ExpressionAttributeNames={"#c": "count"}, ExpressionAttributeValues={":one": {"N": "1"}, ":two": {"N": "2"}})
    assert deleted["Attributes"]["count"] == {"N": "2"}
    assert "Item" not in client.get_item(TableName=table, Key=KEY)
    assert error(client.delete_item, TableName=table, Key=KEY, ConditionExpression="attribute_exists(pk)")[0] == "ConditionalCheckFailedException"


def test_update_expressions(client, table):
    client.put_item(TableName=table, Item={**KEY, "n": {"N": "10"}, "l": {"L": [{"S": "a"}]}, "tags": {"SS": ["x", "y"]}, "drop": {"SS": ["x", "y"]},
                                           "m": {"M": {"child": {"N": "1"}}}, "gone": {"S": "bye"}})
    result = client.update_item(
        TableName=table, Key=KEY, ReturnValues="ALL_NEW",
        UpdateExpression="SET n = n - :one, l = list_append(l, :more), m.child = m.child + :one, fresh = if_not_exists(fresh, :one) "
                         "REMOVE gone ADD hits :one, tags :z DELETE #drop :x",
        ExpressionAttributeNames={"#drop": "drop"},
        ExpressionAttributeValues={":one": {"N": "1"}, ":more": {"L": [{"S": "b"}]}, ":z": {"SS": ["z"]}, ":x": {"SS": ["x"]}})
    item = result["Attributes"]
    assert item["n"] == {"N": "9"} and item["l"] == {"L": [{"S": "a"}, {"S": "b"}]} and item["m"] == {"M": {"child": {"N": "2"}}}
    assert item["fresh"] == {"N": "1"} and item["hits"] == {"N": "1"} and "gone" not in item
    assert sorted(item["tags"]["SS"]) == ["x", "y", "z"] and item["drop"] == {"SS": ["y"]}
    updated_old = client.update_item(TableName=table, Key=KEY, UpdateExpression="SET n = :v", ExpressionAttributeValues={":v": {"N": "0"}},
                                     ReturnValues="UPDATED_OLD")
    assert updated_old["Attributes"] == {"n": {"N": "9"}}
    updated_new = client.update_item(TableName=table, Key=KEY, UpdateExpression="SET n = :v", ExpressionAttributeValues={":v": {"N": "5"}},
                                     ReturnValues="UPDATED_NEW")
    assert updated_new["Attributes"] == {"n": {"N": "5"}}
    # An update of a missing item creates it from the key.
    created = client.update_item(TableName=table, Key={"pk": {"S": "new"}, "sk": {"N": "2"}}, UpdateExpression="SET a = :v",
                                 ExpressionAttributeValues={":v": {"S": "x"}}, ReturnValues="ALL_NEW")
    assert created["Attributes"] == {"pk": {"S": "new"}, "sk": {"N": "2"}, "a": {"S": "x"}}
    projected = client.get_item(TableName=table, Key=KEY, ProjectionExpression="#n, l[1], m.child", ExpressionAttributeNames={"#n": "n"})
    assert projected["Item"] == {"n": {"N": "5"}, "l": {"L": [{"S": "b"}]}, "m": {"M": {"child": {"N": "2"}}}}


@pytest.mark.parametrize("kwargs, fragment", [
    (dict(UpdateExpression="SET status = :v", ExpressionAttributeValues={":v": {"S": "x"}}), "reserved keyword; reserved keyword: status"),
    (dict(UpdateExpression="SET a = :v", ExpressionAttributeValues={":v": {"S": "x"}, ":w": {"S": "y"}}), "unused in expressions: keys: {:w}"),
    (dict(UpdateExpression="SET a = :nope"), "attribute value used in expression is not defined; attribute value: :nope"),
    (dict(UpdateExpression="SET a = :v,", ExpressionAttributeValues={":v": {"S": "x"}}), "Syntax error"),
    (dict(UpdateExpression="SET pk = :v", ExpressionAttributeValues={":v": {"S": "x"}}), "This attribute is part of the key"),
    (dict(UpdateExpression="SET a = :v, a.b = :v", ExpressionAttributeValues={":v": {"S": "x"}}), "Two document paths overlap"),
    (dict(UpdateExpression="ADD a :v", ExpressionAttributeValues={":v": {"S": "x"}}), "Incorrect operand type"),
    (dict(UpdateExpression="SET a = :v", ExpressionAttributeValues={":v": {"SS": []}}), "set  may not be empty"),
    (dict(UpdateExpression="SET a = :v", ExpressionAttributeValues={":v": {"SS": ["q", "q"]}}), "contains duplicates"),
    (dict(UpdateExpression="SET a = :v", ExpressionAttributeValues={":v": {"NULL": False}}), "Null attribute value types must have the value of true"),
])
def test_bad_expressions_get_validation_errors(client, table, kwargs, fragment):
    code, message, _ = error(client.update_item, TableName=table, Key=KEY, **kwargs)
    assert code == "ValidationException" and fragment in message, message


def test_key_and_size_validation(client, table):
    def put(item):
        return error(client.put_item, TableName=table, Item=item)
    assert "Missing the key sk" in put({"pk": {"S": "a"}})[1]
    assert "Type mismatch for key sk expected: N actual: S" in put({"pk": {"S": "a"}, "sk": {"S": "1"}})[1]
    assert "cannot contain an empty string value" in put({"pk": {"S": ""}, "sk": {"N": "1"}})[1]
    assert "exceeded the maximum size limit of2048 bytes" in put({"pk": {"S": "x" * 2049}, "sk": {"N": "1"}})[1]
    assert "Item size has exceeded the maximum allowed size" in put({**KEY, "big": {"S": "x" * (400 * 1024)}})[1]
    assert error(client.get_item, TableName=table, Key={"pk": {"S": "a"}})[1] == "The provided key element does not match the schema"
    assert error(client.get_item, TableName="missing-table", Key=KEY)[0] == "ResourceNotFoundException"
    # The largest legal item and key are stored and read back.
    big = {"pk": {"S": "p" * 2048}, "sk": {"N": "1"}, "v": {"S": "x" * (400 * 1024 - 2048 - 200)}}
    client.put_item(TableName=table, Item=big)
    assert client.get_item(TableName=table, Key={"pk": big["pk"], "sk": big["sk"]})["Item"]["v"] == big["v"]


def test_concurrent_conditional_increments_lose_nothing(node, table):
    client = node.client()
    client.put_item(TableName=table, Item={**KEY, "n": {"N": "0"}})

    def increment(_):
        own = node.client()
        done = 0
        for _ in range(20):
            while True:
                current = own.get_item(TableName=table, Key=KEY, ConsistentRead=True)["Item"]["n"]
                try:
                    own.update_item(TableName=table, Key=KEY, UpdateExpression="SET n = n + :one", ConditionExpression="n = :seen",
                                    ExpressionAttributeValues={":one": {"N": "1"}, ":seen": current})
                    done += 1
                    break
                except botocore.exceptions.ClientError as failure:
                    assert failure.response["Error"]["Code"] == "ConditionalCheckFailedException"
        return done

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        total = sum(pool.map(increment, range(8)))
    assert total == 160
    assert client.get_item(TableName=table, Key=KEY, ConsistentRead=True)["Item"]["n"] == {"N": "160"}


def test_items_survive_kill_9_across_partitions():
    server = Granary().wait_ready()
    client = server.client()
    client.create_table(TableName="durable", BillingMode="PAY_PER_REQUEST", KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}])
    for index in range(200):
        client.put_item(TableName="durable", Item={"pk": {"S": f"k{index}"}, "v": {"N": str(index)}})
    client.delete_item(TableName="durable", Key={"pk": {"S": "k7"}})
    server.kill()
    again = Granary(data_dir=server.data_dir).wait_ready()
    try:
        client = again.client()
        for index in range(200):
            got = client.get_item(TableName="durable", Key={"pk": {"S": f"k{index}"}}).get("Item")
            assert got == (None if index == 7 else {"pk": {"S": f"k{index}"}, "v": {"N": str(index)}})
        assert client.describe_table(TableName="durable")["Table"]["ItemCount"] == 199
    finally:
        again.kill()


def test_protocol_errors_and_headers(node, table):
    response = raw_post(node, "ListTables", b"{not json")
    assert response.status_code == 400 and response.json()["__type"].endswith("#SerializationException")
    response = raw_post(node, "NoSuchOperation", b"{}")
    assert response.status_code == 400 and response.json()["__type"].endswith("#UnknownOperationException")
    response = raw_post(node, "GetItem", json.dumps({"TableName": 5, "Key": {}}).encode())
    assert response.status_code == 400 and response.json()["__type"].endswith("#SerializationException")
    response = raw_post(node, "GetItem", json.dumps({"Key": {}}).encode())
    assert response.json() == {"__type": "com.amazonaws.dynamodb.v20120810#ValidationException",
                               "message": "1 validation error detected: Value null at 'tableName' failed to satisfy constraint: Member must not be null"}
    response = raw_post(node, "ListTables", b"{}")
    assert response.status_code == 200 and len(response.headers["x-amzn-RequestId"]) == 52
    assert int(response.headers["x-amz-crc32"]) == zlib.crc32(response.content)


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_compressed_request_bodies(node, table, encoding):
    body = json.dumps({"TableName": table, "Item": {**KEY, "z": {"S": "compressed " * 100}}}).encode()
    packed = gzip.compress(body) if encoding == "gzip" else zlib.compress(body)
    assert raw_post(node, "PutItem", packed, {"Content-Encoding": encoding}).status_code == 200
    got = raw_post(node, "GetItem", json.dumps({"TableName": table, "Key": KEY}).encode()).json()
    assert got["Item"]["z"]["S"].startswith("compressed")
    response = raw_post(node, "PutItem", b"not gzip at all", {"Content-Encoding": "gzip"})
    assert response.status_code == 400 and response.json()["__type"].endswith("#SerializationException")


def test_aws_cli_as_a_new_user_would(node):
    table = "cli-" + uuid.uuid4().hex[:8]
    code, created, _ = aws(node, "create-table", "--table-name", table, "--billing-mode", "PAY_PER_REQUEST",
                           "--attribute-definitions", "AttributeName=id,AttributeType=S", "--key-schema", "AttributeName=id,KeyType=HASH")
    assert code == 0 and created["TableDescription"]["TableStatus"] == "ACTIVE"
    assert aws(node, "wait", "table-exists", "--table-name", table)[0] == 0
    assert aws(node, "put-item", "--table-name", table, "--item", '{"id": {"S": "1"}, "n": {"N": "1"}}')[0] == 0
    code, got, _ = aws(node, "get-item", "--table-name", table, "--key", '{"id": {"S": "1"}}')
    assert got["Item"]["n"] == {"N": "1"}
    code, updated, _ = aws(node, "update-item", "--table-name", table, "--key", '{"id": {"S": "1"}}',
                           "--update-expression", "SET n = n + :one", "--condition-expression", "n = :one",
                           "--expression-attribute-values", '{":one": {"N": "1"}}', "--return-values", "ALL_NEW")
    assert code == 0 and updated["Attributes"]["n"] == {"N": "2"}
    code, _, stderr = aws(node, "update-item", "--table-name", table, "--key", '{"id": {"S": "1"}}',
                          "--update-expression", "SET n = n + :one", "--condition-expression", "n = :one",
                          "--expression-attribute-values", '{":one": {"N": "1"}}')
    assert code != 0 and "ConditionalCheckFailedException" in stderr
    assert aws(node, "describe-table", "--table-name", table)[1]["Table"]["ItemCount"] == 1
    assert table in aws(node, "list-tables")[1]["TableNames"]
    assert aws(node, "delete-item", "--table-name", table, "--key", '{"id": {"S": "1"}}')[0] == 0
    code, _, stderr = aws(node, "put-item", "--table-name", table, "--item", '{"nope": {"S": "1"}}')
    assert code != 0 and "ValidationException" in stderr
    assert aws(node, "delete-table", "--table-name", table)[0] == 0


def test_item_statistics_kept_live_match_a_recount():
    # Writes that need nothing of the old item do not decode it; the table's item count and
    # size, kept as writes go, must still match what a restart counts from the stored items.
    server = Granary().wait_ready()
    client = server.client()
    client.create_table(TableName="stats", BillingMode="PAY_PER_REQUEST", KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}])
    client.put_item(TableName="stats", Item={"pk": {"S": "a"}, "v": {"S": "x" * 10}})
    client.put_item(TableName="stats", Item={"pk": {"S": "a"}, "v": {"S": "x" * 500}})  # overwrite, larger
    client.put_item(TableName="stats", Item={"pk": {"S": "b"}, "v": {"S": "y" * 300}})
    client.put_item(TableName="stats", Item={"pk": {"S": "c"}, "v": {"S": "z"}})
    client.delete_item(TableName="stats", Key={"pk": {"S": "b"}})
    client.delete_item(TableName="stats", Key={"pk": {"S": "missing"}})
    old = client.put_item(TableName="stats", Item={"pk": {"S": "c"}, "v": {"S": "w"}}, ReturnValues="ALL_OLD")
    assert old["Attributes"] == {"pk": {"S": "c"}, "v": {"S": "z"}}
    live = client.describe_table(TableName="stats")["Table"]
    assert live["ItemCount"] == 2 and live["TableSizeBytes"] > 500
    server.kill()
    again = Granary(data_dir=server.data_dir).wait_ready()
    try:
        recounted = again.client().describe_table(TableName="stats")["Table"]
        assert (recounted["ItemCount"], recounted["TableSizeBytes"]) == (live["ItemCount"], live["TableSizeBytes"])
    finally:
        again.kill()


def test_pipelined_item_requests_across_partitions_answer_in_order(node, client):
    """One connection, one burst of 80 item requests and Queries whose keys fall on every
    partition: a node on several cores moves the connection to each request's partition as
    it goes (HTTPServer), and the answers still come back in the order asked, each the
    right one."""
    import socket
    from test_node import read_responses
    name = make_table(client, sort_type=None)

    def request(operation, body):
        data = json.dumps(body).encode()
        return (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-amz-json-1.0\r\n"
                b"X-Amz-Target: DynamoDB_20120810." + operation.encode() + b"\r\n"
                b"Content-Length: " + str(len(data)).encode() + b"\r\n\r\n" + data)

    burst = b""
    for n in range(20):
        burst += request("PutItem", {"TableName": name, "Item": {"pk": {"S": f"k{n}"}, "v": {"N": str(n)}}})
        burst += request("GetItem", {"TableName": name, "Key": {"pk": {"S": f"k{n}"}}, "ConsistentRead": True})
        burst += request("UpdateItem", {"TableName": name, "Key": {"pk": {"S": f"k{n}"}},
                                        "UpdateExpression": "SET v = v + :one", "ExpressionAttributeValues": {":one": {"N": "1"}},
                                        "ReturnValues": "UPDATED_NEW"})
        burst += request("Query", {"TableName": name, "KeyConditionExpression": "pk = :k",
                                   "ExpressionAttributeValues": {":k": {"S": f"k{n}"}}, "ConsistentRead": True})
    # A Query the router cannot place (a key condition on a non-key attribute) is
    # answered where it is, in its turn.
    burst += request("Query", {"TableName": name, "KeyConditionExpression": "v = :k",
                               "ExpressionAttributeValues": {":k": {"N": "1"}}})
    with socket.create_connection(("127.0.0.1", node.port), timeout=10) as sock:
        sock.sendall(burst)
        responses = read_responses(sock, 81)
    assert len(responses) == 81
    assert all(status == "HTTP/1.1 200 OK" for status, _, _ in responses[:80])
    for n in range(20):
        assert json.loads(responses[4 * n][2]) == {}
        assert json.loads(responses[4 * n + 1][2]) == {"Item": {"pk": {"S": f"k{n}"}, "v": {"N": str(n)}}}
        assert json.loads(responses[4 * n + 2][2]) == {"Attributes": {"v": {"N": str(n + 1)}}}
        queried = json.loads(responses[4 * n + 3][2])
        assert queried["Items"] == [{"pk": {"S": f"k{n}"}, "v": {"N": str(n + 1)}}] and queried["Count"] == 1
    status, _, body = responses[80]
    assert status == "HTTP/1.1 400 Bad Request"
    assert json.loads(body)["__type"].endswith("#ValidationException")
    items = client.scan(TableName=name, ConsistentRead=True)["Items"]
    assert sorted(int(item["v"]["N"]) for item in items) == list(range(1, 21))


def test_reads_are_charged_by_the_whole_item(client, table):
    # Names and values add up to 10,010 bytes as DynamoDB counts them: three 4 KB read units.
    client.put_item(TableName=table, Item={"pk": {"S": "big"}, "sk": {"N": "1"}, "v": {"S": "x" * 10_000}})
    key = {"pk": {"S": "big"}, "sk": {"N": "1"}}

    def units(answer):
        consumed = answer["ConsumedCapacity"]
        return [entry["CapacityUnits"] for entry in consumed] if isinstance(consumed, list) else consumed["CapacityUnits"]

    strong = client.get_item(TableName=table, Key=key, ConsistentRead=True, ReturnConsumedCapacity="TOTAL")
    assert units(strong) == 3.0 and len(strong["Item"]["v"]["S"]) == 10_000
    eventual = client.get_item(TableName=table, Key=key, ReturnConsumedCapacity="TOTAL")
    assert units(eventual) == 1.5 and eventual["Item"] == strong["Item"]
    # A projection shows less and is charged for the whole item, as DynamoDB does.
    projected = client.get_item(TableName=table, Key=key, ProjectionExpression="sk", ReturnConsumedCapacity="TOTAL")
    assert units(projected) == 1.5 and projected["Item"] == {"sk": {"N": "1"}}
    batch = client.batch_get_item(RequestItems={table: {"Keys": [key, {"pk": {"S": "none"}, "sk": {"N": "1"}}]}},
                                  ReturnConsumedCapacity="TOTAL")
    assert units(batch) == [2.0] and batch["Responses"][table] == [strong["Item"]]
    transaction = client.transact_get_items(TransactItems=[{"Get": {"TableName": table, "Key": key}}],
                                            ReturnConsumedCapacity="TOTAL")
    assert units(transaction) == [6.0] and transaction["Responses"] == [{"Item": strong["Item"]}]
    query = client.query(TableName=table, KeyConditionExpression="pk = :pk",
                         ExpressionAttributeValues={":pk": {"S": "big"}}, ReturnConsumedCapacity="TOTAL")
    assert units(query) == 1.5 and query["Items"] == [strong["Item"]]
