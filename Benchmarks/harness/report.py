"""Turns a harness run's results.json into report.md and PNG plots, in the result folder."""
import json
import os
import sys

WORKLOAD_NAMES = {"a": "A (50% read, 50% update)", "b": "B (95% read, 5% update)", "c": "C (100% read)",
                  "f": "F (50% read, 50% read-modify-write)"}


def ms(microseconds):
    return f"{microseconds / 1000:.2f}"


def number(value):
    return f"{value:,.0f}"


def plots(results, out):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    granary, moto = results["granary"], results.get("moto", {})
    # Throughput over time, each workload (the warm-up shaded out).
    figure, axes = plt.subplots(1, 2, figsize=(12, 4))
    for axis, (name, system) in zip(axes, (("Granary", granary), ("moto", moto))):
        for workload in ["load"] + [w for w in WORKLOAD_NAMES if w in system]:
            if workload not in system:
                continue
            timeline = [p for p in system[workload]["timeline"] if not p["warmup"]]
            axis.plot([p["second"] for p in timeline], [p["operations_per_second"] for p in timeline],
                      label=workload.upper() if workload != "load" else "load (PutItem)")
        axis.set_title(f"{name}: throughput over time")
        axis.set_xlabel("second")
        axis.set_ylabel("operations/s")
        axis.set_ylim(bottom=0)
        axis.legend()
    figure.tight_layout()
    figure.savefig(os.path.join(out, "throughput-over-time.png"), dpi=100)
    plt.close(figure)

    # Latency percentiles per workload, Granary beside moto (log scale).
    figure, axis = plt.subplots(figsize=(10, 4.5))
    percentiles = [("p50", "p50_microseconds"), ("p90", "p90_microseconds"), ("p99", "p99_microseconds"),
                   ("p99.9", "p999_microseconds")]
    for system_name, system, style in (("Granary", granary, "-o"), ("moto", moto, "--s")):
        for workload in WORKLOAD_NAMES:
            if workload in system:
                overall = system[workload]["overall"]
                axis.plot([p for p, _ in percentiles], [overall[key] / 1000 for _, key in percentiles], style,
                          label=f"{system_name} {workload.upper()}")
    axis.set_yscale("log")
    axis.set_ylabel("latency, ms (log)")
    axis.set_title("Latency percentiles, closed loop")
    axis.legend(ncol=2, fontsize=8)
    figure.tight_layout()
    figure.savefig(os.path.join(out, "latency-percentiles.png"), dpi=100)
    plt.close(figure)

    # Throughput against p99 from the open-loop sweep.
    sweep = granary.get("sweep", [])
    if sweep:
        figure, axis = plt.subplots(figsize=(7, 4.5))
        axis.plot([p["throughput"] for p in sweep], [p["p99_microseconds"] / 1000 for p in sweep], "-o", label="p99")
        axis.plot([p["throughput"] for p in sweep], [p["p50_microseconds"] / 1000 for p in sweep], "-s", label="p50")
        for point in sweep:
            axis.annotate(f"{point['rate']:,}/s", (point["throughput"], point["p99_microseconds"] / 1000),
                          fontsize=7, textcoords="offset points", xytext=(3, 3))
        axis.set_yscale("log")
        axis.set_xlabel("achieved operations/s (offered rate annotated)")
        axis.set_ylabel("latency from intended start, ms (log)")
        axis.set_title("Granary YCSB A, open-loop rate sweep")
        axis.legend()
        figure.tight_layout()
        figure.savefig(os.path.join(out, "rate-sweep.png"), dpi=100)
        plt.close(figure)


