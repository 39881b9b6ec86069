// Mixture-of-experts reference ops (MOMoE). Not a stand-alone header: editrt_torch.cpp includes it at its
// end, so these functions share that translation unit's helpers (guarded, in, emit, leaf, autograd, own).
// Forward definitions below are used by the forward ops and again, on leaves, by their backward ops
// (torch's autograd), as everywhere in the shim. Index tensors cross the ABI as int32.

namespace {

// Softmax over E, the k largest in descending order, the probabilities at those experts. A stable
// descending sort, not torch.topk: topk does not promise which of tied logits comes first, the op's
// contract (and the Vulkan kernel) gives ties to the lowest index.
std::pair<at::Tensor, at::Tensor> moe_gate_fwd(const at::Tensor& logits, int64_t k) {
    TORCH_CHECK(logits.dim() == 2, "logits must be (N, E), got ", logits.sizes());
    TORCH_CHECK(k >= 1 && k <= logits.size(1), "k = ", k, " must be in [1, E = ", logits.size(1), "]");
    at::Tensor idx = std::get<1>(at::sort(logits.detach(), /*stable=*/true, /*dim=*/-1, /*descending=*/true)).narrow(1, 0, k).contiguous();
    at::Tensor w = at::softmax(logits, -1).gather(1, idx);
    return {w, idx};
}

at::Tensor moe_dispatch_fwd(const at::Tensor& x, const at::Tensor& order32, int64_t k) {
    return x.index_select(0, at::div(order32.to(at::kLong), k, "floor"));
}

// Rows of group e are offsets[e] .. offsets[e+1]; rows from offsets[E] on are in no group (zero output).
at::Tensor grouped_matmul_fwd(const at::Tensor& xs, const at::Tensor& w, const at::Tensor& offsets32) {
    TORCH_CHECK(xs.dim() == 2 && w.dim() == 3 && w.size(1) == xs.size(1), "xs (M, K) and w (E, K, N): got ", xs.sizes(), " and ", w.sizes());
    const int64_t E = w.size(0), M = xs.size(0);
    TORCH_CHECK(offsets32.numel() == E + 1, "offsets must have E + 1 = ", E + 1, " entries");
    at::Tensor off = offsets32.to(at::kLong).contiguous();
    const int64_t* o = off.data_ptr<int64_t>();
    std::vector<at::Tensor> parts;
    for (int64_t e = 0; e < E; e++) {
        TORCH_CHECK(o[e] >= 0 && o[e] <= o[e + 1] && o[e + 1] <= M, "offsets must be non-decreasing within [0, M]");
        parts.push_back(at::matmul(xs.narrow(0, o[e], o[e + 1] - o[e]), w[e]));
    }
    parts.push_back(at::zeros({M - o[E], w.size(2)}, xs.options()));
    return at::cat(parts, 0);
}

at::Tensor moe_combine_fwd(const at::Tensor& ys, const at::Tensor& weights, const at::Tensor& position32) {
    const int64_t N = weights.size(0), k = weights.size(1);
    at::Tensor picked = ys.index_select(0, position32.to(at::kLong)).view({N, k, ys.size(1)});
    return (picked * weights.unsqueeze(-1)).sum(1);
}

}  // namespace

ET_API int et_moe_gate_topk(et_tensor logits, int64_t k, et_tensor* weights, et_tensor* indices) {
    return guarded("moe_gate_topk", [&] {
        at::NoGradGuard ng;
        out_ptr(weights, "weights");
        out_ptr(indices, "indices");
        auto r = moe_gate_fwd(in(logits, "logits"), k);
        emit_all({{weights, own(r.first, {})}, {indices, own(r.second.to(at::kInt), {})}});
    });
}

ET_API int et_moe_gate_topk_backward(et_tensor logits, int64_t k, et_tensor gw, et_tensor* grad_logits) {
    return guarded("moe_gate_topk_backward", [&] {
        out_ptr(grad_logits, "grad_logits");
        const at::Tensor &L = in(logits, "logits"), &G = in(gw, "gw");
        at::Tensor ll = leaf(L);
        auto g = autograd(moe_gate_fwd(ll, k).first, {ll}, G);
        emit(grad_logits, own(g[0], {&L, &G}));
    });
}

