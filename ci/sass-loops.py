#!/usr/bin/env python3
"""The hot loops of kernels in nvdisasm output, counted: for each kernel named, its instruction
count, then each loop (a backward branch) whose body holds the KEY instruction (default IDP,
the integer dot product of the 8-bit GEMVs; FFMA for the f32 forms), innermost first: its
instructions, KEY instructions, moves, global and shared loads, and the opcode mix with
--mix. What a step of a GEMV's loop costs in issue slots, beside the bytes it moves, without a
GPU (ci/sass-loops.sh makes the SASS).
Usage: sass-loops.py SASS_FILE KERNEL... [--key OPCODE] [--mix]
"""
import argparse
import collections
import re
import sys


def kernel_instructions(lines, kernel):
    """(instructions, {label: index}) of `kernel`'s .text section, or None if absent."""
    start = None
    for i, line in enumerate(lines):
        if re.match(r"\s*\.text\.%s:" % re.escape(kernel), line):
            start = i
            break
    if start is None:
        return None
    ins, labels = [], {}
    for line in lines[start + 1:]:
        if line.strip().startswith("//---") and ".text." in line:
            break
        m = re.match(r"\s*(\.L_x_\d+):", line)
        if m:
            labels[m.group(1)] = len(ins)
            continue
        m = re.search(r"/\*[0-9a-f]{4,}\*/\s+(.*?)\s*;", line)
        if m:
            ins.append(m.group(1))
    return ins, labels


def opcode(instruction):
    words = instruction.split()
    return words[1] if words[0].startswith("@") else words[0]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sass")
    ap.add_argument("kernels", nargs="+")
    ap.add_argument("--key", default="IDP")
    ap.add_argument("--mix", action="store_true")
    a = ap.parse_args()
    lines = open(a.sass, encoding="utf-8").read().split("\n")
    missing = 0
    for kernel in a.kernels:
        found = kernel_instructions(lines, kernel)
        if found is None:
            print(f"{kernel}: not in {a.sass}")
            missing += 1
            continue
        ins, labels = found
        print(f"{kernel}: {len(ins)} instructions")
        loops = []
        for i, t in enumerate(ins):
            m = re.search(r"BRA\s+`?\(?(\.L_x_\d+)", t)
            if m and labels.get(m.group(1), len(ins)) < i:
                body = ins[labels[m.group(1)]:i + 1]
                if any(a.key in opcode(x) for x in body):
                    loops.append(body)
        for body in sorted(loops, key=len):
            ops = [opcode(x) for x in body]
            count = lambda f: sum(1 for o in ops if f(o))
            print(f"  loop: {len(body)} instructions, {count(lambda o: a.key in o)} {a.key}, "
                  f"{count(lambda o: 'MOV' in o)} moves, {count(lambda o: o.startswith('LDG'))} LDG, "
                  f"{count(lambda o: o.startswith('LDS'))} LDS, {count(lambda o: o.startswith(('LDL', 'STL')))} local")
            if a.mix:
                mix = collections.Counter(ops).most_common()
                print("    " + ", ".join(f"{n} {o}" for o, n in mix))
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
