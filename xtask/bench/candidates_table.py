#!/usr/bin/env python3
"""Side by side: the paw programs of two `cargo xtask eval` runs over the same tests (say, the
compiler before and after a change of default), with the direct baselines of either run, and for
the second run what its compile shipped and why (the compile report's held-out scores of each
candidate).

usage: candidates_table.py BEFORE.json AFTER.json
"""
import json
import sys


def rates(run):
    out = {}
    for r in run["results"]["runs"]:
        out[(r["task"], r["system"])] = 100.0 * r["exact"] / max(r["cases"], 1)
    return out


def reports(run):
    return {c["task"]: c for c in run["results"]["compiles"]}


def fmt(x):
    return "–" if x is None else f"{x:.1f}"


def main():
    before, after = (json.load(open(p)) for p in sys.argv[1:3])
    rb, ra = rates(before), rates(after)
    compiles_a, compiles_b = reports(before), reports(after)
    tasks = [t for t in after["tasks"] if (t, "paw") in ra or (t, "paw") in rb]
    print("| task | 0.5B + spec | 1.5B + spec | paw before | paw after | shipped after | "
          "held-out after: adapter / pseudo-program / spec (of n) | compile s before / after |")
    print("|---|---:|---:|---:|---:|---|---|---:|")
    cols = {k: [] for k in ("i", "t", "b", "a")}
    for t in tasks:
        i = rb.get((t, "interp-direct"), ra.get((t, "interp-direct")))
        te = rb.get((t, "teacher-direct"), ra.get((t, "teacher-direct")))
        b, a = rb.get((t, "paw")), ra.get((t, "paw"))
        for k, v in zip("itba", (i, te, b, a)):
            if v is not None:
                cols[k].append(v)
        c = compiles_b.get(t, {})
        r = c.get("report", {})
        adapter = r.get("adapter", "")
        shipped = r.get("prompt", "?") + (" + adapter" if adapter == "kept" else "")
        if adapter.startswith("not trained"):
            shipped += " (too little data)"
        n = r.get("data_validation", "?")
        held = " / ".join(r.get(k, "–") for k in (
            "val_exact_match_adapter", "val_exact_match_pseudo_program_only",
            "val_exact_match_spec_prompt_only"))
        secs = " / ".join(
            "–" if x.get("seconds") is None else f"{x['seconds']:.0f}"
            for x in (compiles_a.get(t, {}), c))
        print(f"| {t} | {fmt(i)} | {fmt(te)} | {fmt(b)} | **{fmt(a)}** | {shipped} | "
              f"{held} % ({n}) | {secs} |")
    mean = lambda v: sum(v) / len(v) if v else None
    print(f"| **mean** | {fmt(mean(cols['i']))} | {fmt(mean(cols['t']))} | "
          f"{fmt(mean(cols['b']))} | **{fmt(mean(cols['a']))}** | | | |")


if __name__ == "__main__":
    main()
