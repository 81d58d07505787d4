#!/usr/bin/env python3
"""Soak: the gateway (with its embedded indexes and sync) under a mixed load
for a long while; errors must stay at 0 and RSS flat.

    python3 bench/soak.py                       # 10 minutes, 50 connections, scale 10000
    python3 bench/soak.py --minutes 1 --no-build

wrk (closed loop, 50 connections) cycles through a page of 20 contracts, a
contract detail, a filtered and sorted contractSearch page, a feed page and
a contractSearch page 40 deep, each request with a unique authorization
header; a Lua hook counts non-2xx answers and 200s whose body has `errors`.
The gateway's RSS is sampled every 10 s. Prints the RSS curve, the totals,
and the drift (last minute's median RSS over the second minute's).
"""

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
from gateway import (DETAIL, GATEWAY_PORT, PAGE, ROOT, bench_env, ensure_wrk,  # noqa: E402
                     start_subgraphs)
from common import stop, wait_http  # noqa: E402

SEARCH = ('query S($m: String!) { contractSearch(filter: {managerName: {prefix: $m}}, '
          'orderBy: [{field: AMOUNT, direction: DESC}], first: 20) { totalCount edges { node { id title amount '
          'manager { name } member { name } } } } }')
DEEP = 'query D { contractSearch(page: 40, first: 20) { edges { node { id title } } } }'
FEED = ('query F { feed(first: 20) { edges { node { __typename id title createdAt '
        '... on Product { price } } } } }')

LUA = r"""
local bodies = { %s }
local i = 0
local counter = 0
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) errors = 0 bad = 0 end
request = function()
  i = i %% #bodies + 1
  counter = counter + 1
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["authorization"] = "Bearer " .. counter .. "-" .. math.random(1, 1000000000)
  return wrk.format("POST", "/graphql", nil, bodies[i])
end
response = function(status, headers, body)
  if status ~= 200 then bad = bad + 1 elseif string.find(body, '"errors"', 1, true) then errors = errors + 1 end
end
function done(summary, latency, requests)
  local e, b = 0, 0
  for _, t in ipairs(threads) do e = e + t:get("errors") b = b + t:get("bad") end
  io.write(string.format("SOAK graphql_errors=%%d non_200=%%d\n", e, b))
end
"""


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--scale", type=int, default=10000)
    ap.add_argument("--no-build", action="store_true")
    args = ap.parse_args()
    ensure_wrk()
    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "--bins"], cwd=ROOT, check=True)
    import json
    bodies = [json.dumps(b) for b in [
        {"query": PAGE, "variables": {"n": 20}},
        {"query": DETAIL, "variables": {"id": "42"}},
        {"query": SEARCH, "variables": {"m": "김"}},
        {"query": FEED},
        {"query": DEEP},
    ]]
    lua = LUA % ", ".join("[==[" + b + "]==]" for b in bodies)
    tmp = tempfile.mkdtemp(prefix="tessera-soak-")
    config = os.path.join(tmp, "tessera.toml")
    with open(config, "w") as f:
        f.write(f'[search]\ndata_dir = "{tmp}/index"\n')
    script = os.path.join(tmp, "soak.lua")
    with open(script, "w") as f:
        f.write(lua)
    env = bench_env()
    procs = []
    try:
        procs.append(start_subgraphs(args.scale, env))
        gateway = subprocess.Popen([f"{ROOT}/target/release/tessera", "serve", "--listen",
                                    f"127.0.0.1:{GATEWAY_PORT}", "--config", config],
                                   cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
        procs.append(gateway)
        wait_http(f"http://127.0.0.1:{GATEWAY_PORT}/ready", timeout=600)
        samples = []
        stop = threading.Event()

        def sample():
            start = time.time()
            while not stop.wait(10):
                samples.append((time.time() - start, rss_mib(gateway.pid)))

        sampler = threading.Thread(target=sample)
        sampler.start()
        seconds = int(args.minutes * 60)
        out = subprocess.run(["wrk", "-t2", "-c", str(args.connections), "-d", f"{seconds}s", "--latency",
                              "-s", script, f"http://127.0.0.1:{GATEWAY_PORT}/graphql"],
                             check=True, capture_output=True, text=True).stdout
        stop.set()
        sampler.join()
        total = int(re.search(r"(\d+) requests in", out).group(1))
        rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
        p50 = re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1)
        p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1)
        soak = re.search(r"SOAK graphql_errors=(\d+) non_200=(\d+)", out)
        socket_errors = re.search(r"Socket errors: (.*)", out)
        print(f"{args.minutes:g} min, {args.connections} connections, scale {args.scale}, 5 operations in turn\n")
        print(f"requests: {total:,} ({rps:.0f}/s), p50 {p50}, p99 {p99}")
        print(f"GraphQL errors: {soak.group(1)}, non-200: {soak.group(2)}, "
              f"socket errors: {socket_errors.group(1) if socket_errors else 'none'}")
        print("\n| t (s) | RSS MiB |\n|---:|---:|")
        for t, rss in samples[:: max(1, len(samples) // 12)]:
            print(f"| {t:.0f} | {rss:.1f} |")
        if len(samples) >= 12:
            second = statistics.median(r for t, r in samples if 60 <= t < 120)
            last = statistics.median(r for t, r in samples if t >= samples[-1][0] - 60)
            print(f"\nRSS median, second minute {second:.1f} MiB, last minute {last:.1f} MiB: drift {last / second:.3f}×")
    finally:
        stop(procs, timeout=20)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
