#!/usr/bin/env python3
"""BDH in PyTorch, written from the semantics in the brief (not the reference file), for three jobs:

  load CHECKPOINT [--text T]   build the model from a BdhNative checkpoint's config, load its tensors with
                               load_state_dict(strict=True) and print the mean loss on the text's bytes
                               (compare with `bdh eval`-style numbers from our side).
  train [--threads N] ...      the `cpu` preset's training step timed on the CPU (tokens/s), the anchor for
                               the CPU performance comparison.
  fixtures OUT [--check DIR] [--text T]
                               parity fixtures, in the format of the reference's, of shapes those do not have (one
                               head, five heads, T = 1, D and N that leave part of a vector, ...) and of DIR's trained
                               model on windows of T (its sparse products), with the float32 trig table of their
                               angles, for `bdh check-reference` (.ci/other-shapes). First this model must reproduce
                               every bdh-reference-*.safetensors in DIR (../shared/fixtures).
"""
import argparse, itertools, json, math, os, struct, sys, time

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

    def angles(self, T):
        """Rope's angles [1, 1, T, N], float32 as the reference's freqs buffer (also in a float64 model: see fixtures)."""
        phase = torch.arange(0, T, dtype=torch.float32).view(1, 1, -1, 1) * self.attn.freqs
        return (phase % 1) * (2 * math.pi)

    def rope(self, v):
        angle = self.angles(v.size(2))
        rotated = torch.stack((-v[..., 1::2], v[..., ::2]), dim=-1).view(*v.size())
        return v * torch.cos(angle) + rotated * torch.sin(angle)

    def forward(self, idx, targets=None, trace=None):
        """trace: a dict that receives the reference fixtures' trace.* tensors (attention and every LayerNorm call)."""
        B, T = idx.shape
        calls = itertools.count()

        def ln(t):
            out = F.layer_norm(t, (self.D,), eps=1e-5)
            if trace is not None:
                k = next(calls)
                trace[f"trace.ln{k}.in"], trace[f"trace.ln{k}.out"] = t, out
            return out

        x = ln(self.embed(idx).unsqueeze(1))                                   # B,1,T,D
        for layer in range(self.n_layer):
            xs = F.relu(x @ self.encoder)                                      # B,nh,T,N
            q = self.rope(xs)
            a = (q @ q.mT).tril(diagonal=-1) @ x                               # B,nh,T,D
            if trace is not None:
                trace[f"trace.attn{layer}.q"], trace[f"trace.attn{layer}.v"], trace[f"trace.attn{layer}.out"] = xs, x, a
            ys = F.relu(ln(a) @ self.encoder_v)                                # B,nh,T,N
            xy = self.drop(xs * ys)
            y = ln(xy.transpose(1, 2).reshape(B, 1, T, self.nh * self.N) @ self.decoder)
            x = ln(x + y)
        logits = x.view(B, T, self.D) @ self.lm_head
        loss = None if targets is None else F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))
        return logits, loss


PARAMETERS = ["decoder", "encoder", "embed.weight", "encoder_v", "lm_head"]


def model_of(config, weights, dtype):
    """The model of a fixture's config on its weights, in dtype; rope's freqs, angles and trig stay float32 (as the
    reference's: its float64 fixtures were made that way)."""
    model = BDH(**config)
    model.load_state_dict(weights, strict=True)
    model.to(dtype)
    model.attn.freqs = model.attn.freqs.float()
    return model


def gradients(model, idx, targets, trace=None):
    """Logits, loss and every parameter's gradient of the mean cross-entropy."""
    model.zero_grad(set_to_none=True)
    logits, loss = model(idx, targets, trace)
    loss.backward()
    return logits.detach(), loss.detach().view(1), {name: model.get_parameter(name).grad.clone() for name in PARAMETERS}


def relative_error(value, expected):
    expected = expected.to(value.dtype)
    return ((value - expected).abs().max() / expected.abs().max().clamp_min(1e-30)).item()


