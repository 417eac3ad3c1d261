#!/usr/bin/env python3
"""Per-kernel device time of one decode step, from an ncu CSV (`ncu --csv --metrics
gpu__time_duration.sum --log-file F wavefront bench ...`).

The kernels are cut into forwards at every `embedding_*` launch (and at a `dequant_*` one
right after a sample: a quantized embedding table's lookup); a forward that holds a
`sample_step` is a step (a decode step, or a one-token prefill and its first sample: the same
kernels). For each kernel name the table gives its launches per step and the median over the
steps of its summed time, then the median step total: the device time of a step without the
gaps between kernels. With --prefill the steps are the prefill forwards instead: those whose
kernel time is at least half the longest forward's (a profiled `bench --pp N --tg 1` run).
With --batch the steps are batched decode passes (a profiled `bench --batch B` run): a pass
starts at the first `embedding_*` launch after a `sample_*` one (a pass embeds each of its rows,
then runs the layers over all of them, then samples each row), and the passes are grouped by
their rows (their `sample_pick` launches, or `sample_step` ones), one table per group.
Usage: ncu-step-profile.py [--prefill | --batch] CSV [CSV...] (one table per file).
"""
import csv
import statistics
import sys

UNITS = {"ns": 1e-3, "us": 1.0, "ms": 1e3, "s": 1e6, "nsecond": 1e-3, "usecond": 1.0, "msecond": 1e3, "second": 1e6}


def kernels(path):
    """(name, µs) per profiled kernel, in launch order."""
    with open(path, newline="") as f:
        lines = [l for l in f if l.startswith('"')]  # ncu prints its own lines before the CSV
    out = []
    for row in csv.DictReader(lines):
        if row.get("Metric Name") != "gpu__time_duration.sum":
            continue
        name = row["Kernel Name"].split("(")[0].strip()
        value = float(row["Metric Value"].replace(",", ""))
        out.append((name, value * UNITS[row["Metric Unit"]]))
    return out


def steps(ks, prefill=False, batch=False):
    cur, all_ = [], []
    for name, us in ks:
        after_sample = bool(cur) and cur[-1][0].startswith("sample_")
        # a quantized table's embedding is a dequant_* launch (ids): a forward's first only
        # right after a sample (the prefill's per-matrix dequantizations are inside forwards)
        starts = name.startswith("embedding_") or (name.startswith("dequant_") and after_sample)
        if starts and cur and (after_sample or not batch):
            all_.append(cur)
            cur = []
        cur.append((name, us))
    if cur:
        all_.append(cur)
    if prefill:
        longest = max((sum(us for _, us in s) for s in all_), default=0.0)
        return [s for s in all_ if sum(us for _, us in s) >= 0.5 * longest]
    return [s for s in all_ if any(n in ("sample_step", "sample_pick") for n, _ in s)]


def rows_of(step):
    """The sequences a decode pass sampled."""
    return sum(1 for n, _ in step if n in ("sample_step", "sample_pick"))


def table(path, prefill=False, batch=False):
    ks = kernels(path)
    if batch:
        groups = {}
        for st in steps(ks, batch=True):
            groups.setdefault(rows_of(st), []).append(st)
        return "\n".join(
            table_of(f"{path} [{r} row{'s' if r != 1 else ''} a pass]", groups[r], "decode pass")
            for r in sorted(groups)
        )
    ss = steps(ks, prefill)
    return table_of(path, ss, "prefill forward" if prefill else "decode step")


def table_of(path, ss, what):
    if not ss:
        return f"{path}: no {what} found\n"
    names = sorted({n for s in ss for n, _ in s})
    rows = []
    for n in names:
        per = [sum(us for m, us in s if m == n) for s in ss]
        cnt = statistics.median([sum(1 for m, _ in s if m == n) for s in ss])
        rows.append((n, cnt, statistics.median(per)))
    total = statistics.median([sum(us for _, us in s) for s in ss])
    launches = statistics.median([len(s) for s in ss])
    out = [f"{path}: {len(ss)} × {what}, median {launches:.0f} launches and {total:.1f} µs of kernel time per step\n",
           "| kernel | launches/step | µs/step | share |", "|---|---:|---:|---:|"]
    for n, cnt, us in sorted(rows, key=lambda r: -r[2]):
        out.append(f"| {n} | {cnt:g} | {us:.1f} | {100 * us / total:.1f}% |")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    args = sys.argv[1:]
    prefill = "--prefill" in args
    batch = "--batch" in args
    for p in (a for a in args if a not in ("--prefill", "--batch")):
        print(table(p, prefill, batch))
