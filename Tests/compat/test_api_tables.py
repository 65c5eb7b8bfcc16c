"""Tables through boto3 against a real `granary serve`: the control plane."""
import uuid


from granary_process import Granary, error


def name():
    return "t-" + uuid.uuid4().hex[:12]


def create(client, table, sort=None, sort_type="S", **extra):
    schema = [{"AttributeName": "pk", "KeyType": "HASH"}]
    definitions = [{"AttributeName": "pk", "AttributeType": "S"}]
    if sort:
        schema.append({"AttributeName": sort, "KeyType": "RANGE"})
        definitions.append({"AttributeName": sort, "AttributeType": sort_type})
    extra.setdefault("BillingMode", "PAY_PER_REQUEST")
    return client.create_table(TableName=table, KeySchema=schema, AttributeDefinitions=definitions, **extra)



def test_create_describe_list_delete(client):
    table = name()
    created = create(client, table, sort="sk", sort_type="N", Tags=[{"Key": "team", "Value": "storage"}])["TableDescription"]
    assert created["TableName"] == table
    assert created["TableStatus"] == "ACTIVE"
    assert created["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}]
    assert created["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    assert created["TableArn"].endswith(":table/" + table)
    described = client.describe_table(TableName=table)["Table"]
    assert described["ItemCount"] == 0 and described["TableSizeBytes"] == 0
    assert described["CreationDateTime"] == created["CreationDateTime"]
    client.get_waiter("table_exists").wait(TableName=table, WaiterConfig={"Delay": 1, "MaxAttempts": 5})
    assert table in client.list_tables()["TableNames"]
    assert client.delete_table(TableName=table)["TableDescription"]["TableStatus"] == "DELETING"
    assert error(client.describe_table, TableName=table)[0] == "ResourceNotFoundException"
    assert table not in client.list_tables()["TableNames"]


def test_list_tables_paginates(client):
    tables = sorted(name() for _ in range(7))
    for table in tables:
        create(client, table)
    first = client.list_tables(Limit=3)
    assert len(first["TableNames"]) == 3 and "LastEvaluatedTableName" in first
    seen = []
    for page in client.get_paginator("list_tables").paginate(PaginationConfig={"PageSize": 2}):
        seen += page["TableNames"]
    assert all(table in seen for table in tables)
    assert seen == sorted(seen) and len(seen) == len(set(seen))


def test_create_table_errors(client):
    table = name()
    create(client, table)
    assert error(create, client, table)[0] == "ResourceInUseException"
    code, message = error(create, client, "ab")
    assert code == "ValidationException" and "length greater than or equal to 3" in message
    code, message = error(create, client, "bad name!")
    assert code == "ValidationException" and "regular expression pattern" in message
    code, message = error(client.create_table, TableName=name(), KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                          AttributeDefinitions=[{"AttributeName": "other", "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST")
    assert code == "ValidationException" and "not defined in AttributeDefinitions" in message
    code, message = error(create, client, name(), BillingMode="PROVISIONED")
    assert code == "ValidationException" and "ReadCapacityUnits and WriteCapacityUnits must both be specified" in message
    code, message = error(client.update_table, TableName=table, GlobalSecondaryIndexUpdates=[{"Delete": {"IndexName": "xyz"}}])
    assert code == "ResourceNotFoundException" and message == "Requested resource not found: Index: xyz not found"
    assert error(client.delete_table, TableName=name())[0] == "ResourceNotFoundException"


def test_update_table_billing_and_throughput(client):
    table = name()
    create(client, table, BillingMode="PROVISIONED", ProvisionedThroughput={"ReadCapacityUnits": 5, "WriteCapacityUnits": 5})
    updated = client.update_table(TableName=table, ProvisionedThroughput={"ReadCapacityUnits": 10, "WriteCapacityUnits": 7})
    assert updated["TableDescription"]["ProvisionedThroughput"]["ReadCapacityUnits"] == 10
    client.update_table(TableName=table, BillingMode="PAY_PER_REQUEST")
    assert client.describe_table(TableName=table)["Table"]["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    assert error(client.update_table, TableName=table)[0] == "ValidationException"
    client.update_table(TableName=table, DeletionProtectionEnabled=True)
    assert error(client.delete_table, TableName=table)[0] == "ResourceInUseException"
    client.update_table(TableName=table, DeletionProtectionEnabled=False)
    client.delete_table(TableName=table)


def test_tags(client):
    table = name()
    arn = create(client, table)["TableDescription"]["TableArn"]
    client.tag_resource(ResourceArn=arn, Tags=[{"Key": "a", "Value": "1"}, {"Key": "b", "Value": "2"}])
    client.untag_resource(ResourceArn=arn, TagKeys=["a"])
    assert client.list_tags_of_resource(ResourceArn=arn)["Tags"] == [{"Key": "b", "Value": "2"}]
    assert error(client.list_tags_of_resource, ResourceArn=arn.replace(table, name()))[0] == "ResourceNotFoundException"
    assert error(client.list_tags_of_resource, ResourceArn="not-an-arn")[0] == "AccessDeniedException"  # as DynamoDB answers a malformed ARN


def test_time_to_live_settings(client):
    table = name()
    create(client, table)
    assert client.describe_time_to_live(TableName=table)["TimeToLiveDescription"]["TimeToLiveStatus"] == "DISABLED"
    client.update_time_to_live(TableName=table, TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires"})
    described = client.describe_time_to_live(TableName=table)["TimeToLiveDescription"]
    assert described == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expires"}
    code, message = error(client.update_time_to_live, TableName=table, TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires"})
    assert code == "ValidationException" and "already enabled" in message


def test_limits_and_endpoints(client):
    limits = client.describe_limits()
    assert limits["TableMaxReadCapacityUnits"] > 0
    assert client.describe_endpoints()["Endpoints"][0]["CachePeriodInMinutes"] == 1440


def test_tables_survive_kill_9():
    server = Granary().wait_ready()
    client = server.client()
    table = name()
    create(client, table, sort="sk", Tags=[{"Key": "k", "Value": "v"}])
    client.put_item(TableName=table, Item={"pk": {"S": "a"}, "sk": {"S": "b"}, "v": {"N": "1"}})
    server.kill()
    again = Granary(data_dir=server.data_dir).wait_ready()
    try:
        client = again.client()
        assert client.describe_table(TableName=table)["Table"]["KeySchema"][1]["AttributeName"] == "sk"
        assert client.describe_table(TableName=table)["Table"]["ItemCount"] == 1
        assert client.get_item(TableName=table, Key={"pk": {"S": "a"}, "sk": {"S": "b"}})["Item"]["v"] == {"N": "1"}
        client.delete_table(TableName=table)
        create(client, table)  # the name is free again, and the new table is empty
        assert "Item" not in client.get_item(TableName=table, Key={"pk": {"S": "a"}})
    finally:
        again.kill()
