#!/usr/bin/env python3
"""The benchmark harness: one scenario, every system side by side, in one run.

For a scenario it builds Granary in release mode, then on loopback, each with a fresh data
directory, and stopping each before the next starts:
  - the ceilings: fio (4 KiB random read at QD32, 4 KiB write + fdatasync) on the data
    directory's filesystem, and nginx answering a fixed 200 (2 workers) driven by wrk, and
    by granary-load (which must reach at least 80% of wrk's rate: it must not be the
    bottleneck);
  - Granary: granary-load's load phase, then YCSB A, B, C and F, then an open-loop rate
    sweep of A (throughput against p99);
  - the peers: moto_server (the Python DynamoDB mock) under the same granary-load
    workloads, and Redis with appendfsync always under redis-benchmark, the reference for
    durable writes.
It writes a result folder (facts.json, commands.txt, every JSON, report.md, PNG plots).
Usage: tools/bench quick|full [--out DIR] [--publish]
"""
import argparse
import csv
import io
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
RELEASE = os.path.join(REPO, ".build", "release")
LOAD = os.path.join(RELEASE, "granary-load")

SCENARIOS = {
    # Under 10 minutes on a 2-core machine (after the build).
    "quick": dict(records=20_000, moto_records=5_000, warmup=2, duration=10, concurrency=64, sweep_seconds=5,
                  sweep=[0.25, 0.5, 0.75, 0.9, 1.0, 1.2], fio_seconds=10, http_seconds=10, redis_requests=100_000),
    "full": dict(records=1_000_000, moto_records=50_000, warmup=10, duration=60, concurrency=64, sweep_seconds=20,
                 sweep=[0.1, 0.25, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.25], fio_seconds=30, http_seconds=30,
                 redis_requests=1_000_000),
}
WORKLOADS = ["a", "b", "c", "f"]
SIGNED = ["--access-key", "bench", "--secret-key", "bench"]


