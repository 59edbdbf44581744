#!/usr/bin/env python3
"""Sum ncu's gpu__time_duration per kernel name (CSV from `ncu --csv --print-units base`)."""
import csv, sys, collections, re
rows = list(csv.reader(open(sys.argv[1], errors="replace")))
hdr = next((i for i, r in enumerate(rows) if "Kernel Name" in r), None)
if hdr is None:
    sys.exit("no ncu table in " + sys.argv[1])
h = rows[hdr]
ki, mi, vi, gi = h.index("Kernel Name"), h.index("Metric Name"), h.index("Metric Value"), h.index("Grid Size")
tot, cnt = collections.Counter(), collections.Counter()
order = []
for r in rows[hdr + 1:]:
    if len(r) <= vi or r[mi] != "gpu__time_duration.sum":
        continue
    name = re.sub(r"\(.*", "", r[ki])[:70]
    ns = float(r[vi].replace(",", ""))
    tot[name] += ns
    cnt[name] += 1
    order.append((name, r[gi], ns))
total = sum(tot.values())
print(f"ncu: {len(order)} kernels, {total/1e6:.3f} ms of kernel time in one forward pass")
for k, v in tot.most_common(40):
    print(f"  {v/1e6:8.3f} ms {cnt[k]:4d}x  {k}")
