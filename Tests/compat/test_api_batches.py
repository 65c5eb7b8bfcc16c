"""BatchGetItem and BatchWriteItem through boto3 against a real `granary serve`."""
import json


from granary_process import error, make_table, raw_post




def key(pk, sk):
    return {"pk": {"S": pk}, "sk": {"N": str(sk)}}


def test_batch_write_then_get_across_tables(client):
    first, second = make_table(client), make_table(client, sort_type=None)
    written = client.batch_write_item(RequestItems={
        first: [{"PutRequest": {"Item": {**key("p", n), "v": {"N": str(n * n)}}}} for n in range(20)],
        second: [{"PutRequest": {"Item": {"pk": {"S": f"k{n}"}, "v": {"S": "x"}}}} for n in range(5)],
    }, ReturnConsumedCapacity="TOTAL")
    assert written["UnprocessedItems"] == {}
    assert sorted(entry["TableName"] for entry in written["ConsumedCapacity"]) == sorted([first, second])
    assert {entry["TableName"]: entry["CapacityUnits"] for entry in written["ConsumedCapacity"]}[first] == 20.0

    got = client.batch_get_item(RequestItems={
        first: {"Keys": [key("p", n) for n in (0, 3, 19, 99)], "ProjectionExpression": "sk, v"},
        second: {"Keys": [{"pk": {"S": "k1"}}, {"pk": {"S": "k4"}}], "ConsistentRead": True},
    })
    assert got["UnprocessedKeys"] == {}
    assert sorted(int(item["v"]["N"]) for item in got["Responses"][first]) == [0, 9, 361]
    assert all(set(item) == {"sk", "v"} for item in got["Responses"][first])
    assert sorted(item["pk"]["S"] for item in got["Responses"][second]) == ["k1", "k4"]

    # Deletes and puts in one batch.
    client.batch_write_item(RequestItems={first: [
        {"DeleteRequest": {"Key": key("p", 0)}}, {"DeleteRequest": {"Key": key("p", 1)}},
        {"PutRequest": {"Item": {**key("p", 2), "v": {"S": "replaced"}}}},
    ]})
    got = client.batch_get_item(RequestItems={first: {"Keys": [key("p", n) for n in range(3)]}})
    assert got["Responses"][first] == [{**key("p", 2), "v": {"S": "replaced"}}]
    assert client.describe_table(TableName=first)["Table"]["ItemCount"] == 18


def test_batch_write_capacity_counts_the_larger_image_and_a_bad_mode_writes_nothing(client):
    table = make_table(client)
    client.put_item(TableName=table, Item={**key("c", 1), "blob": {"S": "x" * 3000}})
    # A bad ReturnConsumedCapacity is refused before any write of the batch is made.
    code, message = error(client.batch_write_item, RequestItems={table: [
        {"DeleteRequest": {"Key": key("c", 1)}}, {"PutRequest": {"Item": key("c", 2)}}]},
        ReturnConsumedCapacity="SOME")
    assert code == "ValidationException" and "returnConsumedCapacity" in message
    assert client.describe_table(TableName=table)["Table"]["ItemCount"] == 1
    # Deleting the 3 KB item costs 3 units: its old size is read when capacity is asked for.
    written = client.batch_write_item(RequestItems={table: [
        {"DeleteRequest": {"Key": key("c", 1)}}, {"PutRequest": {"Item": key("c", 2)}}]},
        ReturnConsumedCapacity="TOTAL")
    assert written["ConsumedCapacity"] == [{"TableName": table, "CapacityUnits": 4.0}]
    # Without it the old item is not decoded; the table's count still follows every write.
    client.batch_write_item(RequestItems={table: [
        {"PutRequest": {"Item": {**key("c", 2), "v": {"S": "again"}}}}, {"PutRequest": {"Item": key("c", 3)}}]})
    assert client.describe_table(TableName=table)["Table"]["ItemCount"] == 2


def test_batch_get_hands_back_keys_past_16_megabytes(client):
    table = make_table(client)
    blob = "z" * 390_000
    for start in range(0, 48, 8):
        client.batch_write_item(RequestItems={table: [
            {"PutRequest": {"Item": {**key("big", n), "blob": {"S": blob}}}} for n in range(start, start + 8)]})
    keys = [key("big", n) for n in range(48)]
    got = client.batch_get_item(RequestItems={table: {"Keys": keys, "ProjectionExpression": "pk, sk, #b",
                                                      "ExpressionAttributeNames": {"#b": "blob"}}})
    returned = got["Responses"][table]
    unprocessed = got["UnprocessedKeys"][table]
    assert 40 <= len(returned) <= 44
    assert unprocessed["ProjectionExpression"] == "pk, sk, #b"
    assert len(returned) + len(unprocessed["Keys"]) == 48
    # Asking again for what was left returns the rest, as SDK retry loops do.
    again = client.batch_get_item(RequestItems={table: unprocessed})
    found = {int(item["sk"]["N"]) for item in returned + again["Responses"][table]}
    assert found == set(range(48)) and again["UnprocessedKeys"] == {}


def test_batch_errors(node, client):
    table = make_table(client)
    assert error(client.batch_write_item, RequestItems={table: [{"PutRequest": {"Item": key("p", 1)}}] * 2}) == \
        ("ValidationException", "Provided list of item keys contains duplicates")
    assert error(client.batch_get_item, RequestItems={table: {"Keys": [key("p", 1), key("p", 1)]}}) == \
        ("ValidationException", "Provided list of item keys contains duplicates")
    assert error(client.batch_write_item, RequestItems={table: [{"PutRequest": {"Item": key("p", n)}} for n in range(26)]}) == \
        ("ValidationException", "Too many items requested for the BatchWriteItem call")
    assert error(client.batch_get_item, RequestItems={table: {"Keys": [key("p", n) for n in range(101)]}}) == \
        ("ValidationException", "Too many items requested for the BatchGetItem call")
    assert error(client.batch_write_item, RequestItems={"no-such-table": [{"PutRequest": {"Item": key("p", 1)}}]})[0] == \
        "ResourceNotFoundException"
    assert error(client.batch_get_item, RequestItems={table: {"Keys": [{"pk": {"S": "p"}}]}}) == \
        ("ValidationException", "The provided key element does not match the schema")
    assert error(client.batch_write_item, RequestItems={table: [{"PutRequest": {"Item": {"pk": {"S": "p"}}}}]}) == \
        ("ValidationException", "One or more parameter values were invalid: Missing the key sk in the item")
    both = {"PutRequest": {"Item": key("p", 1)}, "DeleteRequest": {"Key": key("p", 2)}}
    response = raw_post(node, "BatchWriteItem", json.dumps({"RequestItems": {table: [both]}}).encode())
    assert response.status_code == 400 and response.json()["__type"].endswith("#ValidationException")
    response = raw_post(node, "BatchWriteItem", json.dumps({"RequestItems": {}}).encode())
    assert response.status_code == 400 and "at 'requestItems' failed to satisfy constraint" in response.json()["message"]
    # A refused batch wrote nothing.
    assert client.scan(TableName=table)["Count"] == 0
