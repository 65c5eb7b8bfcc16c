#!/usr/bin/env python3
"""Black-box request fuzzer: hostile DynamoDB requests, generated from the API model, sent
over HTTP to a real `granary serve`.

Every request starts as a valid one for an operation of the model (Fuzz/dynamodb-api-model.json,
AWS's model with the documentation stripped), built against the fuzz tables, then is mutated:
wrong JSON types in any member, every AttributeValue type in every key position, empty and
oversized strings, binaries and numbers at and past each limit, sets with duplicates, deep
nesting of maps, lists and expressions, huge arrays, unknown members and operations, and at
the byte level duplicate members, invalid UTF-8, lone surrogates and truncation.

Oracles, checked on every answer: the process stays up; the answer is a 2xx, or a 4xx whose
JSON names a `__type` (413, 431, 411 and 505 where HTTP framing decides); never a 5xx and
never a hang (a 20-second timeout). Before and after, a canary table of acknowledged items,
which the generator never names, is read back whole.

    Fuzz/api_fuzz.py --endpoint URL [--requests N] [--seconds S] [--seed K]
                     [--credentials ACCESS_KEY:SECRET] [--failures DIR]

Exits 1 on the first broken oracle, after saving the request to --failures.
"""
import argparse
import base64
import copy
import json
import os
import random
import sys
import time
import uuid

import requests

MODEL = json.load(open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "dynamodb-api-model.json")))
SHAPES, OPERATIONS = MODEL["shapes"], MODEL["operations"]
FRAMING_STATUSES = {411, 413, 431, 505}
SERVED = ["CreateTable", "DeleteTable", "DescribeTable", "ListTables", "UpdateTable", "TagResource", "UntagResource",
          "ListTagsOfResource", "DescribeEndpoints", "DescribeLimits", "DescribeTimeToLive", "UpdateTimeToLive",
          "DescribeContinuousBackups", "PutItem", "GetItem", "UpdateItem", "DeleteItem", "Query", "Scan",
          "BatchGetItem", "BatchWriteItem", "TransactWriteItems", "TransactGetItems"]
TABLES = {  # name: (partition key type, sort key type or None)
    "fuzz-hash": ("S", None), "fuzz-range": ("S", "N"), "fuzz-binary": ("B", "S"),
}
EXPRESSIONS = {
    "ConditionExpression": ["attribute_exists(#a)", "#a = :v", "size(#a) > :n", "begins_with(#a, :s) OR NOT #a IN (:v, :s)",
                            "#a BETWEEN :n AND :n", "attribute_type(#a, :t)", "contains(#a, :s)"],
    "FilterExpression": ["#a = :v", "attribute_not_exists(#a)", "#a.b[0] <> :v"],
    "UpdateExpression": ["SET #a = :v", "SET #a = if_not_exists(#a, :n) + :n REMOVE b", "ADD c :n DELETE d :ss",
                         "SET l = list_append(if_not_exists(l, :l), :l)", "REMOVE #a.b[1]"],
    "ProjectionExpression": ["#a", "#a, b.c[0]", "pk"],
    "KeyConditionExpression": ["pk = :pk", "pk = :pk AND sk > :sk", "pk = :pk AND begins_with(sk, :sk)",
                               "pk = :pk AND sk BETWEEN :sk AND :sk"],
}


def attribute_values():
    """One AttributeValue of every type, and malformed ones."""
    return [{"S": "x"}, {"N": "1"}, {"B": "eA=="}, {"BOOL": True}, {"NULL": True}, {"SS": ["a"]}, {"NS": ["1"]},
            {"BS": ["eA=="]}, {"M": {"a": {"S": "x"}}}, {"L": [{"N": "2"}]}, {}, {"S": "a", "N": "1"}, {"X": "y"},
            {"S": 1}, {"N": "1e"}, {"N": "NaN"}, {"B": "!!"}, {"SS": []}, {"NULL": False}, {"BOOL": "yes"}]