def check_against(path):
    """This model against one of the reference's own fixtures: forward and gradients, float32 and float64."""
    tensors, meta = read_safetensors(path)
    config = json.loads(meta["config"])
    weights = {name: tensors[name] for name in PARAMETERS + ["attn.freqs"]}
    worst = {}
    for dtype, prefix, tolerance in [(torch.float32, "", 1e-4), (torch.float64, "f64.", 5e-8)]:
        logits, loss, grads = gradients(model_of(config, weights, dtype), tensors["idx"], tensors["targets"])
        errors = [relative_error(logits, tensors[prefix + "logits"]), relative_error(loss, tensors[prefix + "loss"])]
        errors += [relative_error(grads[name], tensors[prefix + "grad." + name]) for name in PARAMETERS]
        worst[str(dtype)] = max(errors)
        if max(errors) > tolerance:
            sys.exit(f"fixtures: this model does not reproduce {path} in {dtype}: relative error {max(errors):.2e} > {tolerance:.0e}")
    print(f"reproduces {os.path.basename(path)}: max rel err " + ", ".join(f"{k} {v:.1e}" for k, v in worst.items()))


# name: config, B, T. Each one off the reference fixtures' shapes in some way the kernels treat apart: a single token
# (nothing to attend to), one head and an odd number of heads, D and N that leave part of a vector (D = 10, 20, 24, 40;
# N = 4, 40, 60), three layers, a sequence whose scores go through the GEMM instead of dot-product tiles (T·N above
# 65536 floats), and a wide N (960) whose scores are still dot-product tiles.
SHAPES = {
    "one-token": (dict(n_layer=1, n_embd=16, n_head=1, mlp_internal_dim_multiplier=4), 1, 1),
    "three-heads": (dict(n_layer=3, n_embd=24, n_head=3, mlp_internal_dim_multiplier=5), 3, 17),
    "five-heads": (dict(n_layer=2, n_embd=10, n_head=5, mlp_internal_dim_multiplier=2), 4, 5),
    "d20": (dict(n_layer=2, n_embd=20, n_head=4, mlp_internal_dim_multiplier=8), 2, 33),
    "d40-n60": (dict(n_layer=2, n_embd=40, n_head=2, mlp_internal_dim_multiplier=3), 2, 9),
    "long": (dict(n_layer=1, n_embd=32, n_head=2, mlp_internal_dim_multiplier=32), 1, 130),
    "n960": (dict(n_layer=1, n_embd=48, n_head=2, mlp_internal_dim_multiplier=40), 2, 66),
}
TRAINED = "bdh-trained-cpu-tiny-500.safetensors"
PROMPT, GENERATED = 9, 24


def make_fixture(path, config, B, T, seed, angles, trained=None, text=None):
    """One fixture in the format of ../shared/fixtures/README.md, from weights ~ N(0, 0.1) and random tokens, or from
    `trained`'s weights and windows of `text` (a tensor of bytes); adds every rope angle it uses to `angles` (their
    float32 bits)."""
    torch.manual_seed(seed)
    config = dict(config, dropout=0.0, vocab_size=256)
    if trained is None:
        template = BDH(**config)
        weights = {name: torch.randn(value.shape) * 0.1 for name, value in template.state_dict().items() if name in PARAMETERS}
        weights["attn.freqs"] = template.attn.freqs
        idx, targets, idx2, targets2 = (torch.randint(0, 256, (B, T)) for _ in range(4))
    else:
        weights = {name: trained[name] for name in PARAMETERS + ["attn.freqs"]}
        windows = [torch.stack([text[s:s + T + 1] for s in starts]) for starts in torch.randint(len(text) - T, (2, B))]
        (idx, targets), (idx2, targets2) = ((w[:, :-1].contiguous(), w[:, 1:].contiguous()) for w in windows)
    prompt = torch.randint(ord("a"), ord("z") + 1, (1, PROMPT))  # letters, that `bdh sample --prompt` takes as they are (.ci/other-shapes)
    out = dict(weights, idx=idx, targets=targets, idx2=idx2, targets2=targets2)

    model = model_of(config, weights, torch.float32)
    trace = {}
    out["logits"], out["loss"], grads = gradients(model, idx, targets, trace)
    out.update({name: value.detach() for name, value in trace.items()})
    out.update({"grad." + name: grad for name, grad in grads.items()})
    out["f64.logits"], out["f64.loss"], grads64 = gradients(model_of(config, weights, torch.float64), idx, targets)
    out.update({"f64.grad." + name: grad for name, grad in grads64.items()})

    # Two AdamW steps: the first on batch 1's gradients (still in .grad), the second on batch 2's.
    parameters = {name: model.get_parameter(name) for name in PARAMETERS}
    optimizer = torch.optim.AdamW(parameters.values(), lr=1e-3, weight_decay=0.1, betas=(0.9, 0.999), eps=1e-8)
    optimizer.step()
    out.update({"adamw.step1." + name: p.detach().clone() for name, p in parameters.items()})
    _, out["loss2"], _ = gradients(model, idx2, targets2)
    optimizer.step()
    out.update({"adamw.step2." + name: p.detach().clone() for name, p in parameters.items()})

    # Greedy generation from the initial weights, the whole sequence recomputed for each token (no cache, as the reference).
    fresh, tokens = model_of(config, weights, torch.float32), prompt
    with torch.no_grad():
        for _ in range(GENERATED):
            logits, _ = fresh(tokens)
            tokens = torch.cat((tokens, logits[:, -1, :].argmax(-1, keepdim=True)), dim=1)
    out["greedy.prompt"], out["greedy.out"] = prompt, tokens

    for length in [T] + list(range(PROMPT, PROMPT + GENERATED)):
        angles.update(fresh.angles(length).flatten().view(torch.int32).tolist())
    write_safetensors(path, out, {"config": json.dumps(config), "lr": "0.001", "weight_decay": "0.1", "B": str(B), "T": str(T),
                                  "init_std": "0.1", "seed": str(seed), "source": f"bench/peers/bdh_torch.py, torch {torch.__version__}"})


