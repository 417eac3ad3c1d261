#!/usr/bin/env python3
"""Torch's scaled_dot_product_attention beside `wavefront bench --attention`'s prefill rows.

Causal prefill from position 0, bf16, GQA (the Llama-3.1-8B and 3.2-1B head layouts), each
length timed with CUDA events (median of --reps after a warm-up) under the flash and the cuDNN
backends, in TFLOP/s of the same count as the Wavefront table: 4 · len² / 2 · head_dim · heads.
Run on the GPU machine (torch with CUDA); prints a markdown table, and writes it to --markdown.

    python3 ci/torch-sdpa-bench.py --lens 512,4096,16384 --markdown out.md
"""
import argparse
import statistics
import sys

SHAPES = {  # name: (q heads, kv heads, head dim)
    "llama-3.1-8b": (32, 8, 128),
    "llama-3.2-1b": (32, 8, 64),
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lens", default="512,4096,16384")
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--markdown")
    args = ap.parse_args()
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel
    import torch.nn.functional as F

    if not torch.cuda.is_available():
        print("torch-sdpa-bench: no CUDA device", file=sys.stderr)
        return 1
    lens = [int(x) for x in args.lens.split(",")]
    backends = [("flash", SDPBackend.FLASH_ATTENTION), ("cudnn", SDPBackend.CUDNN_ATTENTION)]
    lines = [
        f"torch {torch.__version__} scaled_dot_product_attention on {torch.cuda.get_device_name()}"
        f", causal, bf16, batch 1, median of {args.reps} after a warm-up"
        ", TFLOP/s = 4 · len²/2 · head_dim · heads / time",
        "",
        "| model | heads (q/kv × dim) | len | " + " | ".join(f"{n} µs | {n} TFLOP/s" for n, _ in backends) + " |",
        "|---|---|---:|" + "---:|---:|" * len(backends),
    ]
    for name, (h, hkv, d) in SHAPES.items():
        for n in lens:
            g = torch.Generator(device="cuda").manual_seed(n)
            q = torch.randn(1, h, n, d, device="cuda", dtype=torch.bfloat16, generator=g)
            k = torch.randn(1, hkv, n, d, device="cuda", dtype=torch.bfloat16, generator=g)
            v = torch.randn(1, hkv, n, d, device="cuda", dtype=torch.bfloat16, generator=g)
            flops = 4 * n * n / 2 * d * h
            cells = []
            for _, be in backends:
                try:
                    with sdpa_kernel([be]):
                        def f():
                            return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
                        f()
                        torch.cuda.synchronize()
                        ts = []
                        for _ in range(args.reps):
                            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                            a.record()
                            f()
                            b.record()
                            b.synchronize()
                            ts.append(a.elapsed_time(b))
                    ms = statistics.median(ts)
                    cells.append(f"{ms * 1e3:.1f} | {flops / (ms * 1e-3) / 1e12:.1f}")
                except RuntimeError as e:  # a backend that refuses the shape
                    cells.append("— | —")
                    print(f"{name} len {n}: {be}: {str(e).splitlines()[0]}", file=sys.stderr)
            lines.append(f"| {name} | {h}/{hkv} × {d} | {n} | " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.markdown:
        with open(args.markdown, "w") as fh:
            fh.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
