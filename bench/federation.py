#!/usr/bin/env python3
"""Federation benchmark: the same supergraph and the same four Federation
subgraphs (`subgraphs --service federation`: users, products, inventory,
reviews) behind Tessera and behind Hive Router (and Apollo Router, when its
binary is given), alternating in one run, driven by wrk (closed loop).

    python3 bench/federation.py --hive-router /work/cache/hive-router/bin/hive_router
    python3 bench/federation.py --hive-router BIN --apollo-router BIN --rounds 5 --duration 10

The workload is one nested query of about 90 KB (users → reviews → product →
reviews → author, five levels, with @requires and @provides on the way), a
unique `authorization` header per request that every gateway is configured to
forward to the subgraphs, as a deployment would: no gateway can then answer
two clients with one subgraph request (a router that does not forward it
deduplicates identical in-flight subgraph requests across clients and does
less work than a real deployment would let it). Before any load, every
gateway's response body must equal Tessera's byte for byte (JSON key order
included) and cost the same subgraph requests. Per gateway it prints the
medians over the rounds of: requests/s, p50/p99 latency, gateway CPU ms per
request and the subgraphs' CPU ms per request (from /proc/PID/stat), peak
RSS, and subgraph requests per operation (for one request, and under load).

With --pin (default on machines with 2+ cores), the gateway runs on core 0
and the subgraphs and wrk on the others, as the issue's figures are taken.
The routers are built outside this repository (see docs/federation.md);
nothing of theirs is checked in.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import cores, pinned, stop, wait_http  # noqa: E402
from gateway import cpu_ticks, ensure_wrk, peak_rss_mib, run_wrk  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SUPERGRAPH = os.path.join(ROOT, "subgraphs", "federation", "supergraph.graphql")
GRAPHS = {"users": 4201, "products": 4202, "inventory": 4203, "reviews": 4204}
PORTS = {"tessera": 4300, "hive-router": 4301, "apollo-router": 4302}

QUERY = """query Federated($n: Int!) { users(first: $n) {
  id name username
  reviews { id body
    author { id username }
    product { upc name price weight inStock shippingEstimate
      reviews { id body author { id name username } } } } } }"""
BODY = {"query": QUERY, "variables": {"n": 16}, "operationName": "Federated"}


def post(port, body):
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as r:
        return r.read()


def subgraph_requests():
    total = 0
    for port in GRAPHS.values():
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats") as r:
            total += json.load(r)["requests"]
    return total


def reset_stats():
    for port in GRAPHS.values():
        urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}/stats/reset", method="POST"))


def start_tessera(binary, tmp, cores):
    config = os.path.join(tmp, "tessera.toml")
    with open(config, "w") as f:
        f.write(f'[server]\nlisten = "127.0.0.1:{PORTS["tessera"]}"\n\n'
                f'[supergraph]\npath = "{SUPERGRAPH}"\n\n'
                '[execution]\nforward_headers = ["authorization"]\n\n'
                '[telemetry]\nmetrics = false\n')
    env = dict(os.environ, TESSERA_CURSOR_SECRET="f" * 64, RUST_LOG="warn")
    return subprocess.Popen(pinned([binary, "serve", "--config", config], cores), cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL)


def start_hive(binary, tmp, cores):
    config = os.path.join(tmp, "router.config.yaml")
    with open(config, "w") as f:
        f.write(f"supergraph:\n  source: file\n  path: {SUPERGRAPH}\n"
                f"http:\n  host: 127.0.0.1\n  port: {PORTS['hive-router']}\n"
                "log:\n  level: warn\n"
                "headers:\n  all:\n    request:\n      - propagate:\n          named: authorization\n")
    env = dict(os.environ, ROUTER_CONFIG_FILE_PATH=config)
    return subprocess.Popen(pinned([binary], cores), cwd=tmp, env=env, stdout=subprocess.DEVNULL)


def start_apollo(binary, tmp, cores):
    config = os.path.join(tmp, "router.yaml")
    with open(config, "w") as f:
        f.write(f"supergraph:\n  listen: 127.0.0.1:{PORTS['apollo-router']}\n  path: /graphql\n"
                "telemetry:\n  instrumentation:\n    spans:\n      mode: spec_compliant\n"
                "homepage:\n  enabled: false\n"
                "headers:\n  all:\n    request:\n      operations:\n"
                "        - propagate:\n            named: authorization\n")
    env = dict(os.environ, APOLLO_TELEMETRY_DISABLED="true")
    return subprocess.Popen(pinned([binary, "--supergraph", SUPERGRAPH, "--config", config, "--log", "warn"], cores),
                            cwd=tmp, env=env, stdout=subprocess.DEVNULL)


def ready(port):
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if b'"data"' in post(port, {"query": "{ __typename }"}):
                return
        except Exception:
            time.sleep(0.2)
    raise SystemExit(f"the gateway on port {port} did not come up")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tessera", default=os.path.join(ROOT, "target", "release", "tessera"))
    ap.add_argument("--subgraphs", default=os.path.join(ROOT, "target", "release", "subgraphs"))
    ap.add_argument("--hive-router", help="the hive_router binary (cargo install hive-router)")
    ap.add_argument("--apollo-router", help="the Apollo Router binary")
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--connections", type=int, default=20)
    ap.add_argument("--no-pin", action="store_true")
    args = ap.parse_args()
    # Error backtraces cost when captured; no gateway runs with them here.
    os.environ["RUST_BACKTRACE"] = "0"

    ensure_wrk()
    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "--bin", "tessera", "--bin", "subgraphs"], cwd=ROOT, check=True)
    gateway_cores, other_cores = cores(args.no_pin)
    pin = gateway_cores is not None

    tmp = tempfile.mkdtemp(prefix="tessera-federation-")
    subgraphs = subprocess.Popen(
        pinned([args.subgraphs, "--service", "federation", "--base-port", str(GRAPHS["users"])], other_cores),
        stdout=subprocess.DEVNULL)
    procs = [subgraphs]
    try:
        for port in GRAPHS.values():
            wait_http(f"http://127.0.0.1:{port}/health")
        gateways = {"tessera": start_tessera(args.tessera, tmp, gateway_cores)}
        if args.hive_router:
            gateways["hive-router"] = start_hive(args.hive_router, tmp, gateway_cores)
        if args.apollo_router:
            gateways["apollo-router"] = start_apollo(args.apollo_router, tmp, gateway_cores)
        procs += gateways.values()
        for name in gateways:
            ready(PORTS[name])

        # Same answer, same cost, before any figure.
        expected = None
        costs = {}
        for name in gateways:
            reset_stats()
            body = json.loads(post(PORTS[name], BODY))
            costs[name] = subgraph_requests()
            if "errors" in body:
                raise SystemExit(f"{name} answered with errors: {json.dumps(body['errors'])[:500]}")
            text = json.dumps(body, separators=(",", ":"))
            if expected is None:
                expected = text
                print(f"response: {len(text)} bytes; subgraph requests per operation: {costs}", file=sys.stderr)
            elif text != expected:
                at = next((i for i, (a, b) in enumerate(zip(text, expected)) if a != b), min(len(text), len(expected)))
                raise SystemExit(f"{name}'s response differs from tessera's at byte {at}: "
                                 f"{text[max(0, at - 80):at + 80]!r} vs {expected[max(0, at - 80):at + 80]!r}")

        results = {name: [] for name in gateways}
        for _ in range(args.rounds):
            for name, proc in gateways.items():
                before, before_subgraphs = cpu_ticks(proc.pid), cpu_ticks(subgraphs.pid)
                reset_stats()
                rps, total, p50, p99, errors = run_wrk(BODY, True, args.duration, args.connections,
                                                       port=PORTS[name], cpus=other_cores)
                per_request = 1000 / os.sysconf("SC_CLK_TCK") / max(total, 1)
                cpu_ms = (cpu_ticks(proc.pid) - before) * per_request
                subgraph_ms = (cpu_ticks(subgraphs.pid) - before_subgraphs) * per_request
                fetches = subgraph_requests() / max(total, 1)
                results[name].append((rps, p50, p99, cpu_ms, subgraph_ms, fetches, errors))
        print()
        print(f"Federated query, {len(expected)} bytes, {args.connections} connections, unique authorization "
              f"headers, {args.rounds} alternating rounds of {args.duration} s, medians"
              + (", gateway pinned to core 0" if pin else ""))
        print()
        print("| gateway | req/s | p50 ms | p99 ms | CPU ms/request | subgraphs' CPU ms/request | peak RSS MiB "
              "| subgraph requests/op (one request; under load) | non-2xx |")
        print("|---|---|---|---|---|---|---|---|---|")
        for name, rows in results.items():
            med = [statistics.median(r[i] for r in rows) for i in range(6)]
            errors = sum(r[6] for r in rows)
            print(f"| {name} | {med[0]:.0f} | {med[1]:.2f} | {med[2]:.2f} | {med[3]:.3f} | {med[4]:.3f} | "
                  f"{peak_rss_mib(gateways[name].pid):.0f} | {costs[name]}; {med[5]:.2f} | {errors} |")
    finally:
        stop(procs)


if __name__ == "__main__":
    main()
