#!/usr/bin/env python3
"""Search benchmark: backfill throughput, index size and search latency at
1,000,000 contracts on the embedded index (tantivy) and on OpenSearch side by
side, the MERGE strategy's cost per page beside them, and a blue/green
reindex under a stream of writes.

    python3 bench/search.py                          # scale 1,000,000, both backends
    python3 bench/search.py --scale 100000 --samples 200
    python3 bench/search.py --backends tantivy       # no OpenSearch
    python3 bench/search.py --backends tantivy --baseline /tmp/tessera-before
                                  # that binary serves a copy of the same
                                  # tantivy index, samples alternating

Steps (release builds, everything on 127.0.0.1):
  1. `subgraphs --service all --scale N` (events latency 0); for OpenSearch,
     `scripts/services.sh up opensearch` (512 MiB heap, one node);
  2. per backend, `tessera sync backfill contracts` and `… feed` into fresh
     indexes: documents/s including the batched joins, and the index size
     (tantivy: files on disk; OpenSearch: `_cat/indices` store size);
  3. `tessera serve` per backend, and a gateway whose `feed` uses the MERGE
     strategy; latency at concurrency 1, samples alternating between the
     backends (median and p99, client-side wall time):
       - contractSearch, filtered and sorted, first page of 20, with and
         without `totalCount` (without it the index may skip documents
         that cannot make the page);
       - the same queries 10,000 rows deep by cursor;
       - feed first page and 1,000 items deep;
  4. OpenSearch: `tessera sync reindex contracts` while a writer sends
     --writes-per-s writes straight to the services (updates, new and
     deleted settlements, deleted contracts, manager renames) and the
     serving gateway keeps syncing; then `sync poll`, `sync scan` and
     `sync reconcile`: what reconcile still has to write or delete is what
     the reindex lost or left stale.
Search queries select only fields stored in the documents, so no subgraph
is asked: the figures are the index's cost plus the gateway's.
"""

import argparse
import http.client
import json
import os
import random
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
import urllib.request

from common import SERVICES, stop, wait_http, wait_serving

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASE_PORT = 4201
PORTS = {"tantivy": 4200, "opensearch": 4198, "baseline": 4197}
MERGE_PORT = 4199

CONTRACTS = """query($a: String) { contractSearch(
  filter: {status: [ACTIVE, EXPIRED], amount: {gte: 5000000}},
  orderBy: [{field: AMOUNT, direction: DESC}], first: %d, after: $a) {
  totalCount pageInfo { endCursor } edges { node { id contractNo title amount status } } } }"""
CONTRACTS_PAGE = CONTRACTS.replace("totalCount ", "")
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


def latencies(ports, query, variables, samples):
    """p50/p99 per port, samples alternating between the ports."""
    conns = {p: http.client.HTTPConnection("127.0.0.1", p) for p in ports}
    times = {p: [] for p in ports}
    for p in ports:
        for _ in range(10):
            post(conns[p], query, variables[p])
    for _ in range(samples):
        for p in ports:
            t = time.perf_counter()
            post(conns[p], query, variables[p])
            times[p].append((time.perf_counter() - t) * 1000)
    out = {}
    for p in ports:
        conns[p].close()
        ts = sorted(times[p])
        out[p] = (statistics.median(ts), ts[min(len(ts) - 1, int(len(ts) * 0.99))])
    return out


def du(path):
    total = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            total += os.path.getsize(os.path.join(dirpath, f))
    return total


def opensearch_size(url, prefix):
    with urllib.request.urlopen(f"{url}/_cat/indices/{prefix}*?bytes=b&h=index,store.size&format=json") as r:
        return sum(int(i["store.size"]) for i in json.loads(r.read()) if "checkpoints" not in i["index"])


def write_config(path, data_dir, backend, opensearch_url, extra=""):
    with open(path, "w") as f:
        f.write(f'[search]\nbackend = "{backend}"\ndata_dir = "{data_dir}"\n')
        f.write(f'[search.opensearch]\nurl = "{opensearch_url}"\nindex_prefix = "bench_"\nreplicas = 0\ntimeout = "30s"\n')
        f.write(extra)
        for i, name in enumerate(SERVICES):
            f.write(f'[subgraphs.{name}]\nurl = "http://127.0.0.1:{BASE_PORT + i}/graphql"\ntimeout = "60s"\n')


