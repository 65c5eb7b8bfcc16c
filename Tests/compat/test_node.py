"""The node as a process: start-up, health, HTTP/1.1 behaviour, refusals, clean stops."""
import ctypes
import os
import platform
import signal
import socket
import threading

import boto3
import botocore
import pytest
import requests

from granary_process import Granary


def raw_exchange(port, payload, expect_responses=1, timeout=5.0):
    """Sends raw bytes and reads until `expect_responses` complete responses arrived."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(payload)
        return read_responses(sock, expect_responses)


def read_responses(sock, count):
    data = b""
    responses = []
    while len(responses) < count:
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                return responses
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(rest) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            rest += chunk
        responses.append((head.split(b"\r\n")[0].decode(), head, rest[:length]))
        data = rest[length:]
    return responses


def test_health_check(granary):
    response = requests.get(granary.endpoint + "/")
    assert response.status_code == 200
    assert response.text.startswith("healthy")


def test_keep_alive_serves_many_requests_on_one_connection(granary):
    with requests.Session() as session:
        for _ in range(200):
            assert session.get(granary.endpoint + "/").status_code == 200


def test_pipelined_requests_are_answered_in_order(granary):
    request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    unknown = b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n"
    responses = raw_exchange(granary.port, request + unknown + request, expect_responses=3)
    assert [status for status, _, _ in responses] == ["HTTP/1.1 200 OK", "HTTP/1.1 404 Not Found", "HTTP/1.1 200 OK"]


def test_expect_100_continue(granary):
    with socket.create_connection(("127.0.0.1", granary.port), timeout=5) as sock:
        body = b'{"a": 1}'
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(body))
        interim = read_responses(sock, 1)
        assert interim[0][0] == "HTTP/1.1 100 Continue"
        sock.sendall(body)
        final = read_responses(sock, 1)
        assert final[0][0] == "HTTP/1.1 400 Bad Request"


def test_body_split_across_packets(granary):
    with socket.create_connection(("127.0.0.1", granary.port), timeout=5) as sock:
        body = b"x" * 200_000
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body))
        for offset in range(0, len(body), 7000):
            sock.sendall(body[offset:offset + 7000])
        assert read_responses(sock, 1)[0][0] == "HTTP/1.1 400 Bad Request"
        # The connection is still usable afterwards.
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_responses(sock, 1)[0][0] == "HTTP/1.1 200 OK"


@pytest.mark.parametrize(
    "payload, status",
    [
        (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n", "431"),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999\r\n\r\n", "413"),
        (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", "411"),
        (b"NOT A REQUEST\r\n\r\n", "400"),
        (b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", "505"),
        (b"GET / HTTP/1.1\r\nBad Header\r\n\r\n", "400"),
        (b"POST / HTTP/1.1\r\nContent-Length: -5\r\n\r\n", "400"),
    ],
)
def test_bad_requests_get_a_clear_status_and_the_node_keeps_serving(granary, payload, status):
    responses = raw_exchange(granary.port, payload)
    assert responses and responses[0][0].split(" ")[1] == status, responses
    assert requests.get(granary.endpoint + "/").status_code == 200


def test_dynamodb_client_gets_a_dynamodb_error_not_a_hang(granary):
    client = boto3.client(
        "dynamodb", endpoint_url=granary.endpoint, region_name="us-east-1",
        aws_access_key_id="test", aws_secret_access_key="test",
        config=botocore.config.Config(retries={"max_attempts": 1}),
    )
    with pytest.raises(botocore.exceptions.ClientError) as raised:
        client.describe_backup(BackupArn="arn:aws:dynamodb:us-east-1:000000000000:table/t/backup/1")
    assert raised.value.response["Error"]["Code"] == "UnknownOperationException"


def test_many_concurrent_clients(granary):
    failures = []

    def client():
        with requests.Session() as session:
            for _ in range(25):
                if session.get(granary.endpoint + "/", timeout=10).status_code != 200:
                    failures.append(1)

    threads = [threading.Thread(target=client) for _ in range(32)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not failures


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signals_stop_the_node_cleanly(sig):
    node = Granary().wait_ready()
    with socket.create_connection(("127.0.0.1", node.port)):  # an idle connection does not block the stop
        code, stderr = node.stop(sig)
    assert code == 0, stderr
    assert "stopped" in stderr


def test_one_core(tmp_path):
    node = Granary(extra_args=["--cores", "0"]).wait_ready()
    try:
        assert "with 1 cores" in node.stop()[1]
    finally:
        node.kill()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--cores", "banana"], "--cores must be a list"),
        (["--cores", "4000"], "which this process may not use"),
        (["--listen", "nowhere"], "--listen must be HOST:PORT"),
    ],
)
def test_bad_flags_are_refused(args, message):
    node = Granary(extra_args=args)
    code, stderr = node.wait_exit()
    assert code != 0 and message in stderr


def test_a_second_process_on_the_same_data_dir_is_refused(granary):
    second = Granary(data_dir=granary.data_dir)
    code, stderr = second.wait_exit()
    assert code != 0
    assert "in use by another granary process" in stderr


def test_tmpfs_data_dir_is_refused():
    if not os.path.isdir("/dev/shm"):
        pytest.skip("no /dev/shm on this machine")
    node = Granary(data_dir=f"/dev/shm/granary-test-{os.getpid()}")
    code, stderr = node.wait_exit()
    assert code != 0
    assert "tmpfs" in stderr and "Fix:" in stderr


def block_io_uring_with_seccomp():
    """In the child, before exec: a seccomp filter that fails io_uring_setup with EPERM, as
    container runtimes' default profiles do."""
    libc = ctypes.CDLL(None, use_errno=True)

    class SockFilter(ctypes.Structure):
        _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte), ("k", ctypes.c_uint)]

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(SockFilter))]

    load_word, jump_equal, ret = 0x20, 0x15, 0x06
    program = [
        SockFilter(load_word, 0, 0, 4),  # seccomp_data.arch
        SockFilter(jump_equal, 1, 0, 0xC000003E),  # AUDIT_ARCH_X86_64
        SockFilter(ret, 0, 0, 0x7FFF0000),  # other architectures: allow
        SockFilter(load_word, 0, 0, 0),  # seccomp_data.nr
        SockFilter(jump_equal, 0, 1, 425),  # __NR_io_uring_setup
        SockFilter(ret, 0, 0, 0x00050000 | 1),  # SECCOMP_RET_ERRNO | EPERM
        SockFilter(ret, 0, 0, 0x7FFF0000),  # SECCOMP_RET_ALLOW
    ]
    filters = (SockFilter * len(program))(*program)
    prog = SockFprog(len(program), filters)
    if libc.prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS
        raise OSError(ctypes.get_errno(), "PR_SET_NO_NEW_PRIVS")
    if libc.prctl(22, 2, ctypes.byref(prog), 0, 0) != 0:  # PR_SET_SECCOMP, SECCOMP_MODE_FILTER
        raise OSError(ctypes.get_errno(), "PR_SET_SECCOMP")


