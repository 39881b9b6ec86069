#!/usr/bin/env python3
"""PyTorch on CUDA beside `editrt bench`: the same shapes, timed the same way (median after warm-ups).

  matmul   C = A·B fp32 for each --sizes (as `editrt bench matmul --sizes`), TF32 off (IEEE fp32, the fair
           comparison with our fp32 kernels) and TF32 on, each with its relative error against float64
  ops      every row of `editrt bench ops` (GPT-2-small layer on 128 tokens: T=128, C=768, F=3072, H=12, D=64,
           V=50257), forward and backward (backward = torch.autograd.grad on a retained graph, the input
           gradients our *Backward ops return); rate = GFLOP/s or GB/s with the same work formulas
  model    `editrt bench model`: a gpt2-124M-shaped random GPT-2 (and --dims), forward = logits of the batch
           copied to the host (as ours downloads them), step = forward + loss + backward of every parameter

Times: "wall" = host time of call + synchronize (what our wall column is: record + submit + wait), "cuda" =
CUDA events around the call (device time incl. gaps between kernels). Prints tables, then one `json:` line.
Needs only torch (no numpy). Without torch or CUDA it says so and exits 3 (`--device cpu` runs on the CPU).
"""
import argparse
import json
import math
import os
import statistics
import sys
import time


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    p.add_argument("--sizes", default="256,512,1024,2048,4096", help="matmul sizes: N or MxNxK, comma-separated")
    p.add_argument("--models", default="4x32", help="bench model batch x seq list, comma-separated (e.g. 4x32,8x128)")
    p.add_argument("--dims", default=None, help="extra model vocab,positions,embd,layers,heads (as editrt bench model --dims)")
    p.add_argument("--no-gpt2", action="store_true", help="skip the gpt2-124M-shaped model")
    p.add_argument("--parts", default="matmul,ops,model", help="which parts to run")
    p.add_argument("--repeat", type=int, default=0, help="timed runs (0 = auto: about 0.3 s worth, 5 to 50)")
    p.add_argument("--model-repeat", type=int, default=10, help="timed runs per model measurement (median)")
    p.add_argument("--no-check", action="store_true", help="skip the float64 error of the matmuls")
    return p.parse_args()


args = parse_args()

try:
    import torch
    import torch.nn.functional as F
except Exception as e:  # noqa: BLE001
    print(f"torch_cuda_bench: PyTorch is not importable by {sys.executable} ({type(e).__name__}: {e}); nothing measured.")
    sys.exit(3)

if args.device.startswith("cuda") and not torch.cuda.is_available():
    print(f"torch_cuda_bench: torch {torch.__version__} has no usable CUDA device here "
          f"(torch.version.cuda={torch.version.cuda}, CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')}); "
          "nothing measured (pass --device cpu to time the CPU instead).")
    sys.exit(3)

dev = torch.device(args.device)
CUDA = dev.type == "cuda"
RESULTS = {"torch": torch.__version__, "cuda": torch.version.cuda, "device": args.device}


def sync():
    if CUDA:
        torch.cuda.synchronize()


def set_tf32(on):
    """TF32 for matmul (and cuDNN) on or off, with whichever API this torch has."""
    if not CUDA:
        return
    mode = "tf32" if on else "ieee"
    try:  # torch >= 2.9: fp32_precision ("ieee" / "tf32"); mixing it with the legacy allow_tf32 may be refused there
        torch.backends.cuda.matmul.fp32_precision = mode
    except Exception:  # noqa: BLE001
        torch.backends.cuda.matmul.allow_tf32 = on
        torch.set_float32_matmul_precision("high" if on else "highest")
        torch.backends.cudnn.allow_tf32 = on
        return
    try:
        torch.backends.cudnn.conv.fp32_precision = mode
    except Exception:  # noqa: BLE001
        pass


def tf32_state():
    try:
        return f"matmul.fp32_precision={torch.backends.cuda.matmul.fp32_precision}"
    except Exception:  # noqa: BLE001
        return f"matmul.allow_tf32={torch.backends.cuda.matmul.allow_tf32}"


