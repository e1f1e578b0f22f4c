#!/usr/bin/env python3
"""Per-task effect of output contracts in a `cargo xtask eval --systems paw,paw-no-contract` run.

For each task with both systems' answers in CASES_DIR: the program's contract (read from the
`.paw` file in the store: section kind 5, spec/paw-format.md section 7a), exact match with and
without it, and how many answers fall outside the contract in each case. Label sets are checked
by membership, patterns with Python's `re.fullmatch`, JSON schemas with the `jsonschema`
package (pip install jsonschema) after dropping llguidance's `x-guidance` options.

usage: contract_table.py RUN.json CASES_DIR COMPILES_DIR [PAW_HOME]
"""
import json
import os
import re
import struct
import sys


def contract_of(path):
    data = open(path, "rb").read()
    count = struct.unpack_from("<I", data, 16)[0]
    for i in range(count):
        e = 32 + 64 * i
        kind = struct.unpack_from("<I", data, e)[0]
        if kind != 5:
            continue
        offset, stored = struct.unpack_from("<QQ", data, e + 8)
        body = data[offset:offset + stored]
        tag = struct.unpack_from("<I", body, 0)[0]
        if tag == 0:
            n = struct.unpack_from("<Q", body, 4)[0]
            pos, labels = 12, []
            for _ in range(n):
                ln = struct.unpack_from("<Q", body, pos)[0]
                labels.append(body[pos + 8:pos + 8 + ln].decode())
                pos += 8 + ln
            return ("labels", labels)
        if tag in (1, 2, 3):
            ln = struct.unpack_from("<Q", body, 4)[0]
            text = body[12:12 + ln].decode()
            return (["json-schema", "pattern", "grammar"][tag - 1], text)
        return ("free", struct.unpack_from("<I", body, 4)[0])
    return None


def satisfies(contract, text):
    kind, value = contract
    if kind == "labels":
        return text in value
    if kind == "pattern":
        return re.fullmatch(value, text) is not None
    if kind == "json-schema":
        import jsonschema
        schema = json.loads(value)
        schema.pop("x-guidance", None)
        try:
            jsonschema.validate(json.loads(text), schema)
            return True
        except Exception:
            return False
    if kind == "free":
        return len(text) <= value
    return None


def main():
    run_json, cases_dir, compiles_dir = sys.argv[1], sys.argv[2], sys.argv[3]
    home = sys.argv[4] if len(sys.argv) > 4 else os.path.expanduser("~/.cache/paw")
    runs_of = {(r["task"], r["system"]): r for r in json.load(open(run_json))["results"]["runs"]}
    programs = {}
    for f in os.listdir(compiles_dir):
        side = json.load(open(os.path.join(compiles_dir, f)))
        programs[side["task"]] = side
    print("| task | contract | paw exact | no contract exact | outside contract (with / without) | tokens per answer (with / without) | eval wall s (with / without) | data dropped by contract |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for task in sorted(programs):
        paths = [os.path.join(cases_dir, f"{task}.{s}.json") for s in ("paw", "paw-no-contract")]
        if not all(os.path.exists(p) for p in paths) or (task, "paw") not in runs_of \
                or (task, "paw-no-contract") not in runs_of:
            continue
        tokens = [runs_of[(task, s)]["generated_tokens"] / runs_of[(task, s)]["cases"]
                  for s in ("paw", "paw-no-contract")]
        seconds = [runs_of[(task, s)]["wall_seconds"] for s in ("paw", "paw-no-contract")]
        side = programs[task]
        pid = side["id"].removeprefix("b3:")
        contract = contract_of(os.path.join(home, "programs", pid + ".paw"))
        runs = [json.load(open(p)) for p in paths]
        cells = []
        for r in runs:
            cases = r["cases"]
            exact = 100.0 * sum(c["exact"] for c in cases) / len(cases)
            outside = None if contract is None else sum(
                1 for c in cases if c["actual"] is None or not satisfies(contract, c["actual"]))
            cells.append((exact, outside, len(cases)))
        report = side["report"]
        summary = report.get("contract", "none")
        if len(summary) > 60:
            summary = summary[:57] + "..."
        summary = summary.replace("|", "\\|")
        outside = "–" if contract is None else f"{cells[0][1]} / {cells[1][1]} of {cells[0][2]}"
        print(f"| {task} | `{summary}` | {cells[0][0]:.0f} | {cells[1][0]:.0f} | {outside} | {tokens[0]:.1f} / {tokens[1]:.1f} | {seconds[0]:.1f} / {seconds[1]:.1f} | {report.get('data_contract_rejected', '?')} |")


main()