@pytest.mark.skipif(platform.machine() != "x86_64", reason="the filter names x86_64 system call numbers")
def test_io_uring_blocked_by_seccomp_is_refused_with_cause_and_fix():
    node = Granary(preexec_fn=block_io_uring_with_seccomp)
    code, stderr = node.wait_exit()
    assert code != 0
    assert "io_uring is not available" in stderr
    assert "seccomp" in stderr and "Fix:" in stderr


@pytest.mark.parametrize("placement", ["hash-range\n", None])
def test_items_survive_a_restart_under_either_placement(placement):
    """A new data directory records that items are spread over its partitions by hash range;
    one from before that record (every item in partition 0) keeps its placement, so that its
    items are found where they were written."""
    from granary_process import fresh_data_dir, make_table
    data_dir = fresh_data_dir()
    with open(os.path.join(data_dir, "partitions"), "w") as file:
        file.write("3\n")
    if placement:
        with open(os.path.join(data_dir, "placement"), "w") as file:
            file.write(placement)
    node = Granary(data_dir=data_dir).wait_ready()
    try:
        client = node.client()
        table = make_table(client, sort_type=None)
        for n in range(60):
            client.put_item(TableName=table, Item={"pk": {"S": f"k{n}"}, "v": {"N": str(n)}})
    finally:
        node.kill()
    node = Granary(data_dir=data_dir).wait_ready()
    try:
        client = node.client()
        for n in range(60):
            assert client.get_item(TableName=table, Key={"pk": {"S": f"k{n}"}})["Item"]["v"] == {"N": str(n)}
        assert client.describe_table(TableName=table)["Table"]["ItemCount"] == 60
        assert len(client.scan(TableName=table)["Items"]) == 60
    finally:
        node.kill()
    assert os.path.exists(os.path.join(data_dir, "placement")) == (placement is not None)


def test_a_new_data_directory_records_its_placement(granary):
    with open(os.path.join(granary.data_dir, "placement")) as file:
        assert file.read() == "hash-range\n"