def fixtures(args):
    torch.set_num_threads(1)
    checked = sorted(f for f in os.listdir(args.check) if f.startswith("bdh-reference-") and f.endswith(".safetensors"))
    if not checked:
        sys.exit(f"fixtures: no bdh-reference-*.safetensors in {args.check} to check this model against")
    for name in checked:
        check_against(os.path.join(args.check, name))
    os.makedirs(args.out, exist_ok=True)
    angles = set()
    for seed, (name, (config, B, T)) in enumerate(SHAPES.items(), start=1):
        make_fixture(os.path.join(args.out, f"bdh-reference-{name}.safetensors"), config, B, T, seed, angles)
        print(f"wrote bdh-reference-{name}.safetensors: {config}, B {B}, T {T}")
    # The trained reference model on windows of its text: activations as sparse as training makes them (xs ⊙ ys about
    # 6% non-zero), so the float32 products take the sparse kernels, forward and backward.
    trained, meta = read_safetensors(os.path.join(args.check, TRAINED))
    text = torch.tensor(list(open(args.text, "rb").read()))
    make_fixture(os.path.join(args.out, "bdh-reference-trained.safetensors"), json.loads(meta["config"]), 2, 64, len(SHAPES) + 1, angles, trained, text)
    print(f"wrote bdh-reference-trained.safetensors: {TRAINED}'s weights, two windows of 64 bytes of {args.text}")
    # The table check-reference's float64 "ref-trig" group reads: this torch's float32 cos and sin of every angle.
    angle = torch.tensor(sorted(angles), dtype=torch.int32).view(torch.float32)
    write_safetensors(os.path.join(args.out, "torch-float32-trig.safetensors"), {"angle": angle, "cos": torch.cos(angle), "sin": torch.sin(angle)},
                      {"source": f"torch {torch.__version__} (bench/peers/bdh_torch.py fixtures)"})


def write_safetensors(path, tensors, meta):
    dtypes = {torch.float32: "F32", torch.float64: "F64", torch.int64: "I64"}
    header, blobs, offset = {"__metadata__": meta}, [], 0
    for name, tensor in tensors.items():
        blob = tensor.detach().contiguous().numpy().tobytes()
        header[name] = {"dtype": dtypes[tensor.dtype], "shape": list(tensor.shape), "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    encoded = json.dumps(header).encode()
    encoded += b" " * (-len(encoded) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(encoded)) + encoded + b"".join(blobs))


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
    f = sub.add_parser("fixtures")
    f.add_argument("out")
    f.add_argument("--check", default="../shared/fixtures")
    f.add_argument("--text", default="../shared/data/tinyshakespeare.txt")
    args = p.parse_args()
    {"load": load, "train": train, "fixtures": fixtures}[args.cmd](args)
