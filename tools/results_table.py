#!/usr/bin/env python3
"""Markdown table of the report.json files under the given folders (default results/baselines/*):
editor, protocol, backend, edits, ES, GS, LS, CF success, wall and device ms per edit, peak device memory,
and, for each (editor, protocol) run on both backends, the largest metric difference between them."""
import json, sys, glob, os

# --family: a model-family column (runs of one editor on two models side by side), rows grouped by it.
args = sys.argv[1:]
by_family = "--family" in args
args = [a for a in args if a != "--family"]
dirs = args or sorted(glob.glob("results/baselines/*"))
rows = []
for d in dirs:
    p = os.path.join(d, "report.json")
    if os.path.exists(p):
        rows.append(json.load(open(p)))

def f(v, fmt="{:.3f}"):
    return "–" if v is None else fmt.format(v)

fam_head, fam_rule = ("model family | ", "---|") if by_family else ("", "")
print(f"| editor | protocol | {fam_head}backend | edits | ES | GS | LS | CF success | ms/edit wall | ms/edit device | peak device MiB: editing / whole run | trainable params |")
print(f"|---|---|{fam_rule}---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for r in sorted(rows, key=lambda r: (r["editor"], r["protocol"], r.get("family", "") if by_family else "", r["backend"])):
    m, t = r["metrics"], r["timings"]
    dev = t.get("device_seconds_per_edit")
    peak = t.get("peak_device_bytes")
    epeak = t.get("peak_edit_device_bytes")
    fam = f"{r.get('family', '–')} | " if by_family else ""
    print(f"| {r['editor']} | {r['protocol']} | {fam}{r['backend']} | {r['edits']} | {f(m['ES'])} | {f(m['GS'])} | {f(m['LS'])} | {f(m['CF_success'])} | "
          f"{t['wall_seconds_per_edit']*1000:.0f} | {f(None if dev is None else dev*1000, '{:.0f}')} | {f(None if epeak is None else epeak/2**20, '{:.1f}')} / {f(None if peak is None else peak/2**20, '{:.0f}')} | {r.get('trainable_parameters', '–')} |")

by = {}
for r in rows:
    by.setdefault((r["editor"], r["protocol"], r["edits"], r.get("family", "")), {})[r["backend"]] = r
print()
for (e, p, n, fam), b in sorted(by.items()):
    if "torch" in b and "vulkan" in b:
        diffs = {k: abs((b["torch"]["metrics"][k] or 0) - (b["vulkan"]["metrics"][k] or 0)) for k in ("ES", "GS", "LS", "CF_success")}
        k = max(diffs, key=diffs.get)
        print(f"- {e} {p} {n}{' on ' + fam if by_family else ''}: largest torch/vulkan metric difference {diffs[k]:.4f} ({k})")
