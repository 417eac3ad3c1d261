#!/usr/bin/env python3
"""Writes a Hugging Face model directory in a real model's shape with random weights, for runs
at sizes no fixture has (the device sessions run `wavefront run --model DIR` on it).

  ci/make-hf-shape.py SHAPE DIR [--layers N] [--vocab N] [--seed S]

SHAPE: llama-3.2-1b | llama-3.1-8b | smollm2-135m (the configs of the released models: sizes,
RoPE θ and Llama 3 scaling, context length, tied or untied head). DIR gets config.json,
model.safetensors (bf16: one seeded block of normal(0, 0.02) values tiled over every matrix;
norm weights 1), tokenizer.json (a word-level vocabulary `t0` … `t<vocab-1>`, split on
whitespace: any id decodes) and tokenizer_config.json. --layers and --vocab shrink the model
(for tests). Standard library only; an 8B directory (16 GB) takes about a minute, mostly disk.
"""

import argparse
import json
import os
import random
import struct
import sys

SHAPES = {
    # hidden, intermediate, layers, heads, kv heads, head_dim, vocab, theta, context, tied, scaling
    "smollm2-135m": (576, 1536, 30, 9, 3, 64, 49152, 100000.0, 8192, True, None),
    "llama-3.2-1b": (2048, 8192, 16, 32, 8, 64, 128256, 500000.0, 131072, True,
                     {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                      "original_max_position_embeddings": 8192, "rope_type": "llama3"}),
    "llama-3.1-8b": (4096, 14336, 32, 32, 8, 128, 128256, 500000.0, 131072, False,
                     {"factor": 8.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                      "original_max_position_embeddings": 8192, "rope_type": "llama3"}),
}
BLOCK = 1 << 20  # values in the tiled random block


def bf16(x):
    """Round-to-nearest-even bf16 bits of a float."""
    u = struct.unpack("<I", struct.pack("<f", x))[0]
    u += 0x7FFF + ((u >> 16) & 1)
    return (u >> 16) & 0xFFFF


def tensors(cfg):
    h, i, q, kv = cfg["hidden_size"], cfg["intermediate_size"], cfg["q"], cfg["kv"]
    yield "model.embed_tokens.weight", [cfg["vocab_size"], h]
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        yield p + "input_layernorm.weight", [h]
        yield p + "self_attn.q_proj.weight", [q, h]
        yield p + "self_attn.k_proj.weight", [kv, h]
        yield p + "self_attn.v_proj.weight", [kv, h]
        yield p + "self_attn.o_proj.weight", [h, q]
        yield p + "post_attention_layernorm.weight", [h]
        yield p + "mlp.gate_proj.weight", [i, h]
        yield p + "mlp.up_proj.weight", [i, h]
        yield p + "mlp.down_proj.weight", [h, i]
    yield "model.norm.weight", [h]
    if not cfg["tie_word_embeddings"]:
        yield "lm_head.weight", [cfg["vocab_size"], h]


def main():
    a = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    a.add_argument("shape", choices=sorted(SHAPES))
    a.add_argument("dir")
    a.add_argument("--layers", type=int)
    a.add_argument("--vocab", type=int)
    a.add_argument("--seed", type=int, default=1)
    args = a.parse_args()
    hid, inter, layers, heads, kvh, hd, vocab, theta, ctx, tied, scaling = SHAPES[args.shape]
    layers = args.layers or layers
    vocab = args.vocab or vocab
    config = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_act": "silu",
        "hidden_size": hid, "intermediate_size": inter, "num_hidden_layers": layers,
        "num_attention_heads": heads, "num_key_value_heads": kvh, "head_dim": hd,
        "vocab_size": vocab, "rms_norm_eps": 1e-5, "rope_theta": theta,
        "max_position_embeddings": ctx, "tie_word_embeddings": tied, "attention_bias": False,
        "mlp_bias": False, "bos_token_id": 0, "eos_token_id": 1, "torch_dtype": "bfloat16",
    }
    if scaling:
        config["rope_scaling"] = scaling
    os.makedirs(args.dir, exist_ok=True)
    with open(os.path.join(args.dir, "config.json"), "w") as f:
        json.dump(config, f, indent=2)

    shape_cfg = dict(config, q=heads * hd, kv=kvh * hd)
    rng = random.Random(args.seed)
    block = struct.pack(f"<{BLOCK}H", *(bf16(rng.gauss(0.0, 0.02)) for _ in range(BLOCK)))
    one = struct.pack("<H", bf16(1.0))
    header, offset, order = {}, 0, []
    for name, shape in tensors(shape_cfg):
        n = 1
        for d in shape:
            n *= d
        header[name] = {"dtype": "BF16", "shape": shape, "data_offsets": [offset, offset + 2 * n]}
        offset += 2 * n
        order.append((name, n))
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)
    path = os.path.join(args.dir, "model.safetensors")
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(head)))
        f.write(head)
        for name, n in order:
            if name.endswith("norm.weight"):
                f.write(one * n)
                continue
            left = 2 * n
            while left > 0:
                chunk = block[: min(left, len(block))]
                f.write(chunk)
                left -= len(chunk)

    tokenizer = {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [
            {"id": 0, "content": "t0", "single_word": False, "lstrip": False, "rstrip": False,
             "normalized": False, "special": True},
            {"id": 1, "content": "t1", "single_word": False, "lstrip": False, "rstrip": False,
             "normalized": False, "special": True},
        ],
        "normalizer": None, "pre_tokenizer": {"type": "Whitespace"}, "post_processor": None,
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": False},
        "model": {"type": "WordLevel", "vocab": {f"t{i}": i for i in range(vocab)},
                  "unk_token": "t2"},
    }
    with open(os.path.join(args.dir, "tokenizer.json"), "w") as f:
        json.dump(tokenizer, f)
    with open(os.path.join(args.dir, "tokenizer_config.json"), "w") as f:
        json.dump({"bos_token": "t0", "eos_token": "t1", "add_bos_token": False,
                   "model_max_length": ctx}, f)
    print(f"{args.dir}: {args.shape}, {layers} layers, vocab {vocab}, "
          f"{offset / 1e9:.2f} GB of bf16 weights", file=sys.stderr)


if __name__ == "__main__":
    main()
