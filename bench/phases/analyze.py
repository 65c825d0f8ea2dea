"""Phases and per-thread idle time of traces written by bench/phases/traced_run.py."""

import collections
import json
import sys

for path in sys.argv[1:]:
    d = json.load(open(path))
    marks = d["marks"]
    t = {}
    for ts, name, kw in marks:
        t.setdefault(name, []).append((ts, kw))
    T0 = t["run_study:start"][0][0]
    ps = t["register_plugin:end"][-1][
        0
    ]  # the run's plugin (registered last) ~ thread_seconds start

    def r(x):
        return round(x - ps, 3)

    print("==", path)
    print(
        " run_study start",
        r(T0),
        " connect",
        r(t["connect:start"][0][0]),
        "->",
        r(t["connect:end"][0][0]),
        " check_importable end",
        r(t["check_importable:end"][0][0]),
        " register_plugin",
        r(t["register_plugin:start"][0][0]),
        "->",
        r(ps),
    )
    subs = t["submit:start"]
    print(
        " first submit",
        r(subs[0][0]),
        "probe groups",
        sum(1 for _, k in subs if k["probing"]),
        " first estimate",
        [(r(a), k) for a, k in t.get("first_estimate", [])],
    )
    packed = [a for a, k in subs if not k["probing"]]
    print(" first packed submit", r(packed[0]) if packed else None, " last submit", r(subs[-1][0]))
    dones = t["group_done:start"]
    print(" first group done", r(dones[0][0]), " last group done", r(dones[-1][0]))
    for a, k in t.get("store_write:start", []):
        print("  store_write start", r(a), k)
    for a, k in t.get("store_write:end", []):
        print("  store_write end", r(a))
    print(" finish", r(t["finish:start"][0][0]), "->", r(t["finish:end"][0][0]))
    polls = t["poll_stats:start"]
    print(" last poll_stats start", r(polls[-1][0]), "end", r(t["poll_stats:end"][-1][0]))
    print(
        " client close",
        r(t["client_close:start"][-1][0]),
        "->",
        r(t["client_close:end"][-1][0]),
        " run_study end",
        r(t["run_study:end"][0][0]),
    )
    end = t["poll_stats:end"][-1][0]
    # per-thread busy
    threads = collections.defaultdict(list)
    for s in d["stream"]:
        for ss in s["startstops"]:
            if ss["action"] == "compute":
                threads[(s["worker"], s["thread"])].append((ss["start"], ss["stop"], s["key"]))
    tot_busy = 0
    head = tail = gaps = 0
    for th, iv in sorted(threads.items()):
        iv.sort()
        busy = sum(b - a for a, b, _ in iv)
        tot_busy += busy
        head += iv[0][0] - ps
        tail += end - iv[-1][1]
        g = [iv[i + 1][0] - iv[i][1] for i in range(len(iv) - 1)]
        gaps += sum(g)
        gs = sorted(g)
        print(
            f"  thread {th[0][-5:]}/{th[1]}: n={len(iv)} busy={busy:.3f} first start={iv[0][0] - ps:.3f} last stop={iv[-1][1] - ps:.3f} gaps sum={sum(g):.3f} median gap={gs[len(gs) // 2] if gs else 0:.4f} max gap={max(g) if g else 0:.3f}"
        )
    n = len(threads)
    span = end - ps
    print(
        f" interval {span:.3f}s x {n} threads = {n * span:.3f} thread-s; busy {tot_busy:.3f} ({tot_busy / (n * span):.3f}); head idle {head:.3f}, gaps {gaps:.3f}, tail idle {tail:.3f}"
    )
    # chunked task durations
    fused = [b - a for iv in threads.values() for a, b, k in iv if "fused" in k]
    single = [
        b - a
        for iv in threads.values()
        for a, b, k in iv
        if "fused" not in k and k.startswith("simulate")
    ]
    if fused:
        fused.sort()
        print(
            f" fused tasks {len(fused)} median {fused[len(fused) // 2]:.4f}s; single-replicate {len(single)} median {sorted(single)[len(single) // 2] if single else 0:.4f}"
        )
