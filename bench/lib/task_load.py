#!/usr/bin/env python3
"""Queues cheap director tasks from several client threads at once, with background API load,
and reports each task's queued -> started latency.

  task_load.py URL CA PASSWORD TASK_PATH SUBMITTERS TASKS BACKGROUND DIRECTOR_LOG

Each of SUBMITTERS threads repeatedly sends GET TASK_PATH (an endpoint that answers 302 to a
new task), notes the time just before sending, and polls the task every 20 ms until it ends;
TASKS tasks are queued in all. BACKGROUND other threads meanwhile request GET /deployments and
GET /tasks?verbose=1&limit=30 without pause. The start time of each task is read afterwards
from the director's log line "task started" (microsecond UTC timestamps), so polling does not
round it. Latency = started - sent: it includes the HTTP request and the task's insertion,
so it is an upper bound of the time the task sat queued. Prints one "task_id ms" per line.
"""

import base64
import http.client
import json
import re
import ssl
import sys
import threading
import time
from datetime import datetime, timezone
from urllib.parse import urlparse


def connection(url, ca):
    u = urlparse(url)
    ctx = ssl.create_default_context(cafile=ca)
    return http.client.HTTPSConnection(u.hostname, u.port, context=ctx, timeout=120)


def main():
    url, ca, password, task_path = sys.argv[1:5]
    submitters, total, background = (int(x) for x in sys.argv[5:8])
    log_path = sys.argv[8]
    auth = {"Authorization": "Basic " + base64.b64encode(f"admin:{password}".encode()).decode()}

    sent = {}
    lock = threading.Lock()
    remaining = [total]
    stop = threading.Event()
    errors = []

    def submitter():
        conn = connection(url, ca)
        while True:
            with lock:
                if remaining[0] == 0:
                    return
                remaining[0] -= 1
            t = time.time()
            conn.request("GET", task_path, headers=auth)
            resp = conn.getresponse()
            resp.read()
            if resp.status != 302:
                errors.append(f"GET {task_path}: HTTP {resp.status}")
                return
            task_id = int(resp.getheader("Location").rstrip("/").rsplit("/", 1)[1])
            with lock:
                sent[task_id] = t
            while True:
                conn.request("GET", f"/tasks/{task_id}", headers=auth)
                r = conn.getresponse()
                state = json.loads(r.read())["state"]
                if state not in ("queued", "processing", "cancelling"):
                    if state != "done":
                        errors.append(f"task {task_id} ended {state}")
                    break
                time.sleep(0.02)

    def loader(n):
        conn = connection(url, ca)
        paths = ["/deployments", "/tasks?verbose=1&limit=30"]
        i = n
        while not stop.is_set():
            conn.request("GET", paths[i % 2], headers=auth)
            conn.getresponse().read()
            i += 1

    loaders = [threading.Thread(target=loader, args=(n,), daemon=True) for n in range(background)]
    for t in loaders:
        t.start()
    threads = [threading.Thread(target=submitter) for _ in range(submitters)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    for t in loaders:
        t.join(timeout=30)
    if errors:
        sys.exit("; ".join(errors[:5]))

    started = {}
    ansi = re.compile(r"\x1b\[[0-9;]*m")
    line_re = re.compile(r"^(\S+)\s.*task started.*\btask=(\d+)\b")
    with open(log_path, encoding="utf-8", errors="replace") as f:
        for line in f:
            m = line_re.match(ansi.sub("", line))
            if m:
                stamp = datetime.strptime(m.group(1).rstrip("Z")[:26], "%Y-%m-%dT%H:%M:%S.%f")
                started[int(m.group(2))] = stamp.replace(tzinfo=timezone.utc).timestamp()
    missing = [t for t in sent if t not in started]
    if missing:
        sys.exit(f"no 'task started' log line for tasks {missing[:5]}")
    for task_id in sorted(sent):
        print(task_id, f"{(started[task_id] - sent[task_id]) * 1000:.3f}")


if __name__ == "__main__":
    main()
