#!/usr/bin/env python3
"""Where two gateways' user-space instructions per transaction differ, function by function.

Reads two of costmeter's callgrind `*_top_self.txt` files (self cost per transaction, one
function per line: Ir/tx, run total/tx, name) and prints the functions whose cost differs most,
largest first, with the total difference. Typical use: the bare gateway against the one with
every feature on, same workload (bench/RESULTS.md, issue 17):

  bench/cg_self_diff.py OUT/callgrind/bare_select-only_prepared_top_self.txt \\
                        OUT/callgrind/full_select-only_prepared_top_self.txt [N]
"""
import re
import sys


def load(path):
    costs = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.startswith("#"):
                continue
            parts = line.rstrip("\n").split("\t")
            if len(parts) < 3:
                continue
            # Argument lists differ between clones of one function: the name up to "(".
            name = re.sub(r"\(.*", "", parts[2].strip())[:100]
            costs[name] = costs.get(name, 0.0) + float(parts[0])
    return costs


def main():
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    before, after = load(sys.argv[1]), load(sys.argv[2])
    n = int(sys.argv[3]) if len(sys.argv) == 4 else 40
    diff = sorted(((after.get(k, 0.0) - before.get(k, 0.0), k) for k in before.keys() | after.keys()),
                  reverse=True)
    print(f"total difference per transaction: {sum(d for d, _ in diff):.0f}")
    for d, k in diff[:n]:
        print(f"{d:9.0f}  {k}")


if __name__ == "__main__":
    main()
