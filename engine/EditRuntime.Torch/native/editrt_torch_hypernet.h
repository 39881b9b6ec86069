// Hyper-network editors' reference ops (MEND, MALMEN, EMSEdit) and the SPD solves of MALMEN's least squares.
// Not a stand-alone header: editrt_torch.cpp includes it at its end, so these functions share that translation
// unit's helpers (guarded, in, emit, leaf, autograd, own). Backward ops rebuild the forward on leaves and ask
// torch's autograd, as everywhere in the shim, except where the contract says what torch does not (the
// normaliser's statistics are constants; N = 1 has variance 0, not NaN).

namespace {

at::Tensor normalize_fwd(const at::Tensor& x, const at::Tensor& mean, const at::Tensor& std_, double eps) {
    return (x - mean) / (std_ + eps);
}

// clamp_min: its derivative is 1 where h + bias >= 0, at 0 included (what lets a block with B = 0 train).
at::Tensor hyper_block_fwd(const at::Tensor& y, const at::Tensor& h, const at::Tensor& bias, const at::Tensor& scale, const at::Tensor& shift) {
    return y + scale * at::clamp_min(h + bias, 0) + shift;
}

at::Tensor value_diff_fwd(const at::Tensor& k, const at::Tensor& kt, const at::Tensor& gt, const at::Tensor& eta) {
    return -eta * (k * kt).sum(-1, /*keepdim=*/true) * gt;
}

// KL(p_ref || p) summed over the vocabulary, averaged over rows (kl_div "batchmean" with log targets).
at::Tensor kl_fwd(const at::Tensor& ref, const at::Tensor& logits) {
    at::Tensor lr = at::log_softmax(ref, -1), lp = at::log_softmax(logits, -1);
    return (at::exp(lr) * (lr - lp)).sum() / static_cast<double>(ref.size(0));
}

}  // namespace

ET_API int et_column_mean_var(et_tensor x, et_tensor* mean, et_tensor* var) {
    return guarded("column_mean_var", [&] {
        at::NoGradGuard ng;
        out_ptr(mean, "mean");
        out_ptr(var, "var");
        const at::Tensor& X = in(x, "x");
        at::Tensor m = X.mean(0);
        at::Tensor v = X.size(0) > 1 ? X.var(0, /*unbiased=*/true) : at::zeros_like(m);
        emit_all({{mean, own(m, {&X})}, {var, own(v, {&X})}});
    });
}

ET_API int et_normalize(et_tensor x, et_tensor mean, et_tensor std_, double eps, et_tensor* y) {
    return guarded("normalize", [&] {
        at::NoGradGuard ng;
        out_ptr(y, "y");
        emit(y, own(normalize_fwd(in(x, "x"), in(mean, "mean"), in(std_, "std"), eps), {}));
    });
}

ET_API int et_normalize_backward(et_tensor gy, et_tensor std_, double eps, et_tensor* gx) {
    return guarded("normalize_backward", [&] {
        out_ptr(gx, "gx");
        const at::Tensor &G = in(gy, "gy"), &S = in(std_, "std");
        at::Tensor x = at::zeros_like(G).requires_grad_(true);
        auto g = autograd(normalize_fwd(x, at::zeros_like(S), S, eps), {x}, G);
        emit(gx, own(g[0], {&G, &S}));
    });
}

ET_API int et_hyper_block_activation(et_tensor y, et_tensor h, et_tensor bias, et_tensor scale, et_tensor shift, et_tensor* out) {
    return guarded("hyper_block_activation", [&] {
        at::NoGradGuard ng;
        out_ptr(out, "out");
        emit(out, own(hyper_block_fwd(in(y, "y"), in(h, "h"), in(bias, "bias"), in(scale, "scale"), in(shift, "shift")), {}));
    });
}

ET_API int et_hyper_block_activation_backward(et_tensor h, et_tensor bias, et_tensor scale, et_tensor go,
                                              et_tensor* gh, et_tensor* gbias, et_tensor* gscale, et_tensor* gshift) {
    return guarded("hyper_block_activation_backward", [&] {
        out_ptr(gh, "gh");
        out_ptr(gbias, "gbias");
        out_ptr(gscale, "gscale");
        out_ptr(gshift, "gshift");
        const at::Tensor &H = in(h, "h"), &B = in(bias, "bias"), &S = in(scale, "scale"), &G = in(go, "go");
        at::Tensor lh = leaf(H), lb = leaf(B), ls = leaf(S), lt = leaf(at::zeros_like(B));
        auto g = autograd(hyper_block_fwd(at::zeros_like(H), lh, lb, ls, lt), {lh, lb, ls, lt}, G);
        emit_all({{gh, own(g[0], {&H, &B, &S, &G})}, {gbias, own(g[1], {&H, &B, &S, &G})},
                  {gscale, own(g[2], {&H, &B, &S, &G})}, {gshift, own(g[3], {&H, &B, &S, &G})}});
    });
}

