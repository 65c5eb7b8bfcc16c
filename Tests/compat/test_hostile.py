"""Requests built to hurt the node: each gets DynamoDB's error and the node keeps answering.

The connection hand-over (the router's peek at a single-item request's key, which runs on
the receiving core before the operation) used to hash whatever key value arrived, and a key
of the wrong type stopped the process; a Query's over-long partition key did the same one
step further in. These run on a node with two reactors, where the peek runs.
"""
import json

import boto3
import botocore.config
import pytest
import requests

from granary_process import Granary, raw_post

KEY_VALUES_OF_EVERY_TYPE = [
    {"BOOL": True}, {"NULL": True}, {"M": {"a": {"S": "x"}}}, {"L": [{"S": "x"}]},
    {"SS": ["x"]}, {"NS": ["1"]}, {"BS": ["eA=="]}, {"N": "1"}, {"B": "eA=="}, {"S": ""},
    {"S": "x" * 2049}, {"S": 5}, {"N": "not a number"}, {"B": "%%%"}, {}, {"S": "a", "N": "1"},
]


def alive(node):
    assert requests.get(node.endpoint + "/", timeout=5).status_code == 200


def hostile_requests(table):
    for value in KEY_VALUES_OF_EVERY_TYPE:
        yield "GetItem", {"TableName": table, "Key": {"p": value}}
        yield "DeleteItem", {"TableName": table, "Key": {"p": value}}
        yield "UpdateItem", {"TableName": table, "Key": {"p": value}, "UpdateExpression": "SET a = :a",
                             "ExpressionAttributeValues": {":a": {"S": "x"}}}
        yield "PutItem", {"TableName": table, "Item": {"p": value}}
        yield "Query", {"TableName": table, "KeyConditionExpression": "p = :p", "ExpressionAttributeValues": {":p": value}}
    yield "Query", {"TableName": table, "KeyConditions": {"p": {"ComparisonOperator": "EQ",
                                                                "AttributeValueList": [{"S": "x" * 5000}]}}}


@pytest.fixture(scope="module")
def open_node():
    node = Granary(extra_args=("--cores", "0,1")).wait_ready()
    node.client().create_table(TableName="hostile", BillingMode="PAY_PER_REQUEST",
                               KeySchema=[{"AttributeName": "p", "KeyType": "HASH"}],
                               AttributeDefinitions=[{"AttributeName": "p", "AttributeType": "S"}])
    yield node
    node.kill()


def test_the_reported_request_is_a_validation_error(open_node):
    response = raw_post(open_node, "GetItem", json.dumps({"TableName": "hostile", "Key": {"p": {"BOOL": True}}}))
    assert response.status_code == 400
    assert response.json()["__type"] == "com.amazonaws.dynamodb.v20120810#ValidationException"
    assert response.json()["message"] == "The provided key element does not match the schema"
    alive(open_node)


def test_key_values_of_every_type_and_size_get_errors_not_a_crash(open_node):
    for operation, body in hostile_requests("hostile"):
        response = raw_post(open_node, operation, json.dumps(body))
        assert response.status_code == 400, (operation, body, response.text)
        assert response.json()["__type"].rsplit("#", 1)[1] in ("ValidationException", "SerializationException"), response.text
    alive(open_node)


def test_a_query_over_the_key_limits_says_which_limit(open_node):
    client = open_node.client()
    with pytest.raises(client.exceptions.ClientError) as raised:
        client.query(TableName="hostile", KeyConditionExpression="p = :p", ExpressionAttributeValues={":p": {"S": "x" * 2049}})
    assert "Size of hashkey has exceeded the maximum size limit of2048 bytes" in raised.value.response["Error"]["Message"]
    with pytest.raises(client.exceptions.ClientError) as raised:
        client.query(TableName="hostile", KeyConditionExpression="p = :p", ExpressionAttributeValues={":p": {"S": ""}})
    assert "cannot contain an empty string value" in raised.value.response["Error"]["Message"]
    alive(open_node)


@pytest.fixture(scope="module")
def secured_node(tmp_path_factory):
    credentials = tmp_path_factory.mktemp("hostile") / "credentials"
    credentials.write_text("AKIDHOSTILE secret\n")
    node = Granary(extra_args=("--cores", "0,1", "--credentials", str(credentials))).wait_ready()
    client = node.client(aws_access_key_id="AKIDHOSTILE", aws_secret_access_key="secret")
    client.create_table(TableName="hostile", BillingMode="PAY_PER_REQUEST",
                        KeySchema=[{"AttributeName": "p", "KeyType": "HASH"}],
                        AttributeDefinitions=[{"AttributeName": "p", "AttributeType": "S"}])
    yield node, client
    node.kill()


def test_with_credentials_an_unsigned_hostile_request_is_refused_before_any_work(secured_node):
    node, _ = secured_node
    for operation, body in hostile_requests("hostile"):
        response = raw_post(node, operation, json.dumps(body))
        assert response.status_code == 400, response.text
        assert response.json()["__type"] == "com.amazon.coral.service#MissingAuthenticationTokenException"
        forged = raw_post(node, operation, json.dumps(body), headers={
            "Authorization": "AWS4-HMAC-SHA256 Credential=AKIDHOSTILE/20260101/us-east-1/dynamodb/aws4_request, "
                             "SignedHeaders=host, Signature=" + "0" * 64,
            "X-Amz-Date": "20260101T000000Z"})
        assert forged.json()["__type"] == "com.amazon.coral.service#InvalidSignatureException", forged.text
    alive(node)


def test_with_credentials_a_signed_hostile_request_is_a_validation_error(secured_node):
    node, client = secured_node
    client.put_item(TableName="hostile", Item={"p": {"S": "kept"}})
    for value in KEY_VALUES_OF_EVERY_TYPE:
        if not isinstance(value.get("S", ""), str) or len(value) != 1:
            continue  # boto3 refuses these itself
        for call in (lambda: client.get_item(TableName="hostile", Key={"p": value}),
                     lambda: client.delete_item(TableName="hostile", Key={"p": value}),
                     lambda: client.put_item(TableName="hostile", Item={"p": value}),
                     lambda: client.query(TableName="hostile", KeyConditionExpression="p = :p",
                                          ExpressionAttributeValues={":p": value})):
            with pytest.raises(client.exceptions.ClientError) as raised:
                call()
            assert raised.value.response["Error"]["Code"] == "ValidationException", value
    assert client.get_item(TableName="hostile", Key={"p": {"S": "kept"}})["Item"] == {"p": {"S": "kept"}}
    alive(node)
