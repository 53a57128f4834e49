#!/usr/bin/env python3
"""event_stamps.py EVENT_LOG OUT: appends every new line of a task's event log to OUT,
prefixed with the Unix time (µs) it appeared; polls every 10 ms until killed. The event log
itself has whole-second times, too coarse for stages of a few seconds."""
import sys
import time

src, dst = sys.argv[1], sys.argv[2]
pos = 0
with open(dst, "w") as out:
    while True:
        try:
            with open(src) as f:
                f.seek(pos)
                chunk = f.read()
        except FileNotFoundError:
            chunk = ""
        cut = chunk.rfind("\n") + 1
        if cut:
            now = time.time()
            for line in chunk[:cut].splitlines():
                out.write(f"{now:.6f} {line}\n")
            out.flush()
            pos += cut
        time.sleep(0.01)
