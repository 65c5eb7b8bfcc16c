"""HTTP as DynamoDB speaks it: Date and Server headers, CORS for browsers, compressed
responses whose x-amz-crc32 covers the bytes sent, and chunked request bodies."""
import binascii
import gzip
import json
import socket
import zlib
from email.utils import parsedate_to_datetime

import requests

from granary_process import Granary, make_table, raw_post


def test_every_answer_carries_date_and_server(node):
    for response in (requests.get(node.endpoint + "/", timeout=5), raw_post(node, "ListTables", "{}"),
                     raw_post(node, "GetItem", "{}")):
        assert parsedate_to_datetime(response.headers["Date"]).tzinfo is not None
        assert response.headers["Server"]


def test_cors_preflight_needs_no_signature_and_answers_carry_allow_origin(tmp_path):
    credentials = tmp_path / "credentials"
    credentials.write_text("AKIDCORS secret\n")
    secured = Granary(extra_args=("--credentials", str(credentials))).wait_ready()
    try:
        preflight = requests.options(secured.endpoint + "/", timeout=5, headers={
            "Origin": "https://app.example", "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type,x-amz-date,x-amz-target"})
        assert preflight.status_code == 200
        assert preflight.headers["Access-Control-Allow-Origin"] == "*"
        assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
        assert preflight.headers["Access-Control-Allow-Headers"] == "authorization,content-type,x-amz-date,x-amz-target"
        refused = raw_post(secured, "ListTables", "{}", headers={"Origin": "https://app.example"})
        assert refused.status_code == 400
        assert refused.headers["Access-Control-Allow-Origin"] == "*"
        assert "x-amzn-RequestId" in refused.headers["Access-Control-Expose-Headers"]
        signed = secured.client(aws_access_key_id="AKIDCORS", aws_secret_access_key="secret")
        assert signed.list_tables()["ResponseMetadata"]["HTTPHeaders"]["access-control-allow-origin"] == "*"
    finally:
        secured.kill()


def raw_response(node, body, accept_encoding):
    """The status, headers and undecoded body bytes of a Scan."""
    response = requests.post(node.endpoint + "/", data=body, stream=True, timeout=10, headers={
        "X-Amz-Target": "DynamoDB_20120810.Scan", "Content-Type": "application/x-amz-json-1.0",
        "Accept-Encoding": accept_encoding})
    return response.status_code, response.headers, response.raw.read(decode_content=False)


def test_large_answers_are_compressed_when_the_client_accepts_it_and_crc32_covers_the_bytes_sent(node, client):
    table = make_table(client, sort_type="N")
    for index in range(20):
        client.put_item(TableName=table, Item={"pk": {"S": "p"}, "sk": {"N": str(index)}, "text": {"S": "words " * 100}})
    body = json.dumps({"TableName": table})
    plain_status, plain_headers, plain = raw_response(node, body, "identity")
    assert plain_status == 200 and "Content-Encoding" not in plain_headers
    for encoding, decode in (("gzip", gzip.decompress), ("deflate", zlib.decompress)):
        status, headers, sent = raw_response(node, body, f"{encoding}")
        assert status == 200 and headers["Content-Encoding"] == encoding
        assert len(sent) < len(plain) / 4
        assert int(headers["x-amz-crc32"]) == binascii.crc32(sent)
        assert json.loads(decode(sent)) == json.loads(plain)
    # A small answer stays as it is.
    status, headers, sent = raw_response(node, json.dumps({"TableName": table, "Limit": 1}), "gzip")
    assert "Content-Encoding" not in headers and int(headers["x-amz-crc32"]) == binascii.crc32(sent)
    # boto3 through requests' gzip: the same items.
    assert len(client.scan(TableName=table)["Items"]) == 20


def send_raw(node, data):
    with socket.create_connection(("127.0.0.1", node.port), timeout=10) as connection:
        connection.sendall(data)
        received = b""
        while b"\r\n\r\n" not in received:
            chunk = connection.recv(65536)
            if not chunk:
                break
            received += chunk
        head, _, rest = received.partition(b"\r\n\r\n")
        length = int(next((line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")), b"0"))
        while len(rest) < length:
            chunk = connection.recv(65536)
            if not chunk:
                break
            rest += chunk
        return int(head.split(b" ")[1]), rest


def chunked(body, size):
    pieces = [body[start:start + size] for start in range(0, len(body), size)]
    return b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for piece in pieces) + b"0\r\n\r\n"


def test_chunked_request_bodies_are_decoded_and_bounded(node, client):
    table = make_table(client, sort_type=None)
    item = json.dumps({"TableName": table, "Item": {"pk": {"S": "chunked"}, "v": {"S": "x" * 5000}}}).encode()
    head = (b"POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Target: DynamoDB_20120810.PutItem\r\n"
            b"Content-Type: application/x-amz-json-1.0\r\nTransfer-Encoding: chunked\r\n\r\n")
    status, answer = send_raw(node, head + chunked(item, 700))
    assert status == 200, answer
    assert client.get_item(TableName=table, Key={"pk": {"S": "chunked"}})["Item"]["v"]["S"] == "x" * 5000
    # Chunk extensions and trailers are allowed and ignored.
    status, _ = send_raw(node, head + b"4;name=value\r\n" + item[:4] + b"\r\n" + chunked(item[4:], 9999)[:-2] + b"X-Trailer: 1\r\n\r\n")
    assert status == 200
    # Past the decoded bound: 413; malformed chunks: 400; both framings: 400.
    huge = head + b"1000000\r\n" + b" " * 0x1000000 + b"\r\n" + b"1000000\r\n"
    assert send_raw(node, huge)[0] == 413
    assert send_raw(node, head + b"zz\r\nab\r\n0\r\n\r\n")[0] == 400
    assert send_raw(node, head.replace(b"\r\n\r\n", b"\r\nContent-Length: 5\r\n\r\n") + b"0\r\n\r\n")[0] == 400
    assert requests.get(node.endpoint + "/", timeout=5).status_code == 200