def tessera(env, *args):
    return subprocess.run([f"{ROOT}/target/release/tessera", *args], cwd=ROOT, env=env,
                          check=True, capture_output=True, text=True).stdout


class Writer(threading.Thread):
    """Writes straight to the services at a steady rate."""

    def __init__(self, per_s, scale):
        super().__init__(daemon=True)
        self.per_s, self.scale = per_s, scale
        self.stop = threading.Event()
        self.done = 0
        self.rng = random.Random(42)

    def call(self, service, query, variables):
        conn = http.client.HTTPConnection("127.0.0.1", BASE_PORT + SERVICES.index(service))
        conn.request("POST", "/graphql", json.dumps({"query": query, "variables": variables}),
                     {"Content-Type": "application/json"})
        conn.getresponse().read()
        conn.close()

    def run(self):
        start = time.time()
        while not self.stop.is_set():
            r, c = self.rng.random(), self.rng.randint(1, self.scale)
            if r < 0.70:
                self.call("contracts", "mutation($id: Int!, $t: String!) { update_contract(id: $id, input: {title: $t}) { id } }",
                          {"id": c, "t": f"reindexed while writing {self.done}"})
            elif r < 0.85:
                self.call("settlements", "mutation($c: Int!) { createSettlement(contractId: $c, amount: \"100.00\", scheduledOn: \"2026-12-01\") { id } }",
                          {"c": c})
            elif r < 0.90:
                self.call("settlements", "mutation($id: Int!) { deleteSettlement(id: $id) }", {"id": c})
            elif r < 0.97:
                self.call("contracts", "mutation($id: Int!) { delete_contract(id: $id) }", {"id": c})
            else:
                self.call("staff", "mutation($id: Int!, $n: String!) { updateStaff(id: $id, name: $n) { id } }",
                          {"id": self.rng.randint(1, 50), "n": f"Renamed {self.done}"})
            self.done += 1
            time.sleep(max(0.0, start + self.done / self.per_s - time.time()))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=int, default=1_000_000)
    ap.add_argument("--samples", type=int, default=300)
    ap.add_argument("--backends", default="tantivy,opensearch")
    ap.add_argument("--writes-per-s", type=float, default=50)
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--baseline", help="a tessera binary to serve a copy of the tantivy index beside this one")
    args = ap.parse_args()
    backends = args.backends.split(",")
    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "--bins"], cwd=ROOT, check=True)
    opensearch_url = ""
    if "opensearch" in backends:
        out = subprocess.run([f"{ROOT}/scripts/services.sh", "up", "opensearch"], check=True,
                             capture_output=True, text=True).stdout
        opensearch_url = out.split()[-1]
        urllib.request.urlopen(urllib.request.Request(f"{opensearch_url}/bench_*", method="DELETE")).read()
    tmp = tempfile.mkdtemp(prefix="tessera-bench-index-")
    envs = {}
    for b in backends:
        cfg = os.path.join(tmp, f"{b}.toml")
        write_config(cfg, f"{tmp}/index-{b}", b, opensearch_url)
        envs[b] = dict(os.environ, RUST_LOG="warn", TESSERA_CONFIG=cfg, TESSERA_CURSOR_SECRET="bench-search-secret-" + "s" * 32)
    merge_cfg = os.path.join(tmp, "merge.toml")
    write_config(merge_cfg, f"{tmp}/merge-index", "tantivy", opensearch_url,
                 '[search.strategies]\nfeed = "merge"\n[sync]\nenabled = false\n')
    procs = []
    try:
        t = time.time()
        procs.append(subprocess.Popen(
            [f"{ROOT}/target/release/subgraphs", "--service", "all", "--base-port", str(BASE_PORT),
             "--scale", str(args.scale), "--events-latency", "0ms"], stdout=subprocess.DEVNULL))
        for i in range(len(SERVICES)):
            wait_http(f"http://127.0.0.1:{BASE_PORT + i}/health")
        print(f"scale {args.scale}: services seeded and up in {time.time() - t:.1f}s\n")

        print("| backend | index | documents | wall s | docs/s | size MiB (cumulative) |")
        print("|---|---|---:|---:|---:|---:|")
        for b in backends:
            for index in ["contracts", "feed"]:
                t = time.time()
                out = tessera(envs[b], "sync", "backfill", index)
                wall = time.time() - t
                docs = int(out.split(":")[1].split()[0])
                size = du(f"{tmp}/index-{b}") if b == "tantivy" else opensearch_size(opensearch_url, "bench_")
                print(f"| {b} | {index} | {docs} | {wall:.1f} | {docs / wall:.0f} | {size / 2**20:.0f} |", flush=True)

        for b in backends:
            procs.append(subprocess.Popen(
                [f"{ROOT}/target/release/tessera", "serve", "--listen", f"127.0.0.1:{PORTS[b]}"],
                cwd=ROOT, env=envs[b], stdout=subprocess.DEVNULL))
        if args.baseline:
            shutil.copytree(f"{tmp}/index-tantivy", f"{tmp}/index-baseline")
            cfg = os.path.join(tmp, "baseline.toml")
            write_config(cfg, f"{tmp}/index-baseline", "tantivy", opensearch_url)
            envs["baseline"] = dict(envs["tantivy"], TESSERA_CONFIG=cfg)
            procs.append(subprocess.Popen(
                [args.baseline, "serve", "--listen", f"127.0.0.1:{PORTS['baseline']}"],
                cwd=ROOT, env=envs["baseline"], stdout=subprocess.DEVNULL))
            backends = backends + ["baseline"]
        procs.append(subprocess.Popen(
            [f"{ROOT}/target/release/tessera", "serve", "--listen", f"127.0.0.1:{MERGE_PORT}",
             "--config", merge_cfg], cwd=ROOT, env=envs[backends[0]], stdout=subprocess.DEVNULL))
        for b in backends:
            wait_serving(PORTS[b])
        wait_serving(MERGE_PORT)

        print(f"\nlatency at concurrency 1, {args.samples} samples per backend, alternating; client wall time\n")
        print("| query | " + " | ".join(f"{b} p50 ms | {b} p99 ms" for b in backends) + " |")
        print("|---|" + "---:|---:|" * len(backends))
        ports = [PORTS[b] for b in backends]
        rows = [
            ("contractSearch filtered+sorted, page 1 (20)", CONTRACTS, "contractSearch", 0),
            ("contractSearch same, 10,000 deep by cursor", CONTRACTS, "contractSearch", 10_000),
            ("contractSearch filtered+sorted, no totalCount, page 1 (20)", CONTRACTS_PAGE, "contractSearch", 0),
            ("contractSearch same, no totalCount, 10,000 deep", CONTRACTS_PAGE, "contractSearch", 10_000),
            ("feed page 1 (20)", FEED, "feed", 0),
            ("feed 1,000 deep by cursor", FEED, "feed", 1000),
        ]
        for name, template, field, depth in rows:
            variables = {p: {"a": cursor_at(p, template, field, depth) if depth else None} for p in ports}
            result = latencies(ports, template % 20, variables, args.samples)
            print(f"| {name} | " + " | ".join(f"{result[p][0]:.2f} | {result[p][1]:.2f}" for p in ports) + " |",
                  flush=True)
        for name, depth in [("feed page 1 (20), MERGE (3 sources)", 0), ("feed 1,000 deep, MERGE", 1000)]:
            variables = {MERGE_PORT: {"a": cursor_at(MERGE_PORT, FEED, "feed", depth) if depth else None}}
            p50, p99 = latencies([MERGE_PORT], FEED % 20, variables, args.samples)[MERGE_PORT]
            print(f"| {name} | {p50:.2f} | {p99:.2f} |")

        if "opensearch" in backends:
            env = envs["opensearch"]
            writer = Writer(args.writes_per_s, args.scale)
            writer.start()
            t = time.time()
            out = tessera(env, "sync", "reindex", "contracts")
            swap = time.time() - t
            writer.stop.set()
            writer.join()
            print(f"\nreindex of contracts on OpenSearch under {args.writes_per_s:.0f} writes/s: "
                  f"{swap:.1f} s to the swap, {writer.done} writes meanwhile")
            print("  " + out.strip())
            tessera(env, "sync", "poll", "contracts")
            tessera(env, "sync", "scan", "contracts")
            print("  after the usual poll and scan, reconcile: " + tessera(env, "sync", "reconcile", "contracts").strip())
    finally:
        stop(procs, timeout=20)
        shutil.rmtree(tmp, ignore_errors=True)
        if opensearch_url:
            try:
                urllib.request.urlopen(urllib.request.Request(f"{opensearch_url}/bench_*", method="DELETE")).read()
            except Exception:
                pass


if __name__ == "__main__":
    main()