class Bench:
    def __init__(self, scenario, out):
        self.name = scenario
        self.s = SCENARIOS[scenario]
        self.out = out
        self.work = os.path.join(REPO, ".build", "bench-work")  # on the repository's disk, not tmpfs
        self.processes = []
        self.results = {"scenario": scenario, "settings": self.s}
        shutil.rmtree(self.work, ignore_errors=True)
        os.makedirs(self.work)
        os.makedirs(out, exist_ok=True)
        self.commands = open(os.path.join(out, "commands.txt"), "w")

    # -- processes ----------------------------------------------------------------------
    def run(self, args, **kwargs):
        """Runs a command to completion, recording it; returns its stdout."""
        self.commands.write(" ".join(args) + "\n")
        self.commands.flush()
        print("+ " + " ".join(args), file=sys.stderr, flush=True)
        result = subprocess.run(args, capture_output=True, text=True, **kwargs)
        if result.returncode != 0:
            raise RuntimeError(f"{args[0]} failed ({result.returncode}): {result.stderr[-2000:]}")
        return result.stdout

    def start(self, args, log):
        self.commands.write(" ".join(args) + " &\n")
        print("+ " + " ".join(args) + " &", file=sys.stderr, flush=True)
        process = subprocess.Popen(args, stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True)
        self.processes.append(process)
        return process

    def stop(self, process):
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()

    def stop_all(self):
        for process in self.processes:
            self.stop(process)

    @staticmethod
    def free_port():
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            return probe.getsockname()[1]

    @staticmethod
    def wait_http(url, process, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"{url}: the server exited with {process.returncode}")
            try:
                urllib.request.urlopen(url, timeout=1)
                return
            except urllib.error.HTTPError:
                return  # it answers, if not with 200
            except Exception:
                time.sleep(0.1)
        raise RuntimeError(f"{url} did not answer within {timeout}s")

    def load_tool(self, verb, endpoint, tag, *extra):
        path = os.path.join(self.out, f"{tag}.json")
        self.run([LOAD, verb, "--endpoint", endpoint, "--quiet", "--json", path, *extra], timeout=3600)
        with open(path) as f:
            return json.load(f)

    # -- the steps ----------------------------------------------------------------------
    def facts(self):
        def version(args):
            try:
                out = subprocess.run(args, capture_output=True, text=True, timeout=30)
                return (out.stdout + out.stderr).strip().splitlines()[0]
            except Exception as error:
                return f"unavailable: {error}"
        cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
        memory = next((line.split()[1] for line in open("/proc/meminfo") if line.startswith("MemTotal")), "0")
        filesystem = subprocess.run(["df", "-T", self.work], capture_output=True, text=True).stdout.splitlines()[-1].split()[1]
        self.results["facts"] = {
            "date_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
            "cores": os.cpu_count(), "cpu": cpu, "memory_gib": round(int(memory) / 1024 / 1024, 1),
            "kernel": platform.release(), "os": version(["sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"]),
            "data_filesystem": filesystem,
            "commit": version(["git", "-C", REPO, "rev-parse", "--short", "HEAD"]),
            "swift": version(["swift", "--version"]), "fio": version(["fio", "--version"]),
            "nginx": version(["nginx", "-v"]), "wrk": version(["wrk", "--version"]),
            "redis": version(["redis-server", "--version"]),
            "moto": version([sys.executable, "-c", "import moto; print('moto', moto.__version__)"]),
        }

    def build(self):
        for product in ("granary", "granary-load"):
            self.run(["swift", "build", "-c", "release", "--product", product], cwd=REPO, timeout=3600)

    def fio(self):
        path = os.path.join(self.work, "fio.dat")
        seconds = str(self.s["fio_seconds"])
        common = ["fio", "--filename=" + path, "--output-format=json", "--time_based", "--runtime=" + seconds]
        read = json.loads(self.run(common + ["--name=randread", "--size=1G", "--rw=randread", "--bs=4k", "--iodepth=32",
                                             "--ioengine=io_uring", "--direct=1"]))
        write = json.loads(self.run(common + ["--name=syncwrite", "--size=256M", "--rw=write", "--bs=4k", "--iodepth=1",
                                              "--ioengine=sync", "--fdatasync=1"]))
        os.remove(path)
        self.results["fio"] = {"randread_4k_qd32_iops": read["jobs"][0]["read"]["iops"],
                               "write_4k_fdatasync_iops": write["jobs"][0]["write"]["iops"]}

    def http_ceiling(self):
        port = self.free_port()
        directory = os.path.join(self.work, "nginx")
        os.makedirs(directory)
        with open(os.path.join(directory, "nginx.conf"), "w") as f:
            f.write(f"""worker_processes 2;
pid {directory}/nginx.pid;
error_log {directory}/error.log;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {directory};
    server {{
        listen 127.0.0.1:{port};
        location / {{ default_type application/x-amz-json-1.0; return 200 '{{}}'; }}
    }}
}}
""")
        nginx = self.start(["nginx", "-c", os.path.join(directory, "nginx.conf"), "-g", "daemon off;"],
                           os.path.join(self.work, "nginx.log"))
        url = f"http://127.0.0.1:{port}"
        self.wait_http(url + "/", nginx)
        seconds = self.s["http_seconds"]
        concurrency = str(self.s["concurrency"])
        wrk = self.run(["wrk", "-t", "2", "-c", concurrency, "-d", f"{seconds}s", "--latency",
                        "-s", os.path.join(REPO, "Benchmarks", "api", "get.lua"), url + "/"])
        rps = float(next(line.split()[1] for line in wrk.splitlines() if line.startswith("Requests/sec")))
        generator = self.load_tool("run", url, "nginx-granary-load", "--workload", "c", "--duration", f"{seconds}s",
                                   "--concurrency", concurrency)
        self.stop(nginx)
        self.results["http"] = {"wrk_rps": rps, "granary_load_rps": generator["throughput"],
                                "generator_ratio": generator["throughput"] / rps}

    def redis(self):
        port = self.free_port()
        directory = os.path.join(self.work, "redis")
        os.makedirs(directory)
        redis = self.start(["redis-server", "--port", str(port), "--dir", directory, "--appendonly", "yes",
                            "--appendfsync", "always", "--save", "", "--daemonize", "no"],
                           os.path.join(self.work, "redis.log"))
        time.sleep(0.5)
        out = self.run(["redis-benchmark", "-p", str(port), "-c", "50", "-d", "1000",
                        "-n", str(self.s["redis_requests"]), "-t", "set,get", "--csv"])
        self.stop(redis)
        rows = {row[0]: float(row[1]) for row in csv.reader(io.StringIO(out)) if row and row[0] in ("SET", "GET")}
        self.results["redis"] = {"set_rps": rows["SET"], "get_rps": rows["GET"]}

    def ycsb(self, system, endpoint, records):
        """Load, then A, B, C and F: returns {phase: result}. Requests are SigV4-signed, as
        every SDK signs them (moto reads the service from the signature's scope)."""
        s = self.s
        concurrency = str(s["concurrency"])
        out = {"load": self.load_tool("load", endpoint, f"{system}-load", "--records", str(records),
                                      "--concurrency", concurrency, *SIGNED)}
        for workload in WORKLOADS:
            out[workload] = self.load_tool("run", endpoint, f"{system}-{workload}", "--workload", workload, *SIGNED,
                                           "--records", str(records), "--warmup", f"{s['warmup']}s",
                                           "--duration", f"{s['duration']}s", "--concurrency", concurrency)
        return out

    def granary(self):
        port = self.free_port()
        data = os.path.join(self.work, "granary")
        server = self.start([os.path.join(RELEASE, "granary"), "serve", "--listen", f"127.0.0.1:{port}",
                             "--data-dir", data], os.path.join(self.work, "granary.log"))
        endpoint = f"http://127.0.0.1:{port}"
        self.wait_http(endpoint + "/", server)
        results = self.ycsb("granary", endpoint, self.s["records"])
        # Open loop: rates around A's closed-loop throughput; latency from intended starts.
        peak = results["a"]["throughput"]
        sweep = []
        for fraction in self.s["sweep"]:
            rate = max(10, round(peak * fraction))
            result = self.load_tool("run", endpoint, f"granary-a-rate-{rate}", "--workload", "a", *SIGNED,
                                    "--records", str(self.s["records"]), "--duration", f"{self.s['sweep_seconds']}s",
                                    "--concurrency", str(self.s["concurrency"] * 2), "--rate", str(rate))
            sweep.append({"rate": rate, "throughput": result["throughput"],
                          "p50_microseconds": result["overall"]["p50_microseconds"],
                          "p99_microseconds": result["overall"]["p99_microseconds"], "errors": result["errors"]})
        results["sweep"] = sweep
        with open(f"/proc/{server.pid}/status") as f:
            results["peak_rss_mib"] = next(int(line.split()[1]) // 1024 for line in f if line.startswith("VmHWM"))
        self.stop(server)
        self.results["granary"] = results

    def moto(self):
        port = self.free_port()
        server = self.start(["moto_server", "-H", "127.0.0.1", "-p", str(port)], os.path.join(self.work, "moto.log"))
        endpoint = f"http://127.0.0.1:{port}"
        self.wait_http(endpoint + "/", server)
        self.results["moto"] = self.ycsb("moto", endpoint, self.s["moto_records"])
        self.stop(server)

    def execute(self):
        started = time.monotonic()
        try:
            self.facts()
            self.build()
            built = time.monotonic()
            self.fio()
            self.http_ceiling()
            self.redis()
            self.granary()
            self.moto()
            self.results["seconds"] = {"build": round(built - started), "measure": round(time.monotonic() - built)}
        finally:
            self.stop_all()
            self.commands.close()
            with open(os.path.join(self.out, "results.json"), "w") as f:
                json.dump(self.results, f, indent=2)
        import report
        report.write(self.results, self.out)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenario", choices=sorted(SCENARIOS))
    parser.add_argument("--out", help="the result folder (default bench-results/SCENARIO-DATE)")
    parser.add_argument("--publish", action="store_true",
                        help="also copy results.json, report.md and the plots to Benchmarks/results/SCENARIO, "
                             "which BENCHMARKS.md shows")
    args = parser.parse_args()
    out = args.out or os.path.join(REPO, "bench-results", f"{args.scenario}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}")
    Bench(args.scenario, os.path.abspath(out)).execute()
    if args.publish:
        publish(out, os.path.join(REPO, "Benchmarks", "results", args.scenario))
    print(out)


def publish(out, target):
    os.makedirs(target, exist_ok=True)
    for name in os.listdir(out):
        if name in ("results.json", "report.md", "commands.txt") or name.endswith(".png"):
            shutil.copy(os.path.join(out, name), target)


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(__file__))
    main()
