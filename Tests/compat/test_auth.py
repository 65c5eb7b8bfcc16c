"""SigV4 authentication: with a credentials file, only requests signed by its keys pass."""
import datetime
from unittest import mock

import botocore.auth
import botocore.exceptions
import pytest
import requests

from granary_process import Granary


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    credentials = tmp_path_factory.mktemp("auth") / "credentials"
    credentials.write_text("# access key, secret\nAKIDGRANARY1 secret-one\nAKIDGRANARY2:secret-two\n")
    server = Granary(extra_args=("--credentials", str(credentials))).wait_ready()
    yield server
    server.kill()


def code_of(client):
    with pytest.raises(botocore.exceptions.ClientError) as raised:
        client.list_tables()
    return raised.value.response["Error"]["Code"]


def test_signed_requests_pass(secured):
    for key, secret in [("AKIDGRANARY1", "secret-one"), ("AKIDGRANARY2", "secret-two")]:
        client = secured.client(aws_access_key_id=key, aws_secret_access_key=secret, region_name="eu-west-1")
        assert "TableNames" in client.list_tables()


def test_wrong_secret_unknown_key_and_no_signature_are_refused(secured):
    assert code_of(secured.client(aws_access_key_id="AKIDGRANARY1", aws_secret_access_key="wrong")) == "InvalidSignatureException"
    assert code_of(secured.client(aws_access_key_id="AKIDUNKNOWN", aws_secret_access_key="secret-one")) == "UnrecognizedClientException"
    response = requests.post(secured.endpoint + "/", data=b"{}", headers={"X-Amz-Target": "DynamoDB_20120810.ListTables"}, timeout=10)
    assert response.status_code == 400
    assert response.json()["__type"] == "com.amazon.coral.service#MissingAuthenticationTokenException"


def test_a_request_signed_too_far_from_server_time_is_refused(secured):
    client = secured.client(aws_access_key_id="AKIDGRANARY1", aws_secret_access_key="secret-one")
    skewed = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None) - datetime.timedelta(minutes=20)
    with mock.patch.object(botocore.auth, "get_current_datetime", return_value=skewed):
        with pytest.raises(botocore.exceptions.ClientError) as raised:
            client.list_tables()
    assert raised.value.response["Error"]["Code"] == "InvalidSignatureException"
    assert "Signature expired" in raised.value.response["Error"]["Message"]


def test_without_credentials_any_signature_passes_and_the_node_warns(tmp_path):
    server = Granary().wait_ready()
    try:
        assert "TableNames" in server.client(aws_access_key_id="anything", aws_secret_access_key="at-all").list_tables()
    finally:
        _, stderr = server.stop()
    assert "no credentials are configured" in stderr