def hostile_values(rng):
    """Values at and past every limit, and of every wrong JSON type."""
    return [
        None, 0, -1, 2 ** 63, 1e308, "", "x", True, [], {}, [None], {"": None},
        "x" * 256, "x" * 1025, "x" * 2049, "x" * 65537, "é" * 1024, "\x00",
        {"S": ""}, {"S": "x" * 2048}, {"S": "x" * 2049}, {"S": "x" * 1025}, {"S": "x" * (400 * 1024 + 1)},
        {"B": ""}, {"B": base64.b64encode(b"x" * 2049).decode()}, {"N": "9" * 38}, {"N": "9" * 39},
        {"N": "1E+125"}, {"N": "1E+126"}, {"N": "1E-130"}, {"N": "-0"}, {"N": " 1"}, {"N": "0x10"},
        {"SS": ["a", "a"]}, {"NS": ["1", "1.0"]}, {"BS": ["eA==", "eA=="]}, {"NS": []},
        nested_value("M", 31), nested_value("M", 32), nested_value("L", 33), nested_value("M", 200),
        # Distinct members: copies of one shared dict would carry a later mutation inside
        # it 20,000 times over (a body of gigabytes, the fuzzer's own memory exhausted).
        [{"S": "x"} for _ in range(rng.choice([101, 1000, 20000]))], {f"k{i}": {"N": str(i)} for i in range(rng.choice([100, 5000]))},
        "(" * 300 + "a = :v" + ")" * 300, "NOT " * 2000 + "a = :v", "a." * 100 + "b", "a" + "[0]" * 100,
        " AND ".join(["a = :v"] * 600), "SET " + ", ".join(f"a{i} = :v" for i in range(400)),
        "#" * 300, ":", "attribute_exists(", "size(size(size(a)))", *attribute_values(),
    ]


def nested_value(kind, depth):
    value = {"S": "bottom"}
    for _ in range(depth):
        value = {"M": {"a": value}} if kind == "M" else {"L": [value]}
    return value


