"""Behaviours where DynamoDB differs from what its documentation suggests, each as DynamoDB does it."""
import pytest

from granary_process import error, make_table


def test_delete_table_describes_the_deleting_table_by_its_summary(client):
    table = make_table(client)
    description = client.delete_table(TableName=table)["TableDescription"]
    assert description["TableStatus"] == "DELETING"
    assert description["TableArn"].endswith(f":table/{table}") and description["TableId"]
    assert "ProvisionedThroughput" in description and description["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    for absent in ("CreationDateTime", "KeySchema", "AttributeDefinitions"):
        assert absent not in description


def test_describe_continuous_backups(client):
    table = make_table(client)
    answer = client.describe_continuous_backups(TableName=table)["ContinuousBackupsDescription"]
    assert answer["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"] == "DISABLED"
    assert error(client.describe_continuous_backups, TableName="no-such-table")[0] == "TableNotFoundException"


def test_tags_outside_the_alphabet_and_malformed_arns(client):
    table = make_table(client)
    arn = client.describe_table(TableName=table)["Table"]["TableArn"]
    client.tag_resource(ResourceArn=arn, Tags=[{"Key": "team name_1.:/=+-@", "Value": "Ünïcode 42"}])
    code, message = error(client.tag_resource, ResourceArn=arn, Tags=[{"Key": "bad*key", "Value": "v"}])
    assert code == "ValidationException" and "regular expression pattern" in message
    assert error(client.tag_resource, ResourceArn=arn, Tags=[{"Key": "k", "Value": "bad{value}"}])[0] == "ValidationException"
    assert error(client.tag_resource, ResourceArn="not-an-arn", Tags=[{"Key": "k", "Value": "v"}])[0] == "AccessDeniedException"


def test_attribute_name_limits(client):
    table = make_table(client, sort_type=None)
    longest = "n" * 65535
    client.put_item(TableName=table, Item={"pk": {"S": "p"}, longest: {"N": "1"}})
    assert client.get_item(TableName=table, Key={"pk": {"S": "p"}}, ProjectionExpression="#n",
                           ExpressionAttributeNames={"#n": longest})["Item"] == {longest: {"N": "1"}}
    code, message = error(client.put_item, TableName=table, Item={"pk": {"S": "p"}, longest + "n": {"N": "1"}})
    assert code == "ValidationException" and "65536" in message
    assert error(client.put_item, TableName=table, Item={"pk": {"S": "p"}, "": {"N": "1"}})[0] == "ValidationException"
    assert error(client.get_item, TableName=table, Key={"pk": {"S": "p"}}, ProjectionExpression="#n",
                 ExpressionAttributeNames={"#n": longest + "n"})[0] == "ValidationException"
    key_name = "k" * 255
    client.create_table(TableName=table + "-long", BillingMode="PAY_PER_REQUEST",
                        KeySchema=[{"AttributeName": key_name, "KeyType": "HASH"}],
                        AttributeDefinitions=[{"AttributeName": key_name, "AttributeType": "S"}])
    for schema_name, definition_name in ((key_name + "k", key_name + "k"), (key_name + "k", "short"), ("short", key_name + "k")):
        code, message = error(client.create_table, TableName=table + "-longer", BillingMode="PAY_PER_REQUEST",
                              KeySchema=[{"AttributeName": schema_name, "KeyType": "HASH"}],
                              AttributeDefinitions=[{"AttributeName": definition_name, "AttributeType": "S"}])
        assert code == "ValidationException" and "less than or equal to 255" in message


def test_query_accepts_key_conditions_beside_filter_and_projection_expressions(client):
    table = make_table(client, sort_type="N")
    for index in range(4):
        client.put_item(TableName=table, Item={"pk": {"S": "p"}, "sk": {"N": str(index)}, "v": {"N": str(index % 2)}})
    answer = client.query(TableName=table, KeyConditions={"pk": {"ComparisonOperator": "EQ", "AttributeValueList": [{"S": "p"}]}},
                          FilterExpression="v = :one", ProjectionExpression="sk", ExpressionAttributeValues={":one": {"N": "1"}})
    assert answer["Items"] == [{"sk": {"N": "1"}}, {"sk": {"N": "3"}}]
    assert client.query(TableName=table, Select="COUNT",
                        KeyConditions={"pk": {"ComparisonOperator": "EQ", "AttributeValueList": [{"S": "p"}]}})["Count"] == 4
    code, message = error(client.query, TableName=table, KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": "p"}},
                          QueryFilter={"v": {"ComparisonOperator": "EQ", "AttributeValueList": [{"N": "1"}]}})
    assert code == "ValidationException" and "Can not use both expression and non-expression parameters" in message


@pytest.mark.parametrize("update", [
    {"UpdateExpression": "REMOVE b"},
    {"UpdateExpression": "DELETE s :s", "ExpressionAttributeValues": {":s": {"SS": ["x"]}}},
    {"AttributeUpdates": {"b": {"Action": "DELETE"}}},
])
def test_update_that_only_removes_does_not_create_a_missing_item(client, update):
    table = make_table(client, sort_type=None)
    answer = client.update_item(TableName=table, Key={"pk": {"S": "missing"}}, ReturnValues="ALL_NEW", **update)
    assert "Attributes" not in answer
    assert "Item" not in client.get_item(TableName=table, Key={"pk": {"S": "missing"}})
    client.update_item(TableName=table, Key={"pk": {"S": "created"}}, UpdateExpression="SET a = :a REMOVE b",
                       ExpressionAttributeValues={":a": {"N": "1"}})
    assert client.get_item(TableName=table, Key={"pk": {"S": "created"}})["Item"] == {"pk": {"S": "created"}, "a": {"N": "1"}}


def test_a_malformed_number_says_numeric(client):
    table = make_table(client, sort_type=None)
    code, message = error(client.put_item, TableName=table, Item={"pk": {"S": "p"}, "n": {"N": "abc"}})
    assert code == "ValidationException" and message == "The parameter cannot be converted to a numeric value: abc"
