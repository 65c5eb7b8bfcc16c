"""granary-load against a real node: workloads, its JSON, and --verify / check across kill -9."""
import json
import os
import signal
import subprocess
import time

import pytest

from granary_process import LOAD_BINARY, Granary, fresh_data_dir


def load_tool(*args, timeout=120):
    """Runs granary-load; returns (exit code, stdout, stderr)."""
    result = subprocess.run([LOAD_BINARY, *args], capture_output=True, text=True, timeout=timeout)
    return result.returncode, result.stdout, result.stderr


@pytest.fixture(autouse=True)
def needs_binary():
    if not os.path.exists(LOAD_BINARY):
        pytest.fail(f"{LOAD_BINARY} is missing: build it with `swift build --product granary-load`")


def test_every_core_workload_runs_and_reports(granary, tmp_path):
    endpoint = ["--endpoint", granary.endpoint, "--concurrency", "8", "--quiet"]
    code, out, err = load_tool("load", *endpoint, "--records", "500", "--json", str(tmp_path / "load.json"))
    assert code == 0, err
    loaded = json.loads((tmp_path / "load.json").read_text())
    assert loaded["phase"] == "load" and loaded["operations"]["insert"]["count"] == 500 and loaded["errors"] == 0
    assert granary.client().describe_table(TableName="usertable")["Table"]["ItemCount"] == 500
    code, _, err = load_tool("load", *endpoint, "--workload", "e", "--records", "500")
    assert code == 0, err
    expected = {"a": {"read", "update"}, "b": {"read", "update"}, "c": {"read"}, "d": {"read", "insert"},
                "e": {"scan", "insert"}, "f": {"read", "read-modify-write"}}
    for workload, operations in expected.items():
        path = tmp_path / f"{workload}.json"
        code, out, err = load_tool("run", *endpoint, "--workload", workload, "--records", "500", "--duration", "1s",
                                   "--json", str(path))
        assert code == 0, err
        result = json.loads(path.read_text())
        assert result["workload"] == workload and result["throughput"] > 0
        assert operations <= set(result["operations"]), result["operations"].keys()
        for name in operations:
            figures = result["operations"][name]
            assert figures["count"] > 0, (workload, name, figures)
            assert 0 < figures["p50_microseconds"] <= figures["p99_microseconds"] <= figures["max_microseconds"]
        assert result["timeline"], "no per-second figures"
        assert f"workload {workload}" in out
    # F's conditional writes succeed when nothing else writes the record in between.
    f = json.loads((tmp_path / "f.json").read_text())
    assert f["operations"]["read-modify-write.update"]["count"] > 0


def test_open_loop_holds_its_rate(granary, tmp_path):
    endpoint = ["--endpoint", granary.endpoint, "--quiet"]
    assert load_tool("load", *endpoint, "--records", "200", "--concurrency", "8")[0] == 0
    path = tmp_path / "open.json"
    code, _, err = load_tool("run", *endpoint, "--workload", "b", "--records", "200", "--rate", "200",
                             "--concurrency", "4", "--duration", "3s", "--json", str(path))
    assert code == 0, err
    result = json.loads(path.read_text())
    assert result["rate"] == 200
    assert 150 <= result["throughput"] <= 230, result["throughput"]


def test_errors_are_counted_by_type_not_retried(granary, tmp_path):
    path = tmp_path / "missing.json"
    code, _, err = load_tool("run", "--endpoint", granary.endpoint, "--table", "no_such_table", "--workload", "c",
                             "--records", "10", "--duration", "1s", "--concurrency", "2", "--quiet", "--json", str(path))
    assert code == 0, err
    result = json.loads(path.read_text())
    assert result["throughput"] == 0
    assert set(result["operations"]["read"]["errors"]) == {"ResourceNotFoundException"}
    assert result["errors"] == result["operations"]["read"]["errors"]["ResourceNotFoundException"] > 0


def test_bad_arguments_are_refused(tmp_path):
    for args in (["run", "--workload", "z"], ["run", "--workload", "custom", "--mix", "read=x"],
                 ["run", "--endpoint", "https://example.com"], ["run", "--concurrency", "0"],
                 ["run", "--duration", "forever"], ["run", "--value-bytes", "3"]):
        code, _, err = load_tool(*args)
        assert code != 0 and "Error:" in err, (args, err)


def test_check_finds_a_lost_write(granary, tmp_path):
    log = str(tmp_path / "verify.log")
    endpoint = ["--endpoint", granary.endpoint]
    assert load_tool("load", *endpoint, "--records", "50", "--concurrency", "4", "--quiet", "--verify", log)[0] == 0
    code, out, _ = load_tool("check", *endpoint, "--verify", log)
    assert code == 0 and "checked 50 records: 0 lost, 0 garbled" in out, out
    # Lose one acknowledged write behind the checker's back, and garble another.
    client = granary.client()
    items = client.scan(TableName="usertable", Limit=2)["Items"]
    client.delete_item(TableName="usertable", Key={"pk": items[0]["pk"]})
    client.update_item(TableName="usertable", Key={"pk": items[1]["pk"]}, UpdateExpression="SET field3 = :v",
                       ExpressionAttributeValues={":v": {"S": "999999999999999999:forged"}})
    code, out, _ = load_tool("check", *endpoint, "--verify", log)
    assert code == 1
    assert "1 lost, 1 garbled" in out, out


def test_no_acknowledged_write_is_lost_across_kill_9(tmp_path):
    """The issue's acceptance test: --verify under load, kill -9 mid-run, restart, check."""
    data_dir = fresh_data_dir()
    node = Granary(data_dir=data_dir).wait_ready()
    log = str(tmp_path / "verify.log")
    try:
        assert load_tool("load", "--endpoint", node.endpoint, "--records", "1000", "--concurrency", "8",
                         "--quiet", "--verify", log)[0] == 0
        for cycle in range(2):
            run = subprocess.Popen([LOAD_BINARY, "run", "--endpoint", node.endpoint, "--workload", "a", "--records", "1000",
                                    "--concurrency", "16", "--duration", "6s", "--timeout", "2", "--quiet", "--verify", log,
                                    "--seed", str(cycle + 1), "--json", str(tmp_path / f"run{cycle}.json")],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            time.sleep(2 + cycle)
            node.stop(signal.SIGKILL)
            node = Granary(data_dir=data_dir, port=node.port).wait_ready()
            _, err = run.communicate(timeout=60)
            assert run.returncode == 0, err
            result = json.loads((tmp_path / f"run{cycle}.json").read_text())
            update = result["operations"]["update"]
            # Writes were acknowledged before the kill and after the restart; the ones in
            # between failed and are counted as connection errors, not retried.
            assert update["count"] > 100, update
            assert any(kind.startswith("Connection") for kind in update["errors"]), update
            code, out, _ = load_tool("check", "--endpoint", node.endpoint, "--verify", log)
            assert code == 0, out
            assert "checked 1000 records: 0 lost, 0 garbled, 0 unreadable" in out, out
    finally:
        node.kill()
