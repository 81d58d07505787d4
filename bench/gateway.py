#!/usr/bin/env python3
"""Gateway benchmark: the nine services and the gateway as release builds on
127.0.0.1, driven by wrk (closed loop), one workload at a time.

    python3 bench/gateway.py                    # defaults: scale 10000, 50 connections, 20 s
    python3 bench/gateway.py --duration 5 --only page20

For every workload it prints requests/s, p50/p99 latency, gateway CPU
milliseconds per 1,000 requests (from /proc/PID/stat), subgraph requests per
operation (from each service's /stats), and the gateway's peak RSS; each
workload runs twice: identical requests, and a unique `authorization` header
per request (nothing can be deduplicated). It also samples the gateway's own
overhead at concurrency 1 from the `Server-Timing` header (total minus time
waiting on subgraphs). Paste the table into docs/benchmarks.md.

On machines with two cores or more the gateway runs on core 0 and the
services and wrk on the others (`taskset`), as the issues' figures are
taken; `--no-pin` lets them share every core.
"""

import argparse
import http.client
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
import urllib.request

from common import SERVICES, cores, pinned, stop, wait_http, wait_serving

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GATEWAY_PORT = 4100
BASE_PORT = 4101

PAGE = """query Page($n: Int!) { contracts(limit: $n) {
  id contractNo title amount status
  member { name grade accounts { bankName accountNumber } }
  manager { name department }
  settlements { amount status }
} }"""
DETAIL = """query Detail($id: ID!) { contract(id: $id) {
  id contractNo title amount status startDate
  member { name email phone accounts { bankName accountNumber verified } }
  manager { name email title }
  settlements { id amount fee status scheduledOn paidAt }
} }"""

WORKLOADS = {
    "page20": (PAGE, {"n": 20}),
    "page500": (PAGE, {"n": 500}),
    "detail": (DETAIL, {"id": "42"}),
}

LUA = """
wrk.method = "POST"
wrk.body = %s
wrk.headers["Content-Type"] = "application/json"
local unique = %s
local counter = 0
-- Each wrk thread runs its own copy of this script: without a thread number
-- the threads' headers would repeat one another (same counter, same random
-- sequence) and a gateway could merge their requests.
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("thread_number", threads)
end
request = function()
  if unique then
    counter = counter + 1
    wrk.headers["authorization"] = "Bearer " .. thread_number .. "-" .. counter
  end
  return wrk.format()
end
"""


def sh(*args, **kw):
    return subprocess.run(args, check=True, **kw)


def ensure_wrk():
    if shutil.which("wrk"):
        return
    print("installing wrk (Debian package)…", file=sys.stderr)
    sh("apt-get", "update", "-qq", stdout=subprocess.DEVNULL)
    sh("apt-get", "install", "-y", "-qq", "wrk", stdout=subprocess.DEVNULL)


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def peak_rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def stats_requests():
    total = {}
    for i, name in enumerate(SERVICES):
        with urllib.request.urlopen(f"http://127.0.0.1:{BASE_PORT + i}/stats") as r:
            total[name] = json.load(r)["requests"]
    return total


def reset_stats():
    for i in range(len(SERVICES)):
        urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{BASE_PORT + i}/stats/reset", method="POST"))


def to_ms(text):
    value, unit = re.match(r"([\d.]+)(us|ms|s)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def run_wrk(body, unique, duration, connections, threads=2, port=GATEWAY_PORT, cpus=None):
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(LUA % ("[==[" + json.dumps(body) + "]==]", "true" if unique else "false"))
        script = f.name
    out = subprocess.run(
        pinned(["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{duration}s", "--latency", "-s", script,
                f"http://127.0.0.1:{port}/graphql"], cpus),
        check=True, capture_output=True, text=True).stdout
    os.unlink(script)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    p50 = to_ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))
    p99 = to_ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return rps, total, p50, p99, int(errors.group(1)) if errors else 0


