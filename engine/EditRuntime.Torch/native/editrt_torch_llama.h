// LLaMA-family reference ops (ILlamaOps): RMSNorm, rotary position embedding in Hugging Face's rotate_half layout, and
// the SiLU-gated product of SwiGLU. Not a stand-alone header: editrt_torch.cpp includes it at its end, so these functions
// share that translation unit's helpers (guarded, in, emit, leaf, autograd, own). Forward definitions are written as
// Hugging Face's LlamaRMSNorm / apply_rotary_pos_emb / LlamaMLP compute them in float32; backward ops rebuild the
// forward on leaves and ask torch's autograd, as everywhere in the shim.

namespace {

// x · rsqrt(mean(x², last dim) + eps) · weight (libtorch 1.13 has no rms_norm of its own).
at::Tensor rms_norm_fwd(const at::Tensor& x, const at::Tensor& w, double eps) {
    return x * at::rsqrt(x.pow(2).mean(-1, /*keepdim=*/true) + eps) * w;
}

// Positions (B, T) as float32: start + t, plus offsets[b] when given (I32 (B)).
at::Tensor rope_positions(const at::Tensor& x, int64_t start, const at::Tensor* offsets) {
    const int64_t B = x.size(0), T = x.size(2);
    at::Tensor pos = at::arange(T, x.options().dtype(at::kLong)).add(start).view({1, T}).expand({B, T});
    if (offsets != nullptr) {
        TORCH_CHECK(offsets->dim() == 1 && offsets->size(0) == B, "offsets must be (B) = (", B, "), got ", offsets->sizes());
        pos = pos + offsets->to(at::kLong).view({B, 1});
    }
    return pos.to(at::kFloat);
}

// x (B, H, T, D): x·cos + rotate_half(x)·sin, rotate_half(x) = [−x[D/2:], x[:D/2]], with the angles
// pos·inv_freq (B, T, D/2) in float32 repeated over both halves (Hugging Face's LLaMA layout).
at::Tensor rope_fwd(const at::Tensor& x, const at::Tensor& inv_freq, int64_t start, const at::Tensor* offsets) {
    TORCH_CHECK(x.dim() == 4, "x must be (B, H, T, D), got ", x.sizes());
    const int64_t D = x.size(3), half = D / 2;
    TORCH_CHECK(D % 2 == 0, "the head dimension D must be even, got ", D);
    TORCH_CHECK(inv_freq.dim() == 1 && inv_freq.size(0) == half, "inv_freq must be (D/2) = (", half, "), got ", inv_freq.sizes());
    at::Tensor freqs = rope_positions(x, start, offsets).unsqueeze(-1) * inv_freq.view({1, 1, half});  // (B, T, D/2)
    at::Tensor emb = at::cat({freqs, freqs}, -1).unsqueeze(1);                                           // (B, 1, T, D)
    at::Tensor rot = at::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
    return x * emb.cos() + rot * emb.sin();
}

at::Tensor silu_mul_fwd(const at::Tensor& gate, const at::Tensor& up) { return at::silu(gate) * up; }

}  // namespace

ET_API int et_rms_norm(et_tensor x, et_tensor weight, float eps, et_tensor* out) {
    return guarded("rms_norm", [&] {
        at::NoGradGuard ng;
        out_ptr(out, "out");
        emit(out, own(rms_norm_fwd(in(x, "x"), in(weight, "weight"), eps), {}));
    });
}

ET_API int et_rms_norm_backward(et_tensor x, et_tensor weight, et_tensor gy, float eps, et_tensor* grad_x, et_tensor* grad_weight) {
    return guarded("rms_norm_backward", [&] {
        out_ptr(grad_x, "grad_x");
        out_ptr(grad_weight, "grad_weight");
        const at::Tensor &X = in(x, "x"), &W = in(weight, "weight"), &G = in(gy, "gy");
        at::Tensor lx = leaf(X), lw = leaf(W);
        auto g = autograd(rms_norm_fwd(lx, lw, eps), {lx, lw}, G);
        emit_all({{grad_x, own(g[0], {&X, &W, &G})}, {grad_weight, own(g[1], {&X, &W, &G})}});
    });
}

// offsets may be null (every batch row starts at start).
ET_API int et_rope(et_tensor x, et_tensor inv_freq, int64_t start, et_tensor offsets, et_tensor* out) {
    return guarded("rope", [&] {
        at::NoGradGuard ng;
        out_ptr(out, "out");
        const at::Tensor* off = offsets != nullptr ? &in(offsets, "offsets") : nullptr;
        emit(out, own(rope_fwd(in(x, "x"), in(inv_freq, "inv_freq"), start, off), {}));
    });
}

// The gradient of x given gy (B, H, T, D): autograd through the forward from a zero leaf of gy's shape
// (the op is linear in x, so its value does not matter).
ET_API int et_rope_backward(et_tensor inv_freq, et_tensor gy, int64_t start, et_tensor offsets, et_tensor* grad_x) {
    return guarded("rope_backward", [&] {
        out_ptr(grad_x, "grad_x");
        const at::Tensor &F = in(inv_freq, "inv_freq"), &G = in(gy, "gy");
        const at::Tensor* off = offsets != nullptr ? &in(offsets, "offsets") : nullptr;
        at::Tensor lx = at::zeros_like(G).requires_grad_(true);
        auto g = autograd(rope_fwd(lx, F, start, off), {lx}, G);
        emit(grad_x, own(g[0], {&F, &G}));
    });
}

ET_API int et_silu_mul(et_tensor gate, et_tensor up, et_tensor* out) {
    return guarded("silu_mul", [&] {
        at::NoGradGuard ng;
        out_ptr(out, "out");
        emit(out, own(silu_mul_fwd(in(gate, "gate"), in(up, "up")), {}));
    });
}

ET_API int et_silu_mul_backward(et_tensor gate, et_tensor up, et_tensor gy, et_tensor* grad_gate, et_tensor* grad_up) {
    return guarded("silu_mul_backward", [&] {
        out_ptr(grad_gate, "grad_gate");
        out_ptr(grad_up, "grad_up");
        const at::Tensor &Ga = in(gate, "gate"), &U = in(up, "up"), &G = in(gy, "gy");
        at::Tensor lg = leaf(Ga), lu = leaf(U);
        auto g = autograd(silu_mul_fwd(lg, lu), {lg, lu}, G);
        emit_all({{grad_gate, own(g[0], {&Ga, &U, &G})}, {grad_up, own(g[1], {&Ga, &U, &G})}});
    });
}
