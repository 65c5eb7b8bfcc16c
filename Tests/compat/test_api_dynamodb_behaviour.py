"""Behaviours where DynamoDB differs from what its documentation suggests, each as DynamoDB does it."""
import pytest

from granary_process import error, make_table, raw_post


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


def test_a_malformed_json_body_names_line_and_column(node):
    response = raw_post(node, "ListTables", b'{\n  "Limit": 5,\n  oops}')
    assert response.status_code == 400 and response.json()["__type"].endswith("#SerializationException")
    assert "line: 3, column: 3" in response.json()["message"]


def test_arithmetic_past_38_digits_says_so(client):
    table = make_table(client, sort_type=None)
    key = {"pk": {"S": "n"}}
    client.put_item(TableName=table, Item={**key, "n": {"N": "9" * 38}})
    code, message = error(client.update_item, TableName=table, Key=key, UpdateExpression="ADD n :tenth",
                          ExpressionAttributeValues={":tenth": {"N": "0.1"}})
    assert (code, message) == ("ValidationException", "Attempting to store more than 38 significant digits in a Number")
    client.put_item(TableName=table, Item={**key, "n": {"N": "9E+125"}})
    code, message = error(client.update_item, TableName=table, Key=key, UpdateExpression="SET n = n + :big",
                          ExpressionAttributeValues={":big": {"N": "1E+125"}})
    assert (code, message) == ("ValidationException",
                               "Number overflow. Attempting to store a number with magnitude larger than supported range")
    assert client.get_item(TableName=table, Key=key)["Item"]["n"] == {"N": "9" + "0" * 125}


def condition_error(client, table, expression, values=None, names=None):
    """The message of a PutItem refused for its ConditionExpression."""
    arguments = {"TableName": table, "Item": {"pk": {"S": "c"}, "a": {"S": "x"}}, "ConditionExpression": expression}
    if values:
        arguments["ExpressionAttributeValues"] = values
    if names:
        arguments["ExpressionAttributeNames"] = names
    code, message = error(client.put_item, **arguments)
    assert code == "ValidationException", message
    return message


@pytest.mark.parametrize("expression, values, message", [
    ("a BETWEEN :n AND :s", {":n": {"N": "1"}, ":s": {"S": "a"}},
     "Invalid ConditionExpression: The BETWEEN operator requires same data type for lower and upper bounds; "
     "lower bound operand: AttributeValue: {N:1}, upper bound operand: AttributeValue: {S:a}"),
    ("a BETWEEN :b AND :a", {":a": {"S": "a"}, ":b": {"S": "b"}},
     "Invalid ConditionExpression: The BETWEEN operator requires upper bound to be greater than or equal to lower bound; "
     "lower bound operand: AttributeValue: {S:b}, upper bound operand: AttributeValue: {S:a}"),
    ("attribute_type(a, :n)", {":n": {"N": "1"}},
     "Invalid ConditionExpression: Incorrect operand type for operator or function; operator or function: attribute_type, operand type: N"),
    ("attribute_type(a, :t)", {":t": {"S": "STRING"}},
     "Invalid ConditionExpression: Invalid attribute type name found; type: STRING, valid types: {B,NULL,SS,BOOL,L,BS,N,NS,S,M}"),
    ("attribute_type(:v, :t)", {":v": {"S": "x"}, ":t": {"S": "S"}},
     "Invalid ConditionExpression: Operator or function requires a document path; operator or function: attribute_type"),
    ("attribute_exists(:v)", {":v": {"S": "x"}},
     "Invalid ConditionExpression: Operator or function requires a document path; operator or function: attribute_exists"),
    ("size(:n) > :n", {":n": {"N": "1"}},
     "Invalid ConditionExpression: Incorrect operand type for operator or function; operator or function: size, operand type: N"),
    ("size(a)", None,
     "Invalid ConditionExpression: The function is not allowed to be used this way in an expression; function: size"),
    ("list_append(a, :l) = :l", {":l": {"L": []}},
     "Invalid ConditionExpression: The function is not allowed in a condition expression; function: list_append"),
    ("if_not_exists(a, :v)", {":v": {"S": "x"}},
     "Invalid ConditionExpression: The function is not allowed in a condition expression; function: if_not_exists"),
    ("no_such_function(a)", None, "Invalid ConditionExpression: Invalid function name; function: no_such_function"),
    ("begins_with(a, :p, :p)", {":p": {"S": "x"}},
     "Invalid ConditionExpression: Incorrect number of operands for operator or function; operator or function: begins_with, number of operands: 3"),
    ("contains(a, a)", None,
     "Invalid ConditionExpression: The first operand must be distinct from the remaining operands for this operator or function; "
     "operator: contains, first operand: [a]"),
])
def test_condition_validation_says_what_is_wrong(client, expression, values, message):
    table = make_table(client, sort_type=None)
    assert condition_error(client, table, expression, values) == message


def test_size_of_a_constant_is_that_constant_size(client):
    table = make_table(client, sort_type=None)
    client.put_item(TableName=table, Item={"pk": {"S": "c"}, "a": {"S": "abc"}})
    client.put_item(TableName=table, Item={"pk": {"S": "c"}, "a": {"S": "abcd"}}, ConditionExpression="size(:v) = size(a)",
                    ExpressionAttributeValues={":v": {"S": "xyz"}})
    assert client.get_item(TableName=table, Key={"pk": {"S": "c"}})["Item"]["a"] == {"S": "abcd"}


