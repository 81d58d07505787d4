#!/usr/bin/env python3
"""Change events through Kafka: how fast a write in a service becomes
searchable, how many events one worker applies, and what read-your-writes
adds to a mutation.

    python3 bench/events.py                      # scale 100,000; 100 and 2,000 writes/s
    python3 bench/events.py --scale 20000 --duration 10

Steps (release builds, 127.0.0.1; Kafka from `scripts/services.sh up kafka`):
  1. `subgraphs --service all --kafka …` (events latency 0): every committed
     write is published to the service's topic;
  2. `tessera serve` with `sync.source = "kafka"` (the embedded index, its
     worker in the same process), after its backfill;
  3. event → searchable: a writer retitles contracts at R writes/s (several
     threads); for one write in ten a prober searches the new title's unique
     word every 5 ms until it is found: latency from the service's answer to
     the first search that finds it (p50, p99), at each rate;
  4. throughput of one worker: with the gateway stopped, N contract updates
     (and, separately, M manager renames, each rewriting every contract of
     that manager) queue up in Kafka; the gateway starts again and the time
     until the last write is searchable gives events/s (documents/s for
     renames);
  5. read-your-writes: the same mutation through a gateway that waits for
     the index and one that does not (`sync.read_your_writes = false`),
     alternating: p50/p99 of each and the difference.
"""

import argparse
import http.client
import json
import os
import shutil
import signal
import statistics
import subprocess
import tempfile
import threading
import time
import uuid

from common import SERVICES, stop, wait_http, wait_serving

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASE_PORT = 4301
GATEWAY = 4300
PLAIN = 4299  # read_your_writes off


def gql(port, query, variables=None, conn=None):
    own = conn is None
    conn = conn or http.client.HTTPConnection("127.0.0.1", port)
    conn.request("POST", "/graphql", json.dumps({"query": query, "variables": variables or {}}),
                 {"Content-Type": "application/json"})
    body = json.loads(conn.getresponse().read())
    if own:
        conn.close()
    return body


def retitle(conn, contract, title):
    conn.request("POST", "/graphql", json.dumps({
        "query": "mutation($id: Int!, $t: String!) { update_contract(id: $id, input: {title: $t}) { id } }",
        "variables": {"id": contract, "t": title}}), {"Content-Type": "application/json"})
    conn.getresponse().read()


def found(conn, word):
    body = gql(GATEWAY, "query($t: String!) { contractSearch(filter: {text: $t}, first: 0) { totalCount } }",
               {"t": word}, conn)
    return ((body.get("data") or {}).get("contractSearch") or {}).get("totalCount", 0) > 0


def managed_by(conn, name):
    body = gql(GATEWAY, "query($n: String!) { contractSearch(filter: {managerName: {eq: $n}}, first: 0) { totalCount } }",
               {"n": name}, conn)
    return ((body.get("data") or {}).get("contractSearch") or {}).get("totalCount", 0)