class Generator:
    def __init__(self, rng):
        self.rng = rng

    def table(self):
        return self.rng.choice(list(TABLES)) if self.rng.random() < 0.9 else self.rng.choice(
            ["missing-table", "x", "a" * 256, "bad name!", ""])

    def key(self, table):
        partition_type, sort_type = TABLES.get(table, ("S", None))
        key = {"pk": self.scalar(partition_type)}
        if sort_type:
            key["sk"] = self.scalar(sort_type)
        return key

    def scalar(self, kind):
        if kind == "N":
            return {"N": str(self.rng.randint(-5, 5))}
        if kind == "B":
            return {"B": base64.b64encode(bytes([self.rng.randrange(4)])).decode()}
        return {"S": self.rng.choice(["a", "b", "c"])}

    def valid(self, shape_name, member=None, table=None, depth=0):
        """A plausible valid value of a model shape; members DynamoDB gives meaning to are
        built for the fuzz tables."""
        shape = SHAPES[shape_name]
        kind = shape["type"]
        special = self.special(member, table)
        if special is not None:
            return special
        if kind == "structure":
            members = shape.get("members", {})
            if shape_name == "AttributeValue":
                return self.rng.choice(attribute_values()[:10])
            value = {}
            table = table or (self.table() if "TableName" in members else None)
            for name, member_shape in members.items():
                if name in shape.get("required", []) or (depth < 3 and self.rng.random() < 0.25):
                    value[name] = self.valid(member_shape, name, table, depth + 1)
            return value
        if kind == "list":
            count = min(shape.get("max", 3), max(shape.get("min", 0), self.rng.randint(0, 2)))
            return [self.valid(shape["member"], None, table, depth + 1) for _ in range(count)] if depth < 5 else []
        if kind == "map":
            if depth >= 5:
                return {}
            return {self.valid(shape["key"], None, table, depth + 1): self.valid(shape["value"], None, table, depth + 1)
                    for _ in range(self.rng.randint(1, 2))}
        if kind == "string":
            if "enum" in shape:
                return self.rng.choice(shape["enum"])
            return "a" * max(shape.get("min", 1), 3) if self.rng.random() < 0.8 else "fuzz-" + uuid.uuid4().hex[:6]
        if kind in ("integer", "long"):
            return max(shape.get("min", 1), 1)
        if kind == "boolean":
            return self.rng.random() < 0.5
        if kind == "blob":
            return base64.b64encode(b"x").decode()
        if kind == "double":
            return 1.0
        if kind == "timestamp":
            return time.time()
        return None

    def special(self, member, table):
        if member in ("TableName", "TableArn") or member == "ResourceArn" and self.rng.random() < 0.5:
            return table or self.table()
        if member == "ResourceArn":
            return f"arn:aws:dynamodb:us-east-1:000000000000:table/{table or self.table()}"
        if member in ("Key", "ExclusiveStartKey"):
            return self.key(table)
        if member == "Item":
            item = self.key(table)
            item["a"] = self.rng.choice(attribute_values()[:10])
            return item
        if member in EXPRESSIONS:
            return self.rng.choice(EXPRESSIONS[member])
        if member == "ExpressionAttributeNames":
            return {"#a": "a"}
        if member == "ExpressionAttributeValues":
            return {":v": {"S": "x"}, ":n": {"N": "1"}, ":s": {"S": "p"}, ":t": {"S": "S"}, ":l": {"L": []},
                    ":ss": {"SS": ["q"]}, ":pk": self.scalar(TABLES.get(table, ("S", None))[0]),
                    ":sk": self.scalar(TABLES.get(table, ("S", "N"))[1] or "N")}
        if member == "RequestItems":
            table = table or self.table()
            if self.rng.random() < 0.5:
                return {table: {"Keys": [self.key(table) for _ in range(self.rng.randint(1, 3))]}}
            return {table: [{"PutRequest": {"Item": self.key(table)}}, {"DeleteRequest": {"Key": self.key(table)}}]}
        return None

    def request(self):
        """(operation, body bytes, extra headers)."""
        rng = self.rng
        # Mostly the operations the node serves: the rest stop at UnknownOperationException.
        operation = rng.choice(SERVED if rng.random() < 0.85 else list(OPERATIONS))
        body = self.valid(OPERATIONS[operation])
        for _ in range(rng.choice([0, 1, 1, 1, 2, 3])):
            body = self.mutate(body)
        if rng.random() < 0.03:
            operation = rng.choice(["Bogus", "", "getItem", "GetItem ", "A" * 300])
        text = json.dumps(body).encode()
        if rng.random() < 0.15:
            text = self.mutate_bytes(text)
        headers = {}
        if rng.random() < 0.02:
            headers["Content-Encoding"] = rng.choice(["gzip", "deflate", "br", "identity"])
        return operation, text, headers

    def mutate(self, value):
        """Replaces one randomly chosen node of the JSON tree with a hostile value."""
        paths = []

        def walk(node, path, depth):
            paths.append(path)
            if depth > 8 or len(paths) > 2000:
                return
            if isinstance(node, dict):
                for name, child in node.items():
                    walk(child, path + [name], depth + 1)
            elif isinstance(node, list):
                for index, child in enumerate(node[:20]):
                    walk(child, path + [index], depth + 1)

        walk(value, [], 0)
        path = self.rng.choice(paths)
        replacement = copy.deepcopy(self.rng.choice(hostile_values(self.rng)))
        if not path:
            return replacement if self.rng.random() < 0.1 else dict(value, **{"UnknownMember": replacement}) \
                if isinstance(value, dict) else replacement
        parent = value
        for step in path[:-1]:
            parent = parent[step]
        if isinstance(parent, dict) and self.rng.random() < 0.2:
            parent[self.rng.choice(["", "pk", "sk", "a" * 300, "\u0000", "#a", ":v"])] = replacement  # a new name
        else:
            parent[path[-1]] = replacement
        return value

    def mutate_bytes(self, text):
        rng = self.rng
        choice = rng.randrange(6)
        if choice == 0 and text.startswith(b"{") and len(text) > 2:  # a duplicate member
            first_member_end = text.find(b",")
            if first_member_end > 0:
                return b"{" + text[1:first_member_end] + b"," + text[1:]
        if choice == 1:  # invalid UTF-8 inside a string
            at = text.find(b'"', rng.randrange(len(text)))
            if at > 0:
                return text[:at + 1] + rng.choice([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf4\x90\x80\x80"]) + text[at + 1:]
        if choice == 2:  # a lone surrogate escape
            at = text.find(b'"', rng.randrange(len(text)))
            if at > 0:
                return text[:at + 1] + rng.choice([b"\\ud800", b"\\udfff", b"\\ud800\\u0041", b"\\u00"]) + text[at + 1:]
        if choice == 3:  # truncated
            return text[:rng.randrange(len(text) + 1)]
        if choice == 4:  # nested past any parser's depth
            depth = rng.choice([79, 81, 5000])
            return b"[" * depth + b"]" * depth if rng.random() < 0.5 else b'{"a":' * depth + b"1" + b"}" * depth
        return bytes(byte if rng.random() > 0.01 else rng.randrange(256) for byte in text)


class Target:
    """The node under test: sends requests, signed when credentials are given."""

    def __init__(self, endpoint, credentials):
        self.endpoint = endpoint.rstrip("/")
        self.session = requests.Session()
        self.credentials = credentials

    def send(self, operation, body, headers=None, sign=True, timeout=20):
        all_headers = {"Content-Type": "application/x-amz-json-1.0"}
        if operation is not None:
            all_headers["X-Amz-Target"] = f"DynamoDB_20120810.{operation}"
        all_headers.update(headers or {})
        if self.credentials and sign:
            from botocore.auth import SigV4Auth
            from botocore.awsrequest import AWSRequest
            from botocore.credentials import Credentials
            key, secret = self.credentials
            request = AWSRequest(method="POST", url=self.endpoint + "/", data=body, headers=all_headers)
            SigV4Auth(Credentials(key, secret), "dynamodb", "us-east-1").add_auth(request)
            all_headers = dict(request.headers.items())
        return self.session.post(self.endpoint + "/", data=body, headers=all_headers, timeout=timeout)

    def call(self, operation, body):
        response = self.send(operation, json.dumps(body).encode())
        return response.status_code, response.json() if response.content else {}


def ensure_tables(target):
    for name, (partition_type, sort_type) in TABLES.items():
        status, _ = target.call("DescribeTable", {"TableName": name})
        if status == 200:
            continue
        schema = [{"AttributeName": "pk", "KeyType": "HASH"}]
        definitions = [{"AttributeName": "pk", "AttributeType": partition_type}]
        if sort_type:
            schema.append({"AttributeName": "sk", "KeyType": "RANGE"})
            definitions.append({"AttributeName": "sk", "AttributeType": sort_type})
        status, answer = target.call("CreateTable", {"TableName": name, "KeySchema": schema,
                                                     "AttributeDefinitions": definitions, "BillingMode": "PAY_PER_REQUEST"})
        if status not in (200, 400):
            raise SystemExit(f"cannot create fuzz table {name}: {status} {answer}")


def write_canary(target, count=50):
    name = "canary-" + uuid.uuid4().hex
    schema = {"TableName": name, "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}],
              "AttributeDefinitions": [{"AttributeName": "id", "AttributeType": "S"}], "BillingMode": "PAY_PER_REQUEST"}
    assert target.call("CreateTable", schema)[0] == 200
    items = {f"item-{i}": {"id": {"S": f"item-{i}"}, "v": {"N": str(i)}, "blob": {"B": base64.b64encode(os.urandom(64)).decode()}}
             for i in range(count)}
    for item in items.values():
        status, answer = target.call("PutItem", {"TableName": name, "Item": item})
        assert status == 200, answer
    return name, items


def check_canary(target, name, items):
    for key, item in items.items():
        status, answer = target.call("GetItem", {"TableName": name, "Key": {"id": {"S": key}}, "ConsistentRead": True})
        if status != 200 or answer.get("Item") != item:
            return f"canary item {key} changed: {status} {answer}"
    status, answer = target.call("Scan", {"TableName": name, "Select": "COUNT"})
    if status != 200 or answer.get("Count") != len(items):
        return f"canary table holds {answer.get('Count')} items, {len(items)} written"
    return None


def judge(response):
    """None when the answer keeps the oracles, else what is wrong."""
    status = response.status_code
    if 200 <= status < 300:
        return None
    if status >= 500:
        return f"HTTP {status}: {response.text[:300]}"
    if status in FRAMING_STATUSES:
        return None
    try:
        if "__type" in response.json():
            return None
    except ValueError:
        pass
    return f"HTTP {status} without a DynamoDB __type: {response.text[:300]}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--credentials", help="ACCESS_KEY:SECRET: sign requests (and send some unsigned or forged)")
    parser.add_argument("--failures", default=".build/fuzz/api-failures")
    arguments = parser.parse_args()
    seed = arguments.seed if arguments.seed is not None else random.randrange(1 << 32)
    rng = random.Random(seed)
    credentials = tuple(arguments.credentials.split(":", 1)) if arguments.credentials else None
    target = Target(arguments.endpoint, credentials)
    generator = Generator(rng)
    ensure_tables(target)
    canary, items = write_canary(target)
    statuses, types = {}, {}
    deadline = time.monotonic() + arguments.seconds
    sent = 0
    while sent < arguments.requests and time.monotonic() < deadline:
        if sent % 500 == 0:
            ensure_tables(target)
        operation, body, headers = generator.request()
        sign = not credentials or rng.random() < 0.9
        if credentials and not sign and rng.random() < 0.5:
            headers["Authorization"] = ("AWS4-HMAC-SHA256 Credential=" + credentials[0] + "/20260101/us-east-1/dynamodb/"
                                        "aws4_request, SignedHeaders=host, Signature=" + "0" * 64)
            headers["X-Amz-Date"] = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        try:
            response = target.send(operation, body, headers, sign=sign)
            problem = judge(response)
            if credentials and not sign and response.status_code < 300:
                problem = f"an unsigned or forged request was answered {response.status_code}"
        except requests.RequestException as failure:
            problem = f"no answer: {failure}"
            response = None
        sent += 1
        if response is not None:
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            try:
                kind = response.json().get("__type", "").rsplit("#", 1)[-1] if response.status_code >= 400 else "ok"
            except ValueError:
                kind = f"HTTP {response.status_code}"
            types[kind] = types.get(kind, 0) + 1
        if problem:
            os.makedirs(arguments.failures, exist_ok=True)
            path = os.path.join(arguments.failures, f"seed-{seed}-request-{sent}")
            with open(path, "wb") as output:
                output.write((operation or "").encode() + b"\n" + body)
            print(f"FAILED: seed {seed}, request {sent} ({operation}): {problem}\n  saved as {path} "
                  f"(replay: .build/debug/granary-fuzz-requests {path})", file=sys.stderr)
            return 1
    problem = check_canary(target, canary, items)
    if problem:
        print(f"FAILED: seed {seed}: {problem}", file=sys.stderr)
        return 1
    common = ", ".join(f"{name} {count}" for name, count in sorted(types.items(), key=lambda entry: -entry[1])[:8])
    print(f"api fuzz: seed {seed}, {sent} requests, 0 crashes, 0 5xx, canary intact; "
          f"statuses {dict(sorted(statuses.items()))}; answers: {common}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