def overhead_samples(body, n=300):
    conn = http.client.HTTPConnection("127.0.0.1", GATEWAY_PORT)
    payload = json.dumps(body)
    totals, overheads = [], []
    for _ in range(n):
        conn.request("POST", "/graphql", payload, {"Content-Type": "application/json"})
        r = conn.getresponse()
        r.read()
        timing = dict(re.findall(r"(\w+);dur=([\d.]+)", r.getheader("server-timing", "")))
        total, subgraphs = float(timing["total"]), float(timing["subgraphs"])
        totals.append(total)
        overheads.append(total - subgraphs)
    conn.close()
    return statistics.median(totals), statistics.median(overheads)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=int, default=10000)
    ap.add_argument("--duration", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--only", choices=list(WORKLOADS), action="append")
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--baseline", help="another tessera binary (say, a release build of the previous commit): "
                    "both run side by side on the same services, alternating, 3 rounds each; medians and ratios")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-pin", action="store_true",
                    help="do not pin the gateway to core 0 (and the services and wrk to the other cores)")
    args = ap.parse_args()
    # Error backtraces cost when captured; no gateway runs with them here.
    os.environ["RUST_BACKTRACE"] = "0"
    if args.baseline:
        return compare(args)
    mine, others = cores(args.no_pin)

    ensure_wrk()
    if not args.no_build:
        sh("cargo", "build", "--release", "--bins", cwd=ROOT)
    env = bench_env()
    procs = []
    try:
        procs.append(start_subgraphs(args.scale, env, others))
        gateway = subprocess.Popen(
            pinned([f"{ROOT}/target/release/tessera", "serve", "--listen", f"127.0.0.1:{GATEWAY_PORT}"], mine),
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
        procs.append(gateway)
        wait_serving(GATEWAY_PORT)

        print(f"scale {args.scale}, {args.connections} connections, {args.duration}s per run, wrk -t2"
              + (", gateway pinned to core 0\n" if mine else "\n"))
        print("| workload | headers | req/s | p50 ms | p99 ms | gateway CPU ms / 1k req | subgraph req / op | overhead p50 ms (c=1) | total p50 ms (c=1) |")
        print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
        ticks_per_s = os.sysconf("SC_CLK_TCK")
        for name in args.only or list(WORKLOADS):
            query, variables = WORKLOADS[name]
            body = {"query": query, "variables": variables}
            run_wrk(body, False, args.warmup, args.connections, cpus=others)  # warm-up
            total_c1, overhead_c1 = overhead_samples(body)
            for unique in (False, True):
                reset_stats()
                before = cpu_ticks(gateway.pid)
                rps, total, p50, p99, bad = run_wrk(body, unique, args.duration, args.connections, cpus=others)
                cpu_ms = (cpu_ticks(gateway.pid) - before) * 1000 / ticks_per_s
                sub = sum(stats_requests().values())
                print(f"| {name} | {'unique' if unique else 'same'} | {rps:.0f} | {p50:.2f} | {p99:.2f} | "
                      f"{cpu_ms * 1000 / max(total, 1):.1f} | {sub / max(total, 1):.2f} | "
                      f"{overhead_c1:.3f} | {total_c1:.3f} |" + (f" ({bad} non-2xx)" if bad else ""))
        print(f"\ngateway peak RSS: {peak_rss_mib(gateway.pid):.1f} MiB")
    finally:
        stop(procs, timeout=10)


def bench_env():
    """The gateway's environment: the bench's service ports, a cursor secret."""
    env = dict(os.environ, RUST_LOG="warn", TESSERA_CURSOR_SECRET="bench-" + uuid.uuid4().hex)
    for i, name in enumerate(SERVICES):
        env[f"TESSERA_SUBGRAPH_{name.upper()}_URL"] = f"http://127.0.0.1:{BASE_PORT + i}/graphql"
    return env


def start_subgraphs(scale, env, cpus=None):
    p = subprocess.Popen(
        pinned([f"{ROOT}/target/release/subgraphs", "--service", "all", "--base-port", str(BASE_PORT),
                "--scale", str(scale), "--events-latency", "0ms"], cpus), env=env, stdout=subprocess.DEVNULL)
    for i in range(len(SERVICES)):
        wait_http(f"http://127.0.0.1:{BASE_PORT + i}/health")
    return p


def refusal_cost(gateway, n=200):
    """A 1 MB alias bomb against this build: the wall time of its refusal on
    loopback (upload included) and the gateway CPU it costs."""
    pid, port = gateway
    bomb = json.dumps({"query": "{ " + "a: __typename " * 75_000 + "}"}).encode()
    conn = http.client.HTTPConnection("127.0.0.1", port)
    times, codes = [], set()
    before = cpu_ticks(pid)
    for _ in range(n):
        t = time.perf_counter()
        conn.request("POST", "/graphql", bomb, {"Content-Type": "application/json"})
        r = conn.getresponse()
        codes.add(json.loads(r.read())["errors"][0]["extensions"]["code"])
        times.append((time.perf_counter() - t) * 1000)
    cpu_ms = (cpu_ticks(pid) - before) * 1000 / os.sysconf("SC_CLK_TCK") / n
    print(f"\n1 MB alias bomb ({len(bomb):,} bytes), {n} requests: refused with {sorted(codes)}, "
          f"wall p50 {statistics.median(times):.2f} ms, p99 {sorted(times)[int(n * 0.99) - 1]:.2f} ms, "
          f"gateway CPU {cpu_ms:.2f} ms per request")


def gateway_config(tmp, name):
    """Side by side, each gateway keeps its (unused) indexes in memory: two
    processes cannot open one tantivy directory."""
    path = os.path.join(tmp, f"{name}.toml")
    with open(path, "w") as f:
        f.write("[search]\nin_memory = true\n[sync]\nenabled = false\n")
    return path


def compare(args):
    """`--baseline BIN`: this build and BIN on the same services, alternating
    run by run; per workload the median of each and the ratio."""
    ensure_wrk()
    if not args.no_build:
        sh("cargo", "build", "--release", "--bins", cwd=ROOT)
    mine, others = cores(args.no_pin)
    env = bench_env()
    tmp = tempfile.mkdtemp(prefix="tessera-bench-compare-")
    builds = [("this build", f"{ROOT}/target/release/tessera", GATEWAY_PORT),
              ("baseline", os.path.abspath(args.baseline), GATEWAY_PORT + 100)]
    procs = []
    try:
        procs.append(start_subgraphs(args.scale, env, others))
        pids = {}
        for label, binary, port in builds:
            p = subprocess.Popen(pinned([binary, "serve", "--listen", f"127.0.0.1:{port}",
                                         "--config", gateway_config(tmp, port)], mine), cwd=ROOT, env=env,
                                 stdout=subprocess.DEVNULL)
            procs.append(p)
            wait_serving(port)
            pids[label] = (p.pid, port)
        print(f"scale {args.scale}, {args.connections} connections, {args.duration}s per run, wrk -t2, "
              f"{args.rounds} alternating rounds, unique authorization per request"
              + (", gateways pinned to core 0\n" if mine else "\n"))
        print("| workload | build | req/s (median) | p50 ms | p99 ms | gateway CPU ms / 1k req |")
        print("|---|---|---:|---:|---:|---:|")
        ticks_per_s = os.sysconf("SC_CLK_TCK")
        for name in args.only or list(WORKLOADS):
            query, variables = WORKLOADS[name]
            body = {"query": query, "variables": variables}
            results = {label: [] for label, _, _ in builds}
            for label, (pid, port) in pids.items():
                run_wrk(body, True, args.warmup, args.connections, port=port, cpus=others)
            for _ in range(args.rounds):
                for label, (pid, port) in pids.items():
                    before = cpu_ticks(pid)
                    rps, total, p50, p99, bad = run_wrk(body, True, args.duration, args.connections, port=port,
                                                        cpus=others)
                    cpu = (cpu_ticks(pid) - before) * 1000 / ticks_per_s * 1000 / max(total, 1)
                    results[label].append((rps, p50, p99, cpu, bad))
            med = {}
            for label, runs in results.items():
                m = [statistics.median(r[k] for r in runs) for k in range(4)]
                med[label] = m
                bad = sum(r[4] for r in runs)
                print(f"| {name} | {label} | {m[0]:.0f} | {m[1]:.2f} | {m[2]:.2f} | {m[3]:.1f} |"
                      + (f" ({bad} non-2xx)" if bad else ""))
            a, b = med["this build"], med["baseline"]
            print(f"| {name} | ratio | {a[0] / b[0]:.3f} | {a[1] / b[1]:.3f} | {a[2] / b[2]:.3f} | {a[3] / b[3]:.3f} |")
        refusal_cost(pids["this build"])
    finally:
        stop(procs, timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