ET_API int et_value_diff(et_tensor k, et_tensor kt, et_tensor gt, et_tensor eta, et_tensor* d) {
    return guarded("value_diff", [&] {
        at::NoGradGuard ng;
        out_ptr(d, "d");
        emit(d, own(value_diff_fwd(in(k, "k"), in(kt, "kt"), in(gt, "gt"), in(eta, "eta")), {}));
    });
}

ET_API int et_value_diff_backward(et_tensor k, et_tensor kt, et_tensor gt, et_tensor eta, et_tensor gd,
                                  et_tensor* gkt, et_tensor* ggt, et_tensor* geta) {
    return guarded("value_diff_backward", [&] {
        out_ptr(gkt, "gkt");
        out_ptr(ggt, "ggt");
        out_ptr(geta, "geta");
        const at::Tensor &K = in(k, "k"), &KT = in(kt, "kt"), &GT = in(gt, "gt"), &E = in(eta, "eta"), &G = in(gd, "gd");
        at::Tensor lkt = leaf(KT), lgt = leaf(GT), le = leaf(E);
        auto g = autograd(value_diff_fwd(K, lkt, lgt, le), {lkt, lgt, le}, G);
        emit_all({{gkt, own(g[0], {&K, &KT, &GT, &E, &G})}, {ggt, own(g[1], {&K, &KT, &GT, &E, &G})}, {geta, own(g[2], {&K, &KT, &GT, &E, &G})}});
    });
}

ET_API int et_kl_divergence(et_tensor ref_logits, et_tensor logits, et_tensor* y) {
    return guarded("kl_divergence", [&] {
        at::NoGradGuard ng;
        out_ptr(y, "y");
        emit(y, own(kl_fwd(in(ref_logits, "refLogits"), in(logits, "logits")).reshape({1}), {}));
    });
}

ET_API int et_kl_divergence_backward(et_tensor ref_logits, et_tensor logits, et_tensor gy, et_tensor* gl) {
    return guarded("kl_divergence_backward", [&] {
        out_ptr(gl, "gl");
        const at::Tensor &R = in(ref_logits, "refLogits"), &L = in(logits, "logits"), &G = in(gy, "gy");
        at::Tensor ll = leaf(L);
        auto g = autograd(kl_fwd(R, ll).reshape({1}), {ll}, G);
        emit(gl, own(g[0], {&R, &L, &G}));
    });
}

// ---------------------------------------------------------------- symmetric positive-definite systems

ET_API int et_add_diagonal(et_tensor s, double value) {
    return guarded("add_diagonal", [&] {
        at::NoGradGuard ng;
        at::Tensor S = in(s, "s");
        S.diagonal().add_(value);
    });
}

// The lower factor; from the first column whose pivot fails (info = j + 1), the lower part of every column from j on is NaN.
ET_API int et_cholesky_factor(et_tensor s, et_tensor* l) {
    return guarded("cholesky_factor", [&] {
        at::NoGradGuard ng;
        out_ptr(l, "l");
        const at::Tensor& S = in(s, "s");
        at::Tensor lower = S.tril();
        auto r = at::linalg_cholesky_ex(lower + lower.tril(-1).transpose(0, 1), /*upper=*/false, /*check_errors=*/false);
        at::Tensor L = std::get<0>(r).tril();
        int64_t info = std::get<1>(r).item<int64_t>();
        if (info > 0) {
            L = L.clone();
            L.narrow(1, info - 1, L.size(1) - (info - 1)).fill_(std::numeric_limits<float>::quiet_NaN());
            L = L.tril();   // NaN in the lower part of those columns; the strict upper triangle stays 0
        }
        emit(l, own(L, {&S}));
    });
}

ET_API int et_cholesky_solve(et_tensor l, et_tensor b, et_tensor* x) {
    return guarded("cholesky_solve", [&] {
        at::NoGradGuard ng;
        out_ptr(x, "x");
        const at::Tensor &L = in(l, "l"), &B = in(b, "b");
        emit(x, own(at::cholesky_solve(B, L, /*upper=*/false), {&L, &B}));
    });
}
