"""Idle gaps between two tasks of a thread: next task already submitted (a scheduler round
trip) or not yet (waiting for the runner)."""

import collections
import json
import re
import sys

d = json.load(open(sys.argv[1]))
m = d["marks"]
ps = [ts for ts, n, k in m if n == "register_plugin:end"][-1]
sub = {}
for ts, n, kw in m:
    if n == "submit:start":
        sub.setdefault(kw["gid"], ts - ps)
threads = collections.defaultdict(list)
for s in d["stream"]:
    g = re.search(r"-g(\d+)-", s["key"])
    for ss in s["startstops"]:
        if ss["action"] == "compute":
            threads[s["worker"][-5:]].append(
                (ss["start"] - ps, ss["stop"] - ps, s["key"][-26:], int(g.group(1)) if g else -1)
            )
rt, waitsub = [], []
for th, iv in threads.items():
    iv.sort()
    for a, b in zip(iv, iv[1:]):
        gap = b[0] - a[1]
        s = sub.get(b[3], 0)
        (rt if s < a[1] else waitsub).append(
            (round(gap, 4), a[2], b[2], round(a[1], 3), round(s, 3))
        )
rt.sort()
print(
    "gaps with the next task already submitted:",
    len(rt),
    "sum",
    round(sum(g for g, *_ in rt), 3),
    "median",
    rt[len(rt) // 2][0] if rt else None,
)
print(" largest:", rt[-5:])
print(
    "gaps waiting for the runner's submission:",
    len(waitsub),
    "sum",
    round(sum(g for g, *_ in waitsub), 3),
)
print(" ", waitsub[:8])
