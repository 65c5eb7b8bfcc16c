"""Starts and stops a real `granary serve` for the end-to-end tests."""
import os
import signal
import socket
import subprocess
import time
import uuid

import requests

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BINARY = os.environ.get("GRANARY_BINARY", os.path.join(REPO, ".build", "debug", "granary"))
LOAD_BINARY = os.environ.get("GRANARY_LOAD_BINARY", os.path.join(os.path.dirname(BINARY), "granary-load"))
# Data directories live on the repository's disk: /tmp may be tmpfs, which granary refuses.
DATA_ROOT = os.path.join(REPO, ".build", "e2e-data")


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def fresh_data_dir():
    path = os.path.join(DATA_ROOT, uuid.uuid4().hex)
    os.makedirs(path)
    return path


class Granary:
    """One `granary serve` process on a free loopback port (or on `host`, with the command
    run under `prefix`, such as a network namespace's `ip netns exec`)."""

    def __init__(self, data_dir=None, extra_args=(), preexec_fn=None, port=None, host="127.0.0.1", prefix=()):
        self.port = port or free_port()
        self.data_dir = data_dir or fresh_data_dir()
        self.endpoint = f"http://{host}:{self.port}"
        # Small log segments: every start preallocates one per partition, and the suite
        # starts many nodes.
        self.args = [*prefix, BINARY, "serve", "--listen", f"{host}:{self.port}", "--data-dir", self.data_dir,
                     "--log-segment-bytes", "4M", *extra_args]
        self.process = subprocess.Popen(
            self.args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=preexec_fn
        )

    def wait_ready(self, timeout=20.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"granary exited with {self.process.returncode}: {self.process.stderr.read()}")
            try:
                if requests.get(self.endpoint + "/", timeout=1).status_code == 200:
                    return self
            except requests.ConnectionError:
                time.sleep(0.05)
        raise TimeoutError("granary did not answer its health check")

    def stop(self, sig=signal.SIGTERM, timeout=15.0):
        """Sends `sig` and returns (exit code, stderr)."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            _, stderr = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            _, stderr = self.process.communicate()
            raise AssertionError(f"granary did not stop within {timeout}s of {sig!r}")
        return self.process.returncode, stderr

    def wait_exit(self, timeout=15.0):
        """Waits for a process that should exit by itself; returns (exit code, stderr)."""
        try:
            _, stderr = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.communicate()
            raise AssertionError(f"granary did not exit by itself within {timeout}s")
        return self.process.returncode, stderr

    def client(self, **overrides):
        """A boto3 DynamoDB client for this node, retries off so that errors show."""
        import boto3
        import botocore.config

        settings = dict(region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test",
                        config=botocore.config.Config(retries={"max_attempts": 1}))
        settings.update(overrides)
        client = boto3.client("dynamodb", endpoint_url=self.endpoint, **settings)
        if RECORD_DIR:
            client.meta.events.register("before-send", lambda request, **_: record(request.headers, request.body))
        return client

    def kill(self):
        if self.process.poll() is None:
            self.process.kill()
            self.process.communicate()


# With GRANARY_RECORD_REQUESTS=DIR, every request the suite sends is saved there as the
# request fuzzer's input format (operation, newline, body): how Fuzz/corpus is made.
RECORD_DIR = os.environ.get("GRANARY_RECORD_REQUESTS")


def record(headers, body):
    import hashlib
    target = headers.get("X-Amz-Target", b"")
    target = target.decode() if isinstance(target, bytes) else target
    body = body.encode() if isinstance(body, str) else (body or b"")
    if not isinstance(body, bytes):
        return  # a streamed body: not a DynamoDB request
    data = target.rsplit(".", 1)[-1].encode() + b"\n" + body
    os.makedirs(RECORD_DIR, exist_ok=True)
    with open(os.path.join(RECORD_DIR, hashlib.sha1(data).hexdigest()), "wb") as output:
        output.write(data)


def raw_post(node, operation, body, headers=None):
    """A request as bytes, past boto3's own checks (to see the server's answer to bad input)."""
    all_headers = {"X-Amz-Target": f"DynamoDB_20120810.{operation}", "Content-Type": "application/x-amz-json-1.0"}
    all_headers.update(headers or {})
    if RECORD_DIR:
        record(all_headers, body)
    return requests.post(node.endpoint + "/", data=body, headers=all_headers, timeout=10)


def aws(node, *args):
    """Runs `aws dynamodb ARGS` against the node: (exit code, parsed JSON output, stderr)."""
    import json
    environment = dict(os.environ, AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test", AWS_DEFAULT_REGION="us-east-1")
    result = subprocess.run(["aws", "dynamodb", "--endpoint-url", node.endpoint, "--output", "json", *args],
                            capture_output=True, text=True, env=environment, timeout=60)
    return result.returncode, (json.loads(result.stdout) if result.stdout.strip() else None), result.stderr


def make_table(client, sort_type="N", prefix="t"):
    """A fresh PAY_PER_REQUEST table keyed by pk (S) and, unless sort_type is None, sk."""
    import uuid
    name = f"{prefix}-{uuid.uuid4().hex[:12]}"
    schema = [{"AttributeName": "pk", "KeyType": "HASH"}]
    definitions = [{"AttributeName": "pk", "AttributeType": "S"}]
    if sort_type:
        schema.append({"AttributeName": "sk", "KeyType": "RANGE"})
        definitions.append({"AttributeName": "sk", "AttributeType": sort_type})
    client.create_table(TableName=name, BillingMode="PAY_PER_REQUEST", KeySchema=schema, AttributeDefinitions=definitions)
    return name


def refused(call, *args, **kwargs):
    """The error response of a call that must fail."""
    import botocore.exceptions
    import pytest
    with pytest.raises(botocore.exceptions.ClientError) as raised:
        call(*args, **kwargs)
    return raised.value.response


def error(call, *args, **kwargs):
    """(code, message) of a call that must fail."""
    response = refused(call, *args, **kwargs)
    return response["Error"]["Code"], response["Error"]["Message"]