def timeit(fn, repeat=0, warmup=3, budget_s=0.3):
    """(median wall ms, median cuda-event ms or nan, runs). wall = call + synchronize, per run."""
    for _ in range(warmup):
        fn()
    sync()
    t0 = time.perf_counter()
    fn()
    sync()
    est = (time.perf_counter() - t0) * 1000
    runs = repeat if repeat > 0 else max(5, min(50, int(budget_s * 1000 / max(est, 1e-3))))
    wall, ev = [], []
    for _ in range(runs):
        if CUDA:
            s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            t = time.perf_counter()
            s.record()
            fn()
            e.record()
            e.synchronize()
            wall.append((time.perf_counter() - t) * 1000)
            ev.append(s.elapsed_time(e))
        else:
            t = time.perf_counter()
            fn()
            wall.append((time.perf_counter() - t) * 1000)
    return statistics.median(wall), (statistics.median(ev) if ev else float("nan")), runs


def fmt(x, spec="0.3f"):
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec.replace("0.", "."))


def header():
    name = torch.cuda.get_device_name(dev) if CUDA else "cpu"
    print(f"torch {torch.__version__} (CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version() if CUDA else '—'}) on {name}; "
          f"python {sys.version.split()[0]}; threads {torch.get_num_threads()}")
    if CUDA:
        p = torch.cuda.get_device_properties(dev)
        print(f"device: {p.name}, {p.total_memory / 2**30:.0f} GiB, {p.multi_processor_count} SMs, capability {p.major}.{p.minor}")
    RESULTS["device_name"] = name


def parse_size(s):
    v = [int(x) for x in s.lower().split("x")]
    return (v[0], v[0], v[0]) if len(v) == 1 else tuple(v)


# --------------------------------------------------------------------------------------------- matmul
def bench_matmul():
    sizes = [parse_size(s) for s in args.sizes.split(",") if s.strip()]
    print()
    print("matmul fp32, C = A·B (torch.matmul into a preallocated C); wall = call + synchronize, cuda = events (median)")
    print(f"{'M x N x K':<18} {'mode':<5} {'runs':>4} {'cuda ms':>10} {'wall ms':>10} {'GFLOP/s cuda':>13} {'GFLOP/s wall':>13} {'rel err':>9}")
    rows = []
    g = torch.Generator(device="cpu").manual_seed(0)
    for (M, N, K) in sizes:
        a = torch.randn(M, K, generator=g).to(dev)
        b = torch.randn(K, N, generator=g).to(dev)
        c = torch.empty(M, N, device=dev)
        flop = 2.0 * M * N * K
        ref = None
        if not args.no_check:
            ref = (a.double() @ b.double())
        for mode in ("fp32", "tf32") if CUDA else ("fp32",):
            set_tf32(mode == "tf32")
            w, e, runs = timeit(lambda: torch.matmul(a, b, out=c), repeat=args.repeat, budget_s=0.5)
            err = float("nan")
            if ref is not None:
                torch.matmul(a, b, out=c)
                err = float((c.double() - ref).norm() / ref.norm())
            gc = flop / (e * 1e6) if not math.isnan(e) else float("nan")
            print(f"{f'{M}x{N}x{K}':<18} {mode:<5} {runs:>4} {fmt(e):>10} {fmt(w):>10} {fmt(gc, '0.1f'):>13} {flop / (w * 1e6):>13.1f} {fmt(err, '0.1e'):>9}")
            rows.append({"size": f"{M}x{N}x{K}", "mode": mode, "runs": runs, "cuda_ms": e, "wall_ms": w,
                         "gflops_cuda": gc, "gflops_wall": flop / (w * 1e6), "rel_err": err})
        del a, b, c, ref
        if CUDA:
            torch.cuda.empty_cache()
    set_tf32(False)
    print(f"(TF32 off for fp32 rows: {tf32_state()} at the end)")
    RESULTS["matmul"] = rows


# --------------------------------------------------------------------------------------------- ops
T, C, FF, H, D, V = 128, 768, 3072, 12, 64, 50257


