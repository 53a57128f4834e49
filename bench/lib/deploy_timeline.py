#!/usr/bin/env python3
"""Director overhead of one deploy task, from what the director and its NATS record.

  deploy_timeline.py DATA_DIR TASK_ID NATS_TRACE INSTANCES

Intervals of waiting on the outside world:
  * CPI calls: request/response lines of DATA_DIR/tasks/N/cpi (microsecond timestamps); when
    that log is empty (the deploy path does not log its CPI calls there yet), the in-process
    sim CPI's create_vm calls: VM directory birth time .. its "vm created" log line.
  * agent calls: the director's PUB to agent.<id> until the agent's PUB of the reply, from the
    nats-server trace (see bench/lib/deploy.sh). The director's deliberate sleeps on an agent
    count as waiting too: get_task polling, ping retries while an agent boots, and the watch
    time between `start` and the get_state polls that wait for `running`.
Director overhead = task time (director log "task started" .. "task ended") minus the union of
those intervals: wall time in which the director had no CPI or agent call outstanding.

Also, per instance, the gaps on that instance's own chain of calls (create_vm .. ping, then
apply .. post-start), i.e. director time on each instance's critical path.
Prints `key=value` lines on stdout, a readable breakdown on stderr.
"""
import json
import re
import sys
from collections import defaultdict
from datetime import datetime, timezone

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def ts_iso(s):
    s = s.rstrip("Z")
    return datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=timezone.utc).timestamp()


def ts_nats(d, t):
    return datetime.strptime(f"{d} {t}", "%Y/%m/%d %H:%M:%S.%f").replace(tzinfo=timezone.utc).timestamp()


def task_span(director_err, task):
    start = end = None
    pat = re.compile(rf"\btask={task}\b")
    with open(director_err, errors="replace") as f:
        for line in f:
            line = ANSI.sub("", line)
            if not pat.search(line):
                continue
            if "task started" in line:
                start = ts_iso(line.split()[0])
            elif "task ended" in line:
                end = ts_iso(line.split()[0])
    if start is None or end is None:
        sys.exit(f"task {task}: no 'task started'/'task ended' lines in {director_err}")
    return start, end


CPI_LINE = re.compile(
    r"^\w, \[(\S+) #\d+\]\s+\w+ -- DirectorJobRunner: \[external-cpi\] \[(cpi-\d+)\] (request|response): (.*?)( with command: .*)?$"
)


def cpi_calls(path):
    """[(start, end, method, args, result)]"""
    open_ = defaultdict(list)
    calls = []
    with open(path, errors="replace") as f:
        for line in f:
            m = CPI_LINE.match(line.rstrip("\n"))
            if not m:
                continue
            t = ts_iso(m.group(1))
            try:
                body = json.loads(m.group(4))
            except json.JSONDecodeError:
                body = {}
            if m.group(3) == "request":
                open_[m.group(2)].append((t, body.get("method", "?"), body.get("arguments", [])))
            elif open_[m.group(2)]:
                s, method, args = open_[m.group(2)].pop(0)
                calls.append((s, t, method, args, body.get("result")))
    return calls


def agent_calls(path):
    """{agent_id: [(send, reply_or_None, method)]} for requests the director sent. A request
    is the director's PUB to agent.<id>; its payload's reply_to names the agent's reply."""
    sent = {}  # reply subject -> [send, reply, method, agent]
    last_pub = {}  # cid -> request awaiting its payload line
    by_agent = defaultdict(list)
    with open(path, errors="replace") as f:
        for line in f:
            p = line.split()
            if len(p) < 5 or p[3] not in ("PUB", "M"):
                continue
            t = ts_nats(p[0], p[1])
            cid = p[2]
            if p[3] == "M":
                rec = last_pub.pop(cid, None)
                if rec is not None and len(p) > 5:
                    rec[2] = p[4]
                    sent[p[5]] = rec
                continue
            subject = p[4]
            if subject.startswith("agent."):
                rec = [t, None, "?", subject[len("agent."):]]
                last_pub[cid] = rec
                by_agent[rec[3]].append(rec)
            elif subject.startswith("director.") and subject in sent:
                rec = sent[subject]
                if rec[1] is None:
                    rec[1] = t
    return {a: sorted((r[0], r[1], r[2]) for r in recs) for a, recs in by_agent.items()}


def sim_cpi_calls(data_dir):
    """create_vm of the in-process sim CPI, which the task's CPI log does not record: from the
    birth time of the VM's directory (its first step) to the sim's "vm created" log line."""
    import subprocess

    ends = {}
    pat = re.compile(r"vm created cid=(\S+) agent_id=(\S+)")
    with open(f"{data_dir}/director.err", errors="replace") as f:
        for line in f:
            line = ANSI.sub("", line)
            m = pat.search(line)
            if m:
                ends[m.group(1)] = (ts_iso(line.split()[0]), m.group(2))
    calls = []
    vms = f"{data_dir}/sim-cpi/vms"
    for cid, (end, agent) in ends.items():
        try:
            out = subprocess.run(["stat", "-c", "%.9W", f"{vms}/{cid}"], capture_output=True, text=True, check=True)
            start = float(out.stdout.strip())
        except (subprocess.CalledProcessError, ValueError):
            continue
        if start > 0:
            calls.append((start, end, "create_vm", [agent], [cid]))
    return calls


