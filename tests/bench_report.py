#!/usr/bin/env python3
"""Prints the side-by-side benchmark table from one run of tests/bench.sh.

Inputs (all produced by that run):
  - criterion's results under <target>/criterion (median time per iteration),
  - callgrind dumps in <ir dir>/full (all instructions) and <ir dir>/nozero
    (the same run with memset, i.e. the 4 KiB table zeroing, not counted).

Case names are "op/size/subject/count"; per-page figures divide by count.
"""

import glob
import json
import os
import re
import sys

SUBJECTS = ["ours", "x86rec", "x86off", "hand"]
PER_PAGE_OPS = ["map", "unmap", "update", "translate_seq", "translate_rand", "reclaim"]
RANGE_OPS = {"map_range": "map", "unmap_range": "unmap", "update_range": "update"}


def criterion_times(root):
    """full case name -> ns per iteration: the fastest criterion sample.

    Each sample is the mean over many iterations. On a shared machine other
    processes only ever add time, so the fastest sample is the figure least
    disturbed by them; the median is kept in the log for comparison.
    """
    out = {}
    for bench in glob.glob(os.path.join(root, "**", "new", "benchmark.json"), recursive=True):
        with open(bench) as f:
            meta = json.load(f)
        with open(os.path.join(os.path.dirname(bench), "sample.json")) as f:
            sample = json.load(f)
        name = meta["group_id"]
        if meta.get("function_id") not in (None, "t"):
            name += "/" + meta["function_id"]
        if meta.get("value_str"):
            name += "/" + meta["value_str"]
        out[name] = min(t / n for t, n in zip(sample["times"], sample["iters"]))
    return out


def callgrind_counts(directory):
    """case name -> instructions, less the cost of the measuring harness."""
    out = {}
    for path in glob.glob(os.path.join(directory, "*.out.*")):
        name = total = None
        with open(path) as f:
            for line in f:
                m = re.match(r"desc: Trigger: Client Request: (.*)", line)
                if m:
                    name = m.group(1).strip()
                m = re.match(r"summary: (\d+)", line)
                if m:
                    total = int(m.group(1))
                if name and total is not None:
                    break
        if name:
            out[name] = total
    base = out.pop("baseline", 0)
    return {k: v - base for k, v in out.items()}