def wait_indexed(port, scale, timeout=900):
    """Waits until the gateway's contracts index answers with every contract
    (the worker backfills an index never built before it follows the stream)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        body = gql(port, "{ contractSearch(first: 0) { totalCount } }")
        if ((body.get("data") or {}).get("contractSearch") or {}).get("totalCount", 0) >= scale:
            return
        time.sleep(0.5)
    raise SystemExit("the contracts index was not built in time")


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))]


def event_latency(rate, duration, scale):
    """p50/p99 ms from a write's answer to the first search that finds it."""
    latencies, lock = [], threading.Lock()
    stop = time.time() + duration
    threads = max(1, int(rate // 250))

    def probe(word, written):
        conn = http.client.HTTPConnection("127.0.0.1", GATEWAY)
        while time.time() - written < 10:
            if found(conn, word):
                with lock:
                    latencies.append((time.time() - written) * 1000)
                return
            time.sleep(0.005)
        with lock:
            latencies.append(10_000.0)

    def writer(k):
        conn = http.client.HTTPConnection("127.0.0.1", BASE_PORT + SERVICES.index("contracts"))
        n, start = 0, time.time()
        while time.time() < stop:
            word = "w" + uuid.uuid4().hex[:12]
            retitle(conn, 1 + (n * threads + k) % scale, f"retitled {word}")
            written = time.time()
            if n % 10 == 0:
                threading.Thread(target=probe, args=(word, written), daemon=True).start()
            n += 1
            time.sleep(max(0.0, start + n * threads / rate - time.time()))

    workers = [threading.Thread(target=writer, args=(k,)) for k in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    time.sleep(3)
    return latencies


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=int, default=100_000)
    ap.add_argument("--duration", type=float, default=20)
    ap.add_argument("--rates", default="100,2000")
    ap.add_argument("--updates", type=int, default=20_000)
    ap.add_argument("--renames", type=int, default=50)
    ap.add_argument("--no-build", action="store_true")
    args = ap.parse_args()
    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "--bins"], cwd=ROOT, check=True)
    out = subprocess.run([f"{ROOT}/scripts/services.sh", "up", "kafka"], check=True,
                         capture_output=True, text=True).stdout
    brokers = out.split()[-1]
    tmp = tempfile.mkdtemp(prefix="tessera-bench-events-")
    tag = uuid.uuid4().hex[:8]
    prefix = f"bench{tag}.changes."
    config = os.path.join(tmp, "tessera.toml")
    plain = os.path.join(tmp, "plain.toml")
    # The gateway without read-your-writes only forwards mutations: it needs
    # no index (and cannot open the first one's: tantivy locks it).
    for path, extra, index in [(config, "", f'data_dir = "{tmp}/index"'),
                               (plain, "read_your_writes = false\nenabled = false\n", "in_memory = true")]:
        with open(path, "w") as f:
            f.write(f'[search]\n{index}\n')
            f.write(f'[sync]\nsource = "kafka"\n{extra}[sync.kafka]\nbrokers = "{brokers}"\n'
                    f'group = "bench{tag}"\ntopic_prefix = "{prefix}"\ndead_letter_topic = "bench{tag}.dlq"\n')
            for i, name in enumerate(SERVICES):
                f.write(f'[subgraphs.{name}]\nurl = "http://127.0.0.1:{BASE_PORT + i}/graphql"\ntimeout = "60s"\n')
    env = dict(os.environ, RUST_LOG="warn", TESSERA_CURSOR_SECRET="bench-" + uuid.uuid4().hex)
    procs = []

    def gateway(port, cfg):
        p = subprocess.Popen([f"{ROOT}/target/release/tessera", "serve", "--listen", f"127.0.0.1:{port}",
                              "--config", cfg], cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
        wait_serving(port, timeout=600)
        return p

    try:
        procs.append(subprocess.Popen(
            [f"{ROOT}/target/release/subgraphs", "--service", "all", "--base-port", str(BASE_PORT),
             "--scale", str(args.scale), "--events-latency", "0ms", "--kafka", brokers,
             "--kafka-topic-prefix", prefix], stdout=subprocess.DEVNULL))
        for i in range(len(SERVICES)):
            wait_http(f"http://127.0.0.1:{BASE_PORT + i}/health")
        t = time.time()
        main_gw = gateway(GATEWAY, config)
        wait_indexed(GATEWAY, args.scale)
        # The worker joins its consumer group after the backfill: one write
        # searchable means it follows the stream.
        warm = "w" + uuid.uuid4().hex[:12]
        conn_w = http.client.HTTPConnection("127.0.0.1", BASE_PORT + SERVICES.index("contracts"))
        retitle(conn_w, 1, f"warm {warm}")
        probe_conn = http.client.HTTPConnection("127.0.0.1", GATEWAY)
        while not found(probe_conn, warm):
            time.sleep(0.05)
        print(f"scale {args.scale}: gateway with its Kafka worker up (backfill included) in {time.time() - t:.1f}s\n")

        print("| writes/s | samples | p50 ms | p99 ms | max ms |")
        print("|---:|---:|---:|---:|---:|")
        for rate in [float(r) for r in args.rates.split(",")]:
            lat = event_latency(rate, args.duration, args.scale)
            print(f"| {rate:.0f} | {len(lat)} | {statistics.median(lat):.0f} | {pct(lat, 0.99):.0f} | {max(lat):.0f} |",
                  flush=True)

        # Throughput: writes queue up while no worker runs.
        print("\n| workload | events | documents rewritten | s | events/s | documents/s |")
        print("|---|---:|---:|---:|---:|---:|")
        for kind in ["updates", "renames"]:
            main_gw.send_signal(signal.SIGINT)
            main_gw.wait()
            conn_c = http.client.HTTPConnection("127.0.0.1", BASE_PORT + SERVICES.index("contracts"))
            conn_s = http.client.HTTPConnection("127.0.0.1", BASE_PORT + SERVICES.index("staff"))
            word = "z" + uuid.uuid4().hex[:12]
            docs = 0
            if kind == "updates":
                n = args.updates
                for i in range(n - 1):
                    retitle(conn_c, 1 + i % args.scale, f"queued {i}")
                docs = n
            else:
                # Every renamed manager gets the same new name: done when
                # the index holds every contract of theirs under it (the
                # staff topic's partitions are applied in any order).
                n = args.renames
                name = f"Renamed {word}"
                docs = 0
                for i in range(n):
                    conn_s.request("POST", "/graphql", json.dumps({
                        "query": "mutation($id: Int!, $n: String!) { updateStaff(id: $id, name: $n) { id } }",
                        "variables": {"id": 1 + i, "n": name}}), {"Content-Type": "application/json"})
                    conn_s.getresponse().read()
                    per = gql(BASE_PORT + SERVICES.index("contracts"),
                              "query($m: Int!) { contracts_count(manager_id: $m) }", {"m": 1 + i})
                    docs += per["data"]["contracts_count"]
            if kind == "updates":
                retitle(conn_c, args.scale, f"last {word}")
            t = time.time()
            main_gw = gateway(GATEWAY, config)
            conn = http.client.HTTPConnection("127.0.0.1", GATEWAY)
            if kind == "updates":
                while not found(conn, word):
                    time.sleep(0.01)
            else:
                while managed_by(conn, name) < docs:
                    time.sleep(0.01)
            took = time.time() - t
            print(f"| {kind} | {n} | ~{docs} | {took:.1f} | {n / took:.0f} | {docs / took:.0f} |", flush=True)
        procs.append(main_gw)

        # Read-your-writes: what the wait adds to a mutation.
        plain_gw = gateway(PLAIN, plain)
        procs.append(plain_gw)
        mutation = "mutation($id: ID!, $t: String!) { updateContract(id: $id, input: {title: $t}) { id } }"
        times = {GATEWAY: [], PLAIN: []}
        conns = {p: http.client.HTTPConnection("127.0.0.1", p) for p in times}
        for i in range(400):
            for port in times:
                t = time.perf_counter()
                body = gql(port, mutation, {"id": str(1 + i), "t": f"ryw {i}"}, conns[port])
                times[port].append((time.perf_counter() - t) * 1000)
                if port == GATEWAY and "indexUpdate" in (body.get("extensions") or {}):
                    print("  (a wait timed out)")
        a, b = times[GATEWAY][20:], times[PLAIN][20:]
        print("\n| mutation | p50 ms | p99 ms |")
        print("|---|---:|---:|")
        print(f"| with read-your-writes | {statistics.median(a):.2f} | {pct(a, 0.99):.2f} |")
        print(f"| without | {statistics.median(b):.2f} | {pct(b, 0.99):.2f} |")
        print(f"| added | {statistics.median(a) - statistics.median(b):.2f} | {pct(a, 0.99) - pct(b, 0.99):.2f} |")
    finally:
        stop(procs, timeout=20)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
