"""Helpers shared by the benchmark scripts."""

import json
import os
import signal
import subprocess
import time
import urllib.request

SERVICES = ["members", "staff", "contracts", "accounts", "settlements", "posts", "products", "events", "reviews"]


def wait_http(url, timeout=300):
    """Waits until `url` answers 200, or exits naming it."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except Exception:
            time.sleep(0.2)
    raise SystemExit(f"{url} did not come up")


def wait_serving(port, timeout=300):
    """Waits until the gateway on `port` answers a query (it answers 503
    while it starts; `/ready` also waits for indexes a bench may not build)."""
    url = f"http://127.0.0.1:{port}/graphql"
    body = json.dumps({"query": "{ __typename }"}).encode()
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=1) as r:
                if r.status == 200:
                    return
        except Exception:
            time.sleep(0.2)
    raise SystemExit(f"{url} did not come up")


def stop(procs, timeout=20):
    """SIGINT to every process (they drain and exit), then waits; kills
    what is still running after `timeout` seconds."""
    for p in procs:
        p.send_signal(signal.SIGINT)
    for p in procs:
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()


def cores(no_pin):
    """(the gateway's cores, everything else's) for `taskset -c`: core 0 for
    the gateway and the rest for the services and the load generator, as
    the issues' figures are taken; (None, None) with --no-pin or one core."""
    if no_pin or (os.cpu_count() or 1) < 2:
        return None, None
    return "0", f"1-{os.cpu_count() - 1}"


def pinned(cmd, cpus):
    """`cmd` under `taskset -c cpus`, or as it is when `cpus` is None."""
    return ["taskset", "-c", cpus] + cmd if cpus else cmd