def fmt(x, digits=2):
    if x is None:
        return "-"
    if x >= 100:
        return f"{x:.0f}"
    if x >= 10:
        return f"{x:.1f}"
    return f"{x:.{digits}f}"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def main():
    target, ir_dir = sys.argv[1], sys.argv[2]
    ns = criterion_times(os.path.join(target, "criterion"))
    ir = callgrind_counts(os.path.join(ir_dir, "full"))
    ir0 = callgrind_counts(os.path.join(ir_dir, "nozero"))
    pairs = {}
    pairs_path = os.path.join(ir_dir, "pairs.txt")
    if os.path.exists(pairs_path):
        with open(pairs_path) as f:
            for line in f:
                parts = line.split()
                if len(parts) == 3 and parts[0] == "pair":
                    pairs[parts[1]] = float(parts[2])

    def per(table, op, size, who, n):
        v = table.get(f"{op}/{size}/{who}/{n}")
        return None if v is None else v / int(n)

    def cell_ir(op, size, who, n):
        a, b = per(ir, op, size, who, n), per(ir0, op, size, who, n)
        if a is None:
            return "-"
        if b is None or abs(a - b) < 0.05:
            return fmt(a, 1)
        return f"{fmt(a, 1)} ({fmt(b, 1)})"

    rows = []
    counts = sorted({int(k.split("/")[3]) for k in list(ns) + list(ir) if k.count("/") == 3
                     and k.split("/")[3].isdigit() and k.split("/")[1] in ("4k", "2m")})
    header = ["op", "size", "pages",
              "ours ns", "x86rec ns", "x86off ns", "hand ns", "ours/x86rec", "ours/hand",
              "ours Ir", "x86rec Ir", "x86off Ir", "hand Ir", "Ir ours/x86rec", "Ir ours/hand"]
    ops = [(op, op, op) for op in PER_PAGE_OPS] + [("map_cold", "map_cold", "map_cold")] + \
          [(op, op, base) for op, base in RANGE_OPS.items()]
    for size in ("4k", "2m"):
        for label, ours_op, peer_op in ops:
            for n in counts:
                def pick(who, table):
                    # In range rows ours and hand run the range operation; the
                    # x86_64 peers run their per-page loop.
                    op = ours_op if who in ("ours", "hand") else peer_op
                    return per(table, op, size, who, n)
                t = {who: pick(who, ns) for who in SUBJECTS}
                i = {who: pick(who, ir) for who in SUBJECTS}
                if all(v is None for v in list(t.values()) + list(i.values())):
                    continue
                ir_cells = [cell_ir(ours_op if w in ("ours", "hand") else peer_op, size, w, n)
                            for w in SUBJECTS]
                rows.append([label, size, str(n)] + [fmt(t[w]) for w in SUBJECTS] +
                            [fmt(ratio(t["ours"], t["x86rec"])), fmt(ratio(t["ours"], t["hand"]))] +
                            ir_cells +
                            [fmt(ratio(i["ours"], i["x86rec"])), fmt(ratio(i["ours"], i["hand"]))])

    widths = [max(len(r[k]) for r in rows + [header]) for k in range(len(header))]
    line = lambda r: "| " + " | ".join(c.rjust(w) if k >= 2 else c.ljust(w)
                                       for k, (c, w) in enumerate(zip(r, widths))) + " |"
    print("Per page: ns = fastest criterion sample / pages; Ir = instructions (callgrind) / pages,")
    print("(in parentheses: without the memset that zeroes new 4 KiB tables).")
    print("Range rows: ours and hand run the range operation, x86rec/x86off a loop of map_to/unmap/update_flags.")
    print(line(header))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        print(line(r))

    # Adapters: each case against the hand-written impl of the same shape.
    reference = {
        "hand": "hand", "hand_ref": "hand", "from_fn": "hand_ref",
        "frame_allocator_macro": "hand_ref", "from_state": "hand",
        "tagged_hand_wrapper": "tagged_hand_wrapper", "tagged_view": "tagged_hand_wrapper",
        "derive_struct": "hand", "derive_tagged_default": "tagged_hand_wrapper",
        "hand_enum_up": "hand", "hand_enum_down": "hand",
        "derive_enum_up": "hand_enum_up", "derive_enum_down": "hand_enum_down", "dyn": "hand",
    }
    adapters = sorted({k.split("/")[1]: k for k in set(ns) | set(ir) if k.startswith("alloc/")}.items(),
                      key=lambda kv: list(reference).index(kv[0]) if kv[0] in reference else 99)
    if adapters:
        print()
        print("Adapters: per allocation of a bump allocator, each against the hand-written impl of its shape.")
        print(f"| {'how':<24} | {'ns':>6} | {'Ir':>6} | {'vs':<20} | {'extra Ir':>8} |")
        print(f"|{'-' * 26}|{'-' * 8}|{'-' * 8}|{'-' * 22}|{'-' * 10}|")
        adapter_extra = {}
        for how, key in adapters:
            n = int(key.rsplit("/", 1)[-1])
            t, c = ns.get(key), ir.get(key)
            ref = reference.get(how)
            rc = ir.get(key.replace(f"/{how}/", f"/{ref}/")) if ref else None
            extra = None if c is None or rc is None else (c - rc) / n
            adapter_extra[how] = extra
            print(f"| {how:<24} | {fmt(None if t is None else t / n):>6} | "
                  f"{fmt(None if c is None else c / n):>6} | {ref or '-':<20} | "
                  f"{'-' if extra is None else f'{extra:+.2f}':>8} |")

    # Targets, as ratios from this run (4 KiB pages). Times come from the
    # interleaved runs (pairs.txt) when present, else from criterion.
    def g(table, op, who, n, size="4k"):
        return per(table, op, size, who, n)

    def gt(op, who, n):
        key = f"{op}/4k/{who}/{n}"
        if key in pairs:
            return pairs[key]
        if who.startswith("x86") and op.endswith("_range"):
            op = op[:-len("_range")]
        return g(ns, op, who, n)

    mid, big = 65536, 262144

    def check(label, op, other, n, limit, ir_other_op=None):
        value = ratio(gt(op, "ours", n), gt(op, other, n))
        ir_ratio = ratio(g(ir0, op, "ours", n), g(ir0, ir_other_op or op, other, n))
        return (label, value, limit, ir_ratio)

    checks = [
        check("map ≤ 0.5× x86rec map_to (64 Ki)", "map", "x86rec", mid, 0.5),
        check("map ≤ 1.4× hand walk (64 Ki)", "map", "hand", mid, 1.4),
        check("unmap ≤ 0.5× x86rec (64 Ki)", "unmap", "x86rec", mid, 0.5),
        check("translate seq ≤ 0.6× x86rec (64 Ki)", "translate_seq", "x86rec", mid, 0.6),
        check("translate rand ≤ 0.6× x86rec (64 Ki)", "translate_rand", "x86rec", mid, 0.6),
        ("range map ≤ 0.35 ns/page (256 Ki)", gt("map_range", "ours", big), 0.35, None),
        check("range map ≤ 0.1× x86rec loop (256 Ki)", "map_range", "x86rec", big, 0.1, "map"),
        check("range map ≤ 1.6× hand fill (256 Ki)", "map_range", "hand", big, 1.6),
        ("range unmap ≤ 0.5 ns/page (256 Ki)", gt("unmap_range", "ours", big), 0.5, None),
    ]
    if pairs:
        print()
        print("Interleaved runs (fastest of 200 alternating runs), ns/page:")
        for key in sorted(pairs):
            print(f"  {key:<36} {pairs[key]:.3f}")
    print()
    print("Targets (4 KiB pages). Time: the interleaved runs above (criterion if absent);")
    print("Ir ratio (without table zeroing) for reference: exact and stable across runs.")
    for name, value, limit, ir_ratio in checks:
        verdict = "n/a " if value is None else ("met " if value <= limit else "MISS")
        extra = "" if ir_ratio is None else f"   (Ir ratio {fmt(ir_ratio)})"
        print(f"  {verdict} {name:<52} {fmt(value):>6} (limit {limit}){extra}")
    if adapters:
        # Hand-written references and `dyn` are shown above, not checked.
        worst = [(h, e) for h, e in adapter_extra.items() if e is not None
                 and h != "dyn" and "hand" not in h]
        for h, e in worst:
            limit = 2 if "enum" in h else 0
            verdict = "met " if e <= limit + 0.05 else "MISS"
            print(f"  {verdict} adapter {h:<44} {e:+.2f} extra Ir/allocation (limit {limit})")


if __name__ == "__main__":
    main()