def ops_cases():
    """(op, shape, make() -> (fn, ...), flops, bytes) exactly as BenchOpsCommand.Cases()."""
    g = torch.Generator(device="cpu").manual_seed(1)

    def R(*shape, grad=False):
        t = torch.randn(*shape, generator=g).to(dev)
        return t.requires_grad_(grad)

    def Ids(n):
        return torch.randint(0, V, (n,), generator=g).to(dev)

    def bwd(out_fn, inputs, gout):
        out = out_fn()
        return lambda: torch.autograd.grad(out, inputs, gout, retain_graph=True)

    def attn_math(q, k, v):
        s = (q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(D))
        mask = torch.ones(T, T, dtype=torch.bool, device=dev).triu(1)
        return torch.softmax(s.masked_fill(mask, float("-inf")), -1) @ v

    def sdpa(q, k, v):
        if hasattr(F, "scaled_dot_product_attention"):
            return F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return attn_math(q, k, v)

    cases = []

    def add(op, shape, make, flops, nbytes):
        cases.append((op, shape, make, flops, nbytes))

    add("add", f"{T}x{FF}", lambda: (lambda x, y: (lambda: x + y))(R(T, FF), R(T, FF)), 0, 3.0 * T * FF * 4)
    add("sum", f"{T}x{FF}", lambda: (lambda x: (lambda: x.sum()))(R(T, FF)), 0, 1.0 * T * FF * 4)
    add("matmul fwd", f"{T}x{C} · {C}x{FF}", lambda: (lambda a, b: (lambda: a @ b))(R(T, C), R(C, FF)), 2.0 * T * C * FF, 0)

    def mm_bwd():
        a, b = R(T, C, grad=True), R(C, FF, grad=True)
        return bwd(lambda: a @ b, (a, b), R(T, FF))
    add("matmul bwd", f"{T}x{C} · {C}x{FF}", mm_bwd, 4.0 * T * C * FF, 0)
    add("bias_add fwd", f"{T}x{FF}", lambda: (lambda x, b: (lambda: x + b))(R(T, FF), R(FF)), 0, 2.0 * T * FF * 4)

    def bias_bwd():
        x, b = R(T, FF, grad=True), R(FF, grad=True)
        return bwd(lambda: x + b, (x, b), R(T, FF))
    add("bias_add bwd", f"{T}x{FF}", bias_bwd, 0, 2.0 * T * FF * 4)
    add("gelu fwd", f"{T}x{FF}", lambda: (lambda x: (lambda: F.gelu(x, approximate="tanh")))(R(T, FF)), 0, 2.0 * T * FF * 4)

    def gelu_bwd():
        x = R(T, FF, grad=True)
        return bwd(lambda: F.gelu(x, approximate="tanh"), (x,), R(T, FF))
    add("gelu bwd", f"{T}x{FF}", gelu_bwd, 0, 3.0 * T * FF * 4)
    add("layernorm fwd", f"{T}x{C}", lambda: (lambda x, w, b: (lambda: F.layer_norm(x, (C,), w, b)))(R(T, C), R(C), R(C)), 0, 2.0 * T * C * 4)

    def ln_bwd():
        x, w, b = R(T, C, grad=True), R(C, grad=True), R(C, grad=True)
        return bwd(lambda: F.layer_norm(x, (C,), w, b), (x, w, b), R(T, C))
    add("layernorm bwd", f"{T}x{C}", ln_bwd, 0, 3.0 * T * C * 4)
    add("softmax fwd", f"{H * T}x{T}", lambda: (lambda x: (lambda: torch.softmax(x, -1)))(R(H * T, T)), 0, 2.0 * H * T * T * 4)

    def sm_bwd():
        x = R(H * T, T, grad=True)
        return bwd(lambda: torch.softmax(x, -1), (x,), R(H * T, T))
    add("softmax bwd", f"{H * T}x{T}", sm_bwd, 0, 3.0 * H * T * T * 4)
    add("attention fwd", f"B1 H{H} T{T} D{D}", lambda: (lambda q, k, v: (lambda: sdpa(q, k, v)))(R(1, H, T, D), R(1, H, T, D), R(1, H, T, D)), 4.0 * H * T * T * D, 0)

    def at_bwd():
        q, k, v = R(1, H, T, D, grad=True), R(1, H, T, D, grad=True), R(1, H, T, D, grad=True)
        return bwd(lambda: sdpa(q, k, v), (q, k, v), R(1, H, T, D))
    add("attention bwd", f"B1 H{H} T{T} D{D}", at_bwd, 12.0 * H * T * T * D, 0)
    add("attention fwd math", f"B1 H{H} T{T} D{D}", lambda: (lambda q, k, v: (lambda: attn_math(q, k, v)))(R(1, H, T, D), R(1, H, T, D), R(1, H, T, D)), 4.0 * H * T * T * D, 0)

    def atm_bwd():
        q, k, v = R(1, H, T, D, grad=True), R(1, H, T, D, grad=True), R(1, H, T, D, grad=True)
        return bwd(lambda: attn_math(q, k, v), (q, k, v), R(1, H, T, D))
    add("attention bwd math", f"B1 H{H} T{T} D{D}", atm_bwd, 12.0 * H * T * T * D, 0)
    add("embedding fwd", f"{T} ids, {V}x{C}", lambda: (lambda i, w: (lambda: F.embedding(i, w)))(Ids(T), R(V, C)), 0, 2.0 * T * C * 4)

    def emb_bwd():
        i, w = Ids(T), R(V, C, grad=True)
        return bwd(lambda: F.embedding(i, w), (w,), R(T, C))
    add("embedding bwd", f"{T} ids, {V}x{C}", emb_bwd, 0, (1.0 * V * C + T * C) * 4)
    add("cross_entropy fwd", f"{T}x{V}", lambda: (lambda x, i: (lambda: F.cross_entropy(x, i)))(R(T, V), Ids(T)), 0, 1.0 * T * V * 4)

    def ce_bwd():
        x, i = R(T, V, grad=True), Ids(T)
        return bwd(lambda: F.cross_entropy(x, i), (x,), R(()))
    add("cross_entropy bwd", f"{T}x{V}", ce_bwd, 0, 2.0 * T * V * 4)

    def adam():
        p = R(C, FF, grad=True)
        p.grad = R(C, FF)
        kw = {"fused": True} if CUDA else {}
        try:
            opt = torch.optim.AdamW([p], lr=1e-4, **kw)
        except (TypeError, RuntimeError):
            opt = torch.optim.AdamW([p], lr=1e-4)
        opt.step()  # creates the moment buffers (ours gets them as inputs)
        return opt.step
    add("adam_step", f"{C}x{FF}", adam, 0, 7.0 * C * FF * 4)
    return cases


