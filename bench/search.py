#!/usr/bin/env python3
"""Search benchmark: backfill throughput, index size and search latency at
1,000,000 contracts, and the MERGE strategy's cost per page beside the index.

    python3 bench/search.py                      # scale 1,000,000
    python3 bench/search.py --scale 100000 --samples 200

Steps (release builds, everything on 127.0.0.1):
  1. `subgraphs --service all --scale N` (events latency 0);
  2. `tessera sync backfill contracts` and `… feed` into a fresh data dir:
     documents/s including the batched joins, and the index size on disk;
  3. `tessera serve` on that data dir, and a second gateway whose `feed`
     uses the MERGE strategy; latency at concurrency 1 (median and p99 of
     --samples requests, client-side wall time):
       - contractSearch, filtered and sorted, first page of 20;
       - the same query 10,000 rows deep by cursor;
       - feed first page and 1,000 items deep, index vs MERGE.
Search queries select only fields stored in the documents, so no subgraph
is asked: the figures are the index's cost plus the gateway's.
"""

import argparse
import http.client
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

from common import SERVICES, wait_http

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASE_PORT = 4201
INDEX_PORT = 4200
MERGE_PORT = 4199

CONTRACTS = """query($a: String) { contractSearch(
  filter: {status: [ACTIVE, EXPIRED], amount: {gte: 5000000}},
  orderBy: [{field: AMOUNT, direction: DESC}], first: %d, after: $a) {
  totalCount pageInfo { endCursor } edges { node { id contractNo title amount status } } } }"""
FEED = """query($a: String) { feed(first: %d, after: $a) {
  pageInfo { endCursor } edges { node { __typename id title createdAt } } } }"""


def post(conn, query, variables):
    conn.request("POST", "/graphql", json.dumps({"query": query, "variables": variables}),
                 {"Content-Type": "application/json"})
    r = conn.getresponse()
    body = json.loads(r.read())
    if body.get("errors"):
        raise SystemExit(f"query failed: {body['errors']}")
    return body["data"]


def cursor_at(port, template, field, depth):
    """The cursor after `depth` items, walking 500 at a time."""
    conn = http.client.HTTPConnection("127.0.0.1", port)
    after = None
    walked = 0
    while walked < depth:
        step = min(500, depth - walked)
        data = post(conn, template % step, {"a": after})[field]
        after = data["pageInfo"]["endCursor"]
        walked += step
    conn.close()
    return after


def latency(port, query, variables, samples):
    conn = http.client.HTTPConnection("127.0.0.1", port)
    for _ in range(10):
        post(conn, query, variables)
    times = []
    for _ in range(samples):
        t = time.perf_counter()
        post(conn, query, variables)
        times.append((time.perf_counter() - t) * 1000)
    conn.close()
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, int(len(times) * 0.99))]


def du(path):
    total = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            total += os.path.getsize(os.path.join(dirpath, f))
    return total


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=int, default=1_000_000)
    ap.add_argument("--samples", type=int, default=300)
    ap.add_argument("--no-build", action="store_true")
    args = ap.parse_args()
    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "--bins"], cwd=ROOT, check=True)
    data_dir = tempfile.mkdtemp(prefix="tessera-bench-index-")
    env = dict(os.environ, RUST_LOG="warn", TESSERA_CONFIG=os.path.join(data_dir, "tessera.toml"))
    with open(env["TESSERA_CONFIG"], "w") as f:
        f.write(f'[search]\ndata_dir = "{data_dir}/index"\n[search.strategies]\nfeed = "index"\n')
        for i, name in enumerate(SERVICES):
            f.write(f'[subgraphs.{name}]\nurl = "http://127.0.0.1:{BASE_PORT + i}/graphql"\ntimeout = "60s"\n')
    merge_config = os.path.join(data_dir, "merge.toml")
    with open(merge_config, "w") as f:
        f.write(f'[search]\ndata_dir = "{data_dir}/merge-index"\n[search.strategies]\nfeed = "merge"\n'
                '[sync]\nenabled = false\n')
        for i, name in enumerate(SERVICES):
            f.write(f'[subgraphs.{name}]\nurl = "http://127.0.0.1:{BASE_PORT + i}/graphql"\ntimeout = "60s"\n')
    procs = []
    try:
        t = time.time()
        procs.append(subprocess.Popen(
            [f"{ROOT}/target/release/subgraphs", "--service", "all", "--base-port", str(BASE_PORT),
             "--scale", str(args.scale), "--events-latency", "0ms"], env=env, stdout=subprocess.DEVNULL))
        for i in range(len(SERVICES)):
            wait_http(f"http://127.0.0.1:{BASE_PORT + i}/health")
        print(f"scale {args.scale}: services seeded and up in {time.time() - t:.1f}s\n")

        print("| index | documents | wall s | docs/s | size on disk MiB |")
        print("|---|---:|---:|---:|---:|")
        for index in ["contracts", "feed"]:
            t = time.time()
            out = subprocess.run([f"{ROOT}/target/release/tessera", "sync", "backfill", index], cwd=ROOT, env=env,
                                 check=True, capture_output=True, text=True).stdout
            wall = time.time() - t
            docs = int(out.split(":")[1].split()[0])
            print(f"| {index} | {docs} | {wall:.1f} | {docs / wall:.0f} | {du(os.path.join(data_dir, 'index')) / 2**20:.0f} (cumulative) |")

        procs.append(subprocess.Popen(
            [f"{ROOT}/target/release/tessera", "serve", "--listen", f"127.0.0.1:{INDEX_PORT}"],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL))
        procs.append(subprocess.Popen(
            [f"{ROOT}/target/release/tessera", "serve", "--listen", f"127.0.0.1:{MERGE_PORT}",
             "--config", merge_config], cwd=ROOT, env=env, stdout=subprocess.DEVNULL))
        wait_http(f"http://127.0.0.1:{INDEX_PORT}/health")
        wait_http(f"http://127.0.0.1:{MERGE_PORT}/health")

        print(f"\nlatency at concurrency 1, {args.samples} samples, client wall time\n")
        print("| query | strategy | p50 ms | p99 ms |")
        print("|---|---|---:|---:|")
        rows = [
            ("contractSearch filtered+sorted, page 1 (20)", INDEX_PORT, "index", CONTRACTS % 20, None),
            ("contractSearch same, 10,000 deep by cursor", INDEX_PORT, "index", CONTRACTS % 20,
             cursor_at(INDEX_PORT, CONTRACTS, "contractSearch", 10_000)),
            ("feed page 1 (20)", INDEX_PORT, "index", FEED % 20, None),
            ("feed 1,000 deep by cursor", INDEX_PORT, "index", FEED % 20, cursor_at(INDEX_PORT, FEED, "feed", 1000)),
            ("feed page 1 (20)", MERGE_PORT, "merge", FEED % 20, None),
            ("feed 1,000 deep by cursor", MERGE_PORT, "merge", FEED % 20, cursor_at(MERGE_PORT, FEED, "feed", 1000)),
        ]
        for name, port, strategy, query, after in rows:
            p50, p99 = latency(port, query, {"a": after}, args.samples)
            print(f"| {name} | {strategy} | {p50:.2f} | {p99:.2f} |")
    finally:
        for p in procs:
            p.send_signal(signal.SIGINT)
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