// Stable sort of the entries by expert (an index outside [0, E) sorts after every expert: dropped).
ET_API int et_moe_route(et_tensor indices, int64_t experts, et_tensor* order, et_tensor* position, et_tensor* offsets) {
    return guarded("moe_route", [&] {
        at::NoGradGuard ng;
        out_ptr(order, "order");
        out_ptr(position, "position");
        out_ptr(offsets, "offsets");
        if (experts < 1) throw BadArgument("experts must be at least 1");
        at::Tensor flat = in(indices, "indices").reshape({-1}).to(at::kLong);
        at::Tensor key = at::where(flat.ge(0).logical_and(flat.lt(experts)), flat, at::full_like(flat, experts));
        at::Tensor ord = std::get<1>(at::sort(key, /*stable=*/true, /*dim=*/0, /*descending=*/false));
        at::Tensor pos = at::empty_like(ord);
        pos.index_put_({ord}, at::arange(ord.numel(), ord.options()));
        at::Tensor counts = at::bincount(key, {}, experts + 1);
        at::Tensor off = at::cat({at::zeros({1}, counts.options()), counts.cumsum(0)}).narrow(0, 0, experts + 1);
        emit_all({{order, own(ord.to(at::kInt), {})}, {position, own(pos.to(at::kInt), {})}, {offsets, own(off.to(at::kInt), {})}});
    });
}

ET_API int et_moe_dispatch(et_tensor x, et_tensor order, int64_t k, et_tensor* xs) {
    return guarded("moe_dispatch", [&] {
        at::NoGradGuard ng;
        out_ptr(xs, "xs");
        emit(xs, own(moe_dispatch_fwd(in(x, "x"), in(order, "order"), k), {}));
    });
}

// Through autograd: order is rebuilt as the inverse of position, x as a zero leaf of shape (M / k, C).
ET_API int et_moe_dispatch_backward(et_tensor position, et_tensor gxs, int64_t k, et_tensor* gx) {
    return guarded("moe_dispatch_backward", [&] {
        out_ptr(gx, "gx");
        const at::Tensor &P = in(position, "position"), &G = in(gxs, "gxs");
        at::Tensor pos = P.to(at::kLong);
        at::Tensor ord = at::empty_like(pos);
        ord.index_put_({pos}, at::arange(pos.numel(), pos.options()));
        at::Tensor x = at::zeros({G.size(0) / k, G.size(1)}, G.options()).requires_grad_(true);
        auto g = autograd(moe_dispatch_fwd(x, ord.to(at::kInt), k), {x}, G);
        emit(gx, own(g[0], {&P, &G}));
    });
}

ET_API int et_grouped_matmul(et_tensor xs, et_tensor w, et_tensor offsets, et_tensor* y) {
    return guarded("grouped_matmul", [&] {
        at::NoGradGuard ng;
        out_ptr(y, "y");
        emit(y, own(grouped_matmul_fwd(in(xs, "xs"), in(w, "w"), in(offsets, "offsets")), {}));
    });
}

ET_API int et_grouped_matmul_backward(et_tensor xs, et_tensor w, et_tensor offsets, et_tensor gy, et_tensor* gxs, et_tensor* gw) {
    return guarded("grouped_matmul_backward", [&] {
        out_ptr(gxs, "gxs");
        out_ptr(gw, "gw");
        const at::Tensor &X = in(xs, "xs"), &W = in(w, "w"), &O = in(offsets, "offsets"), &G = in(gy, "gy");
        at::Tensor lx = leaf(X), lw = leaf(W);
        auto g = autograd(grouped_matmul_fwd(lx, lw, O), {lx, lw}, G);
        emit_all({{gxs, own(g[0], {&X, &W, &G})}, {gw, own(g[1], {&X, &W, &G})}});
    });
}

ET_API int et_moe_combine(et_tensor ys, et_tensor weights, et_tensor position, et_tensor* y) {
    return guarded("moe_combine", [&] {
        at::NoGradGuard ng;
        out_ptr(y, "y");
        emit(y, own(moe_combine_fwd(in(ys, "ys"), in(weights, "weights"), in(position, "position")), {}));
    });
}

ET_API int et_moe_combine_backward(et_tensor ys, et_tensor weights, et_tensor position, et_tensor gy, et_tensor* gys, et_tensor* gw) {
    return guarded("moe_combine_backward", [&] {
        out_ptr(gys, "gys");
        out_ptr(gw, "gw");
        const at::Tensor &Y = in(ys, "ys"), &W = in(weights, "weights"), &P = in(position, "position"), &G = in(gy, "gy");
        at::Tensor ly = leaf(Y), lw = leaf(W);
        auto g = autograd(moe_combine_fwd(ly, lw, P), {ly, lw}, G);
        emit_all({{gys, own(g[0], {&Y, &W, &G})}, {gw, own(g[1], {&Y, &W, &G})}});
    });
}