def bench_ops():
    set_tf32(False)
    print()
    print(f"ops (shapes of `editrt bench ops`); bwd = autograd.grad of the input gradients on a retained graph; fp32, TF32 off")
    print("ms = median wall per call (call + synchronize), cuda = events; rate = GFLOP/s for matmul/attention, else GB/s (same work as ours), from wall")
    print(f"{'op':<20} {'shape':<22} {'runs':>4} {'wall ms':>9} {'cuda ms':>9} {'rate':>10} {'rate cuda':>10}")
    rows = []
    for op, shape, make, flops, nbytes in ops_cases():
        try:
            fn = make()
            w, e, runs = timeit(fn, repeat=args.repeat)
            work = flops if flops > 0 else nbytes
            rc = work / (e * 1e6) if not math.isnan(e) else float("nan")
            print(f"{op:<20} {shape:<22} {runs:>4} {w:>9.3f} {fmt(e):>9} {work / (w * 1e6):>10.2f} {fmt(rc, '0.2f'):>10}")
            rows.append({"op": op, "shape": shape, "runs": runs, "wall_ms": w, "cuda_ms": e, "rate": work / (w * 1e6), "rate_cuda": rc})
        except Exception as ex:  # noqa: BLE001
            print(f"{op:<20} {shape:<22} error: {type(ex).__name__}: {ex}")
            rows.append({"op": op, "shape": shape, "error": str(ex)})
        del make
        if CUDA:
            torch.cuda.empty_cache()
    RESULTS["ops"] = rows