def markdown(results):
    facts, s = results["facts"], results["settings"]
    granary, moto = results["granary"], results.get("moto", {})
    fio, http, redis = results["fio"], results["http"], results["redis"]
    lines = [
        f"Scenario `{results['scenario']}`: `tools/bench {results['scenario']}` on {facts['cores']} cores "
        f"({facts['cpu']}), {facts['memory_gib']} GiB, {facts['os']}, kernel {facts['kernel']}, data on "
        f"{facts['data_filesystem']}; commit {facts['commit']}, {facts['date_utc']} UTC. "
        f"Everything below ran in this one run, one system at a time on loopback, the load generator sharing "
        f"the cores. Granary: {s['records']:,} records; moto: {s['moto_records']:,} records (it loads about "
        f"a thousand a second); 10 fields of 100 bytes each (1 KB items), zipfian keys, {s['concurrency']} "
        f"clients, {s['warmup']} s warm-up, {s['duration']} s measured per workload.",
        "",
        "**Ceilings**",
        "",
        "| measure | value |",
        "|---|---:|",
        f"| fio 4 KiB random read, QD32, O_DIRECT (IOPS) | {number(fio['randread_4k_qd32_iops'])} |",
        f"| fio 4 KiB write + fdatasync, QD1 (IOPS) | {number(fio['write_4k_fdatasync_iops'])} |",
        f"| nginx fixed 200, wrk -t2 -c{s['concurrency']} (requests/s) | {number(http['wrk_rps'])} |",
        f"| nginx fixed 200, granary-load workload C, {s['concurrency']} clients (requests/s) | "
        f"{number(http['granary_load_rps'])} (**{http['generator_ratio']:.2f}** of wrk; bar 0.80) |",
        f"| Redis SET, appendfsync always, redis-benchmark -c 50 -d 1000 (requests/s) | {number(redis['set_rps'])} |",
        f"| Redis GET (requests/s) | {number(redis['get_rps'])} |",
        "",
        "**YCSB, closed loop: Granary beside moto** (operations/s; latency in ms over every operation of the workload)",
        "",
        "| workload | Granary ops/s | p50 | p99 | p99.9 | moto ops/s | p50 | p99 | Granary / moto |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for workload in ["load"] + list(WORKLOAD_NAMES):
        g, m = granary.get(workload), moto.get(workload)
        if not g:
            continue
        name = "load (PutItem, durable)" if workload == "load" else WORKLOAD_NAMES[workload]
        row = f"| {name} | {number(g['throughput'])} | {ms(g['overall']['p50_microseconds'])} | " \
              f"{ms(g['overall']['p99_microseconds'])} | {ms(g['overall']['p999_microseconds'])} | "
        if m:
            row += f"{number(m['throughput'])} | {ms(m['overall']['p50_microseconds'])} | " \
                   f"{ms(m['overall']['p99_microseconds'])} | {g['throughput'] / max(m['throughput'], 1e-9):.1f} |"
        else:
            row += "– | – | – | – |"
        lines.append(row)
    errors = {w: granary[w]["errors"] for w in ["load"] + list(WORKLOAD_NAMES) if w in granary and granary[w]["errors"]}
    lines += [
        "",
        f"Errors in Granary's runs: {errors or 'none'} (F's conditional writes fail with "
        "ConditionalCheckFailedException when another client changed the field in between; they count as errors, "
        "never retried).",
        "",
        "**Ratios in this run**",
        "",
        f"- Granary durable PutItem (load phase) / Redis SET (appendfsync always): "
        f"**{granary['load']['throughput'] / redis['set_rps']:.2f}**",
        f"- Granary YCSB C (GetItem) / nginx fixed 200 (wrk): **{granary['c']['throughput'] / http['wrk_rps']:.2f}**",
        f"- Granary YCSB C / Redis GET: **{granary['c']['throughput'] / redis['get_rps']:.2f}**",
        f"- Granary peak RSS over the whole run: {granary.get('peak_rss_mib', '?')} MiB",
        "",
        "**Open-loop sweep of YCSB A on Granary** (latency from each request's intended start)",
        "",
        "| offered ops/s | achieved ops/s | p50 ms | p99 ms | errors |",
        "|---:|---:|---:|---:|---:|",
    ]
    for point in granary.get("sweep", []):
        lines.append(f"| {number(point['rate'])} | {number(point['throughput'])} | {ms(point['p50_microseconds'])} | "
                     f"{ms(point['p99_microseconds'])} | {point['errors']} |")
    lines += ["", "![throughput over time](throughput-over-time.png)", "",
              "![latency percentiles](latency-percentiles.png)", "", "![rate sweep](rate-sweep.png)", ""]
    return "\n".join(lines)


def write(results, out):
    plots(results, out)
    with open(os.path.join(out, "report.md"), "w") as f:
        f.write(markdown(results))


if __name__ == "__main__":
    folder = sys.argv[1]
    with open(os.path.join(folder, "results.json")) as f:
        write(json.load(f), folder)
    print(os.path.join(folder, "report.md"))
