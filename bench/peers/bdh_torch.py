#!/usr/bin/env python3
"""BDH in PyTorch, written from the semantics in the brief (not the reference file), for two jobs:

  load CHECKPOINT [--text T]   build the model from a BdhNative checkpoint's config, load its tensors with
                               load_state_dict(strict=True) and print the mean loss on the text's bytes
                               (compare with `bdh eval`-style numbers from our side).
  train [--threads N] ...      the `cpu` preset's training step timed on the CPU (tokens/s), the anchor for
                               the CPU performance comparison.
"""
import argparse, json, math, struct, sys, time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def get_freqs(n, theta=2.0 ** 16):
    j = torch.arange(0, n, dtype=torch.float32)
    return 1.0 / (theta ** ((j / 2).floor() * 2 / n)) / (2 * math.pi)


class BDH(nn.Module):
    def __init__(self, n_layer=4, n_embd=128, n_head=4, mlp_internal_dim_multiplier=16, dropout=0.1, vocab_size=256):
        super().__init__()
        self.n_layer, self.D, self.nh = n_layer, n_embd, n_head
        self.N = mlp_internal_dim_multiplier * n_embd // n_head
        self.decoder = nn.Parameter(torch.randn(self.nh * self.N, self.D) * 0.02)
        self.encoder = nn.Parameter(torch.randn(self.nh, self.D, self.N) * 0.02)
        self.encoder_v = nn.Parameter(torch.randn(self.nh, self.D, self.N) * 0.02)
        self.embed = nn.Embedding(vocab_size, self.D)
        nn.init.normal_(self.embed.weight, std=0.02)
        self.lm_head = nn.Parameter(torch.randn(self.D, vocab_size) * 0.02)
        self.attn = nn.Module()
        self.attn.register_buffer("freqs", get_freqs(self.N).view(1, 1, 1, self.N))
        self.drop = nn.Dropout(dropout)

    def rope(self, v):
        T = v.size(2)
        phase = torch.arange(0, T, dtype=torch.float32).view(1, 1, -1, 1) * self.attn.freqs
        angle = (phase % 1) * (2 * math.pi)
        rotated = torch.stack((-v[..., 1::2], v[..., ::2]), dim=-1).view(*v.size())
        return v * torch.cos(angle) + rotated * torch.sin(angle)

    def forward(self, idx, targets=None):
        B, T = idx.shape
        ln = lambda t: F.layer_norm(t, (self.D,), eps=1e-5)
        x = ln(self.embed(idx).unsqueeze(1))                                   # B,1,T,D
        for _ in range(self.n_layer):
            xs = F.relu(x @ self.encoder)                                      # B,nh,T,N
            q = self.rope(xs)
            a = (q @ q.mT).tril(diagonal=-1) @ x                               # B,nh,T,D
            ys = F.relu(ln(a) @ self.encoder_v)                                # B,nh,T,N
            xy = self.drop(xs * ys)
            y = ln(xy.transpose(1, 2).reshape(B, 1, T, self.nh * self.N) @ self.decoder)
            x = ln(x + y)
        logits = x.view(B, T, self.D) @ self.lm_head
        loss = None if targets is None else F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))
        return logits, loss


def read_safetensors(path):
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    meta = header.pop("__metadata__", {})
    dtypes = {"F32": np.float32, "F64": np.float64, "I64": np.int64}
    tensors = {k: torch.from_numpy(np.frombuffer(raw[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]],
                                                 dtype=dtypes[v["dtype"]]).reshape(v["shape"]).copy())
               for k, v in header.items()}
    return tensors, meta


def load(args):
    tensors, meta = read_safetensors(args.checkpoint)
    config = json.loads(meta["config"])
    model = BDH(**config)
    model.load_state_dict(tensors, strict=True)
    model.eval()
    data = open(args.text, "rb").read()
    val = data[int(len(data) * 0.9):]
    T, windows = args.block, args.windows
    x = torch.tensor([list(val[i * T:i * T + T]) for i in range(windows)])
    y = torch.tensor([list(val[i * T + 1:i * T + T + 1]) for i in range(windows)])
    with torch.no_grad():
        losses = [model(x[i:i + 32], y[i:i + 32])[1].item() for i in range(0, windows, 32)]
    print(f"load_state_dict(strict=True) ok: {sorted(tensors)}")
    print(f"val loss {np.mean(losses):.6f} over {windows} windows of {T} tokens")


def train(args):
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    data = torch.tensor(list(open(args.text, "rb").read()))
    model = BDH(args.layers, args.embd, args.heads, args.mult, args.dropout)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)
    times = []
    for step in range(args.steps):
        ix = torch.randint(len(data) - args.block, (args.batch,))
        x = torch.stack([data[i:i + args.block] for i in ix])
        y = torch.stack([data[i + 1:i + 1 + args.block] for i in ix])
        t0 = time.perf_counter()
        _, loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    median = sorted(times)[len(times) // 2]
    print(f"pytorch {torch.__version__}, {args.threads} threads: median step {median * 1000:.1f} ms, "
          f"{args.batch * args.block / median:.0f} tokens/s, last loss {loss.item():.4f}")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    l = sub.add_parser("load")
    l.add_argument("checkpoint")
    l.add_argument("--text", default="../shared/data/tinyshakespeare.txt")
    l.add_argument("--block", type=int, default=64)
    l.add_argument("--windows", type=int, default=256)
    t = sub.add_parser("train")
    t.add_argument("--text", default="../shared/data/tinyshakespeare.txt")
    for name, default in [("threads", 2), ("layers", 4), ("embd", 128), ("heads", 4), ("mult", 16), ("batch", 16), ("block", 64), ("steps", 30)]:
        t.add_argument("--" + name, type=int, default=default)
    t.add_argument("--dropout", type=float, default=0.1)
    args = p.parse_args()
    load(args) if args.cmd == "load" else train(args)