# --------------------------------------------------------------------------------------------- model
class Gpt2(torch.nn.Module):
    """GPT-2 as in the Hugging Face layout: pre-LN blocks, GELU (tanh), tied lm_head, causal attention."""

    def __init__(self, vocab, positions, embd, layers, heads):
        super().__init__()
        nn = torch.nn
        self.h, self.c = heads, embd
        self.wte = nn.Embedding(vocab, embd)
        self.wpe = nn.Embedding(positions, embd)
        self.blocks = nn.ModuleList()
        for _ in range(layers):
            blk = nn.Module()
            blk.ln_1, blk.c_attn, blk.attn_proj = nn.LayerNorm(embd), nn.Linear(embd, 3 * embd), nn.Linear(embd, embd)
            blk.ln_2, blk.c_fc, blk.mlp_proj = nn.LayerNorm(embd), nn.Linear(embd, 4 * embd), nn.Linear(4 * embd, embd)
            self.blocks.append(blk)
        self.ln_f = nn.LayerNorm(embd)
        for p in self.parameters():
            if p.dim() > 1:
                torch.nn.init.normal_(p, std=0.02)

    def forward(self, ids):
        B, T_ = ids.shape
        x = self.wte(ids) + self.wpe(torch.arange(T_, device=ids.device))
        for b in self.blocks:
            q, k, v = b.c_attn(b.ln_1(x)).split(self.c, dim=2)
            q, k, v = (t.view(B, T_, self.h, self.c // self.h).transpose(1, 2) for t in (q, k, v))
            if hasattr(F, "scaled_dot_product_attention"):
                y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            else:
                s = (q @ k.transpose(-1, -2)) / math.sqrt(self.c // self.h)
                s = s.masked_fill(torch.ones(T_, T_, dtype=torch.bool, device=ids.device).triu(1), float("-inf"))
                y = torch.softmax(s, -1) @ v
            x = x + b.attn_proj(y.transpose(1, 2).reshape(B, T_, self.c))
            x = x + b.mlp_proj(F.gelu(b.c_fc(b.ln_2(x)), approximate="tanh"))
        return self.ln_f(x) @ self.wte.weight.t()


def bench_model():
    set_tf32(False)
    models = []
    if args.dims:
        v = [int(x) for x in args.dims.split(",")]
        models.append((f"custom {args.dims}", v))
    if not args.no_gpt2:
        models.append(("gpt2-124M (random)", [50257, 1024, 768, 12, 12]))
    shapes = [tuple(int(x) for x in s.split("x")) for s in args.models.split(",") if s.strip()]
    print()
    print(f"model: forward = logits of the batch copied to the host (fwd dev = without the copy, under inference_mode); "
          f"step = forward + loss + backward of every parameter (no optimizer); fp32, TF32 off; median of {args.model_repeat} after 3 warm-ups")
    print(f"{'model':<22} {'params':>8} {'batch':>7} {'fwd ms':>9} {'fwd tok/s':>10} {'fwd dev ms':>10} {'step ms':>9} {'step tok/s':>10} {'step cuda':>9}")
    rows = []
    for name, (Vv, P, Cc, L, Hh) in models:
        torch.manual_seed(1)
        model = Gpt2(Vv, P, Cc, L, Hh).to(dev)
        nparams = sum(p.numel() for p in model.parameters()) + 0  # tied head counted once, as ours
        for (B, S) in shapes:
            g = torch.Generator(device="cpu").manual_seed(2)
            ids = torch.randint(0, Vv, (B, S), generator=g).to(dev)
            tgt = torch.cat([ids[:, 1:], torch.full((B, 1), -100, dtype=ids.dtype, device=dev)], 1)

            def fwd_host():
                with torch.inference_mode():
                    return model(ids).cpu()

            def fwd_dev():
                with torch.inference_mode():
                    return model(ids)

            def step():
                logits = model(ids)
                loss = F.cross_entropy(logits.view(-1, Vv), tgt.view(-1), ignore_index=-100)
                loss.backward()
                sync()
                model.zero_grad(set_to_none=True)

            try:
                fw, _, _ = timeit(fwd_host, repeat=args.model_repeat)
                fdw, fde, _ = timeit(fwd_dev, repeat=args.model_repeat)
                sw_, se, _ = timeit(step, repeat=args.model_repeat)
                tok = B * S
                print(f"{name:<22} {nparams / 1e6:>7.1f}M {f'{B}x{S}':>7} {fw:>9.2f} {tok / (fw / 1000):>10.0f} {fmt(fde if CUDA else fdw, '0.2f'):>10} "
                      f"{sw_:>9.2f} {tok / (sw_ / 1000):>10.0f} {fmt(se, '0.2f'):>9}")
                rows.append({"model": name, "params": nparams, "batch": B, "seq": S, "fwd_ms": fw, "fwd_dev_ms": fde if CUDA else fdw,
                             "step_ms": sw_, "step_cuda_ms": se, "fwd_tok_s": tok / (fw / 1000), "step_tok_s": tok / (sw_ / 1000)})
            except Exception as ex:  # noqa: BLE001
                print(f"{name:<22} {f'{B}x{S}':>7} error: {type(ex).__name__}: {ex}")
                rows.append({"model": name, "batch": B, "seq": S, "error": str(ex)})
        del model
        if CUDA:
            torch.cuda.empty_cache()
    RESULTS["model"] = rows


def main():
    header()
    parts = [p.strip() for p in args.parts.split(",")]
    t0 = time.perf_counter()
    for name, fn in (("matmul", bench_matmul), ("ops", bench_ops), ("model", bench_model)):
        if name in parts:
            t = time.perf_counter()
            try:
                fn()
            except Exception as ex:  # noqa: BLE001
                print(f"{name}: error: {type(ex).__name__}: {ex}")
                RESULTS[name + "_error"] = str(ex)
            print(f"({name}: {time.perf_counter() - t:.1f} s)")
    if CUDA:
        RESULTS["max_memory_allocated_mib"] = torch.cuda.max_memory_allocated() / 2**20
    print(f"total {time.perf_counter() - t0:.1f} s")
    print("json: " + json.dumps(RESULTS, allow_nan=True))


if __name__ == "__main__":
    main()