def agent_waits(calls):
    """Merges one agent's calls into waiting intervals [(start, end, label)]."""
    out = []
    for k, (send, reply, method) in enumerate(calls):
        nxt = calls[k + 1] if k + 1 < len(calls) else None
        end = reply if reply is not None else (nxt[0] if nxt else send + 1.0)
        if nxt is not None:
            sleep_on_agent = (
                nxt[2] == "get_task"
                or (nxt[2] == "ping" and method == "ping")
                or (nxt[2] == "get_state" and method in ("start", "get_state", "get_task"))
            )
            if sleep_on_agent:
                end = max(end, nxt[0])
        if method == "get_task" and out and out[-1][1] >= send - 1e-9:
            s, e, label = out[-1]
            out[-1] = (s, max(e, end), label)
        elif method == "get_state" and out and out[-1][2] in ("start", "get_state") and out[-1][1] >= send - 1e-9:
            s, e, label = out[-1]
            out[-1] = (s, max(e, end), label)
        else:
            out.append((send, end, method))
    return out


def union(intervals, lo, hi):
    """Total length of the union within [lo, hi], and the gaps between its blocks as
    (length, offset from lo, label of what ended before, label of what started after)."""
    items = sorted((max(s, lo), min(e, hi), label) for s, e, label in intervals if e > lo and s < hi)
    total, gaps = 0.0, []
    cur_s = cur_e = None
    cur_label, prev_end, prev_label = None, lo, "task start"
    for s, e, label in items:
        if cur_e is None or s > cur_e:
            if cur_e is not None:
                total += cur_e - cur_s
                prev_end, prev_label = cur_e, cur_label
            gaps.append((s - prev_end, prev_end - lo, prev_label, label))
            cur_s, cur_e, cur_label = s, e, label
        elif e > cur_e:
            cur_e, cur_label = e, label
    if cur_e is None:
        return 0.0, [(hi - lo, 0.0, "task start", "task end")]
    total += cur_e - cur_s
    gaps.append((hi - cur_e, cur_e - lo, cur_label, "task end"))
    return total, gaps


def pct(values, q):
    v = sorted(values)
    if not v:
        return 0.0
    return v[min(len(v) - 1, max(0, int(round(q * len(v) + 0.5)) - 1))]


def main():
    data_dir, task, trace, instances = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    lo, hi = task_span(f"{data_dir}/director.err", task)
    cpi = cpi_calls(f"{data_dir}/tasks/{task}/cpi")
    cpi_source = "task CPI log"
    if not cpi:
        cpi, cpi_source = sim_cpi_calls(data_dir), "sim VM dirs"
    agents = agent_calls(trace)
    waits = {a: agent_waits(c) for a, c in agents.items()}

    intervals = [(s, e, f"cpi {m}") for s, e, m, _, _ in cpi]
    for a, w in waits.items():
        intervals += [(s, e, f"agent {m}") for s, e, m in w if e > lo and s < hi]
    ext, gaps = union(intervals, lo, hi)
    task_s = hi - lo
    overhead = task_s - ext

    # per-instance chains
    cid_of = {}
    for s, e, m, args, result in cpi:
        if m == "create_vm" and args:
            cid = result[0] if isinstance(result, list) and result else result
            if isinstance(cid, str):
                cid_of[str(args[0])] = (cid, s, e)
    per_instance = []
    for a, w in waits.items():
        # only agents this task applied to (the same director may have deployed before)
        if not any(m == "apply" and lo <= s <= hi for s, _, m in w):
            continue
        chain = [(s, e, f"agent {m}") for s, e, m in w if lo <= s <= hi]
        if a in cid_of:
            cid, s, e = cid_of[a]
            chain.append((s, e, "cpi create_vm"))
            chain += [(cs, ce, f"cpi {m}") for cs, ce, m, args, _ in cpi if m == "set_vm_metadata" and args and args[0] == cid]
        chain.sort()
        run_scripts = 0
        director = 0.0
        cur_e = None
        for s, e, label in chain:
            if label == "agent run_script":
                run_scripts += 1
            waiting_for_batch = label == "agent apply" or (label == "agent run_script" and run_scripts == 3)
            if cur_e is not None and s > cur_e and not waiting_for_batch:
                director += s - cur_e
            cur_e = e if cur_e is None else max(cur_e, e)
        per_instance.append(director)

    n_agent_calls = sum(len(c) for c in agents.values())
    print(f"task_s={task_s:.3f}")
    print(f"external_s={ext:.3f}")
    print(f"overhead_s={overhead:.3f}")
    print(f"overhead_per_instance_ms={overhead / instances * 1000:.1f}")
    print(f"cpi_calls={len(cpi)}")
    print(f"cpi_source={cpi_source}")
    print(f"cpi_sum_s={sum(e - s for s, e, *_ in cpi):.3f}")
    print(f"agent_calls={n_agent_calls}")
    print(f"chain_instances={len(per_instance)}")
    print(f"chain_median_ms={pct(per_instance, 0.5) * 1000:.1f}")
    print(f"chain_p90_ms={pct(per_instance, 0.9) * 1000:.1f}")
    print(f"chain_max_ms={max(per_instance, default=0) * 1000:.1f}")
    top = sorted(gaps, reverse=True)[:8]
    print("top_gaps=" + "; ".join(f"{g * 1000:.0f} ms at +{at:.2f} s ({before} → {after})" for g, at, before, after in top))
    print(
        f"task {task}: {task_s:.3f} s, outside calls {ext:.3f} s, director only {overhead:.3f} s "
        f"over {len(gaps)} gaps; {len(cpi)} CPI calls, {n_agent_calls} agent requests",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
