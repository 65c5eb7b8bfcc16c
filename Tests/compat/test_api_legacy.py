"""The legacy parameters older applications send (Expected, ConditionalOperator,
AttributeUpdates, KeyConditions, QueryFilter, ScanFilter, AttributesToGet), against a real
`granary serve`."""

import pytest

from granary_process import error, make_table


@pytest.fixture
def table(client):
    return make_table(client, prefix="legacy")


def key(sk, pk="p"):
    return {"pk": {"S": pk}, "sk": {"N": str(sk)}}



def test_expected_on_put_delete_and_update(client, table):
    client.put_item(TableName=table, Item={**key(1), "n": {"N": "1"}}, Expected={"pk": {"Exists": False}})
    assert error(client.put_item, TableName=table, Item=key(1), Expected={"pk": {"Exists": False}})[0] == \
        "ConditionalCheckFailedException"
    client.put_item(TableName=table, Item={**key(1), "n": {"N": "2"}}, Expected={"n": {"Value": {"N": "1"}}})
    assert error(client.delete_item, TableName=table, Key=key(1),
                 Expected={"n": {"ComparisonOperator": "GT", "AttributeValueList": [{"N": "5"}]}})[0] == \
        "ConditionalCheckFailedException"
    # OR: one of the two holds.
    client.update_item(TableName=table, Key=key(1), AttributeUpdates={"flag": {"Value": {"BOOL": True}}},
                       Expected={"n": {"ComparisonOperator": "GT", "AttributeValueList": [{"N": "5"}]},
                                 "missing": {"ComparisonOperator": "NULL"}}, ConditionalOperator="OR")
    assert client.get_item(TableName=table, Key=key(1))["Item"]["flag"] == {"BOOL": True}
    client.delete_item(TableName=table, Key=key(1),
                       Expected={"n": {"ComparisonOperator": "BETWEEN", "AttributeValueList": [{"N": "1"}, {"N": "3"}]}})
    assert "Item" not in client.get_item(TableName=table, Key=key(1))


def test_attribute_updates_actions(client, table):
    client.update_item(TableName=table, Key=key(2), AttributeUpdates={
        "name": {"Value": {"S": "granary"}, "Action": "PUT"}, "count": {"Value": {"N": "5"}, "Action": "ADD"},
        "tags": {"Value": {"SS": ["a", "b", "c"]}, "Action": "ADD"}, "gone": {"Action": "DELETE"}})
    updated = client.update_item(TableName=table, Key=key(2), ReturnValues="ALL_NEW", AttributeUpdates={
        "count": {"Value": {"N": "-2"}, "Action": "ADD"}, "tags": {"Value": {"SS": ["b"]}, "Action": "DELETE"},
        "name": {"Action": "DELETE"}})["Attributes"]
    assert updated["count"] == {"N": "3"} and sorted(updated["tags"]["SS"]) == ["a", "c"] and "name" not in updated
    assert error(client.update_item, TableName=table, Key=key(2), AttributeUpdates={"sk": {"Value": {"N": "9"}}}) == \
        ("ValidationException", "One or more parameter values were invalid: Cannot update attribute sk. This attribute is part of the key")
    assert error(client.update_item, TableName=table, Key=key(2), AttributeUpdates={"x": {"Action": "PUT"}})[0] == "ValidationException"


def test_key_conditions_query_filter_and_scan_filter(client, table):
    for sk in range(10):
        client.put_item(TableName=table, Item={**key(sk), "even": {"BOOL": sk % 2 == 0}, "label": {"S": f"item-{sk}"}})
    client.put_item(TableName=table, Item={**key(0, pk="other"), "even": {"BOOL": True}})
    found = client.query(TableName=table, KeyConditions={
        "pk": {"ComparisonOperator": "EQ", "AttributeValueList": [{"S": "p"}]},
        "sk": {"ComparisonOperator": "BETWEEN", "AttributeValueList": [{"N": "2"}, {"N": "7"}]}},
        QueryFilter={"even": {"ComparisonOperator": "EQ", "AttributeValueList": [{"BOOL": True}]}},
        AttributesToGet=["sk"])
    assert found["Items"] == [{"sk": {"N": "2"}}, {"sk": {"N": "4"}}, {"sk": {"N": "6"}}] and found["ScannedCount"] == 6
    scanned = client.scan(TableName=table, ScanFilter={
        "label": {"ComparisonOperator": "BEGINS_WITH", "AttributeValueList": [{"S": "item-1"}]},
        "pk": {"ComparisonOperator": "IN", "AttributeValueList": [{"S": "other"}]}}, ConditionalOperator="OR")
    assert sorted((item["pk"]["S"], item["sk"]["N"]) for item in scanned["Items"]) == [("other", "0"), ("p", "1")]
    scanned = client.scan(TableName=table, ScanFilter={"label": {"ComparisonOperator": "NOT_CONTAINS", "AttributeValueList": [{"S": "-3"}]}})
    assert scanned["Count"] == 9  # the item without a label does not count


def test_mixing_and_bad_legacy_parameters(client, table):
    assert error(client.put_item, TableName=table, Item=key(3), Expected={"pk": {"Exists": False}},
                 ConditionExpression="attribute_not_exists(pk)") == \
        ("ValidationException", "Can not use both expression and non-expression parameters in the same request: "
         "Non-expression parameters: {Expected} Expression parameters: {ConditionExpression}")
    assert error(client.query, TableName=table, KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": "p"}},
                 QueryFilter={"x": {"ComparisonOperator": "NULL"}})[0] == "ValidationException"
    assert error(client.query, TableName=table, KeyConditions={"pk": {"ComparisonOperator": "EQ", "AttributeValueList": [{"S": "p"}]},
                                                                "sk": {"ComparisonOperator": "NE", "AttributeValueList": [{"N": "1"}]}}) == \
        ("ValidationException", "Attempted conditional constraint is not an indexable operation")
    assert error(client.scan, TableName=table, ScanFilter={"x": {"ComparisonOperator": "EQ", "AttributeValueList": []}}) == \
        ("ValidationException", "One or more parameter values were invalid: Invalid number of argument(s) for the EQ ComparisonOperator")
    assert error(client.put_item, TableName=table, Item=key(3), Expected={"pk": {"Exists": True}})[0] == "ValidationException"
    assert error(client.scan, TableName=table, ConditionalOperator="OR")[0] == "ValidationException"
    assert error(client.query, TableName=table, KeyConditions={"pk": {"ComparisonOperator": "EQ", "AttributeValueList": [{"S": "p"}]}},
                 QueryFilter={"sk": {"ComparisonOperator": "NULL"}}) == \
        ("ValidationException", "QueryFilter can only contain non-key attributes: Primary key attribute: sk")