@pytest.mark.parametrize("parameter", ["Expected", "ScanFilter"])
@pytest.mark.parametrize("condition, message", [
    ({"ComparisonOperator": "IN", "AttributeValueList": [{"S": "b"}, {"N": "1"}]},
     "One or more parameter values were invalid: AttributeValues inside AttributeValueList must be of same type"),
    ({"ComparisonOperator": "BETWEEN", "AttributeValueList": [{"N": "1"}, {"S": "b"}]},
     "One or more parameter values were invalid: AttributeValues inside AttributeValueList must be of same type"),
    ({"ComparisonOperator": "BETWEEN", "AttributeValueList": [{"S": "b"}, {"S": "a"}]},
     "The BETWEEN condition was provided a range where the lower bound is greater than the upper bound"),
    ({"ComparisonOperator": "CONTAINS", "AttributeValueList": [{"SS": ["a"]}]},
     "One or more parameter values were invalid: ComparisonOperator CONTAINS is not valid for SS AttributeValue type"),
    ({"ComparisonOperator": "IN", "AttributeValueList": [{"BOOL": True}]},
     "One or more parameter values were invalid: ComparisonOperator IN is not valid for BOOL AttributeValue type"),
])
def test_legacy_conditions_check_their_operands(client, parameter, condition, message):
    table = make_table(client, sort_type=None)
    if parameter == "Expected":
        call = lambda: client.put_item(TableName=table, Item={"pk": {"S": "c"}}, Expected={"a": condition})
    else:
        call = lambda: client.scan(TableName=table, ScanFilter={"a": condition})
    assert error(call) == ("ValidationException", message)


@pytest.mark.parametrize("expression, values, message", [
    ("SET a.b = :v", {":v": {"S": "x"}}, "The document path provided in the update expression is invalid for update"),
    ("SET m[0] = :v", {":v": {"S": "x"}}, "The document path provided in the update expression is invalid for update"),
    ("SET l[0].x = :v", {":v": {"S": "x"}}, "The document path provided in the update expression is invalid for update"),
    ("SET a = no_such_function(a)", None, "Invalid UpdateExpression: Invalid function name; function: no_such_function"),
    ("SET a = size(a)", None, "Invalid UpdateExpression: The function is not allowed in an update expression; function: size"),
    ("SET a = if_not_exists(:v, a)", {":v": {"S": "x"}},
     "Invalid UpdateExpression: Operator or function requires a document path; operator or function: if_not_exists"),
    ("SET l = list_append(l, :v)", {":v": {"S": "x"}},
     "Invalid UpdateExpression: Incorrect operand type for operator or function; operator or function: list_append, operand type: S"),
    ("SET l = list_append(l)", None,
     "Invalid UpdateExpression: Incorrect number of operands for operator or function; operator or function: list_append, number of operands: 1"),
    ("SET a = a + :v", {":v": {"S": "x"}},
     "Invalid UpdateExpression: Incorrect operand type for operator or function; operator or function: +, operand type: S"),
    ("SET m.x = :v, m[1] = :v", {":v": {"S": "x"}},
     "Invalid UpdateExpression: Two document paths conflict with each other; must remove or rewrite one of these paths; "
     "path one: [m, x], path two: [m, [1]]"),
    ("SET m.x = :v REMOVE m", {":v": {"S": "x"}},
     "Invalid UpdateExpression: Two document paths overlap with each other; must remove or rewrite one of these paths; "
     "path one: [m, x], path two: [m]"),
    ("REMOVE no_such_function(a)", None, None),
])
def test_update_validation_says_what_is_wrong(client, expression, values, message):
    table = make_table(client, sort_type=None)
    key = {"pk": {"S": "u"}}
    item = {**key, "a": {"S": "text"}, "m": {"M": {"x": {"N": "1"}}}, "l": {"L": [{"S": "scalar"}]}}
    client.put_item(TableName=table, Item=item)
    arguments = {"TableName": table, "Key": key, "UpdateExpression": expression}
    if values:
        arguments["ExpressionAttributeValues"] = values
    code, got = error(client.update_item, **arguments)
    assert code == "ValidationException"
    if message is None:
        assert got.startswith("Invalid UpdateExpression: Syntax error; token: \"(\"")
    else:
        assert got == message
    assert client.get_item(TableName=table, Key=key)["Item"] == item


def test_a_list_index_past_the_end_appends(client):
    table = make_table(client, sort_type=None)
    key = {"pk": {"S": "l"}}
    client.put_item(TableName=table, Item={**key, "l": {"L": [{"N": "0"}]}})
    client.update_item(TableName=table, Key=key, UpdateExpression="SET l[10] = :v", ExpressionAttributeValues={":v": {"N": "1"}})
    assert client.get_item(TableName=table, Key=key)["Item"]["l"] == {"L": [{"N": "0"}, {"N": "1"}]}


def test_projection_paths_must_not_overlap_or_nest_past_32(client):
    table = make_table(client, sort_type=None)
    key = {"pk": {"S": "p"}}
    client.put_item(TableName=table, Item={**key, "a": {"M": {"b": {"N": "1"}}}})
    code, message = error(client.get_item, TableName=table, Key=key, ProjectionExpression="a, a.b")
    assert (code, message) == ("ValidationException", "Invalid ProjectionExpression: Two document paths overlap with each other; "
                               "must remove or rewrite one of these paths; path one: [a], path two: [a, b]")
    code, message = error(client.get_item, TableName=table, Key=key, ProjectionExpression="a.b, a[0]")
    assert code == "ValidationException" and "Two document paths conflict with each other" in message
    deepest = "a" + ".b" * 31
    assert client.get_item(TableName=table, Key=key, ProjectionExpression=deepest).get("Item", {}) == {}
    code, message = error(client.get_item, TableName=table, Key=key, ProjectionExpression=deepest + ".b")
    assert (code, message) == ("ValidationException",
                               "Invalid ProjectionExpression: The document path has too many nesting levels; nesting levels: 33")
