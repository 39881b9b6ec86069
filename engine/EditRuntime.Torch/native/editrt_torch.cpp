// editrt_torch: the C ABI over libtorch (CPU) that EditRuntime's TorchBackend P/Invokes.
//
// Conventions
// - A tensor crosses the ABI as an opaque handle: a heap-allocated at::Tensor* (torch::Tensor). Every handle
//   this library hands out owns a fresh, contiguous tensor that aliases no input, so the caller
//   may write to it in place (fill, axpy, Adam) without touching anything else. et_free deletes it.
// - Every exported function returns an int status: 0 = ok, 1 = a torch error (c10::Error),
//   2 = another C++ exception, 3 = an unknown exception, 4 = a bad argument caught here (a null
//   handle, an unknown dtype code). The message is kept in a thread-local string that
//   et_last_error() returns (valid until the next failing call on the same thread). No C++
//   exception ever crosses the ABI.
// - Outputs are written through pointer arguments only after everything succeeded.
// - Forward ops run under NoGradGuard. Backward ops rebuild the forward graph from detached
//   aliases of the inputs with requires_grad_(true) and ask torch's autograd for the gradients
//   (torch::autograd::grad), so they check hand-written backward kernels independently. The
//   only direct backward ops are the broadcasts of Sum and RowSum.
// - Shapes are int64 arrays; dtype codes: 0 = float32, 1 = int32 (EditRuntime's DType enum).

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/grad_mode.h>
#include <torch/version.h>

#include <dlfcn.h>

#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <exception>
#include <limits>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#define ET_API extern "C" __attribute__((visibility("default")))

// Bumped whenever an exported signature changes; the C# side refuses a shim of another version.
static constexpr int kAbiVersion = 8;

using et_tensor = at::Tensor*;

namespace {

thread_local std::string g_last_error;

// The intra-op thread count set by et_set_num_threads. at::set_num_threads applies OpenMP's count
// to the calling thread only (others pick it up at their first parallel op, once), so every entry
// point re-applies it on a thread that has not seen the current value.
std::atomic<int> g_threads{0};
thread_local int t_threads = 0;

void sync_threads() {
    int n = g_threads.load(std::memory_order_relaxed);
    if (n > 0 && n != t_threads) {
        at::set_num_threads(n);
        t_threads = n;
    }
}

enum Status : int { kOk = 0, kTorchError = 1, kStdError = 2, kUnknownError = 3, kBadArgument = 4 };

struct BadArgument : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// Runs body; converts every exception into a status code and the thread-local message.
// Compute entry points first apply the current thread count to the calling thread.
template <bool Compute = true, class F>
int guarded(const char* op, F&& body) noexcept {
    try {
        if (Compute) sync_threads();
        body();
        return kOk;
    } catch (const BadArgument& e) {
        g_last_error = std::string(op) + ": " + e.what();
        return kBadArgument;
    } catch (const c10::Error& e) {
        g_last_error = std::string(op) + ": " + e.what_without_backtrace();
        return kTorchError;
    } catch (const std::exception& e) {
        g_last_error = std::string(op) + ": " + e.what();
        return kStdError;
    } catch (...) {
        g_last_error = std::string(op) + ": unknown C++ exception";
        return kUnknownError;
    }
}

const at::Tensor& in(et_tensor h, const char* name) {
    if (h == nullptr) throw BadArgument(std::string(name) + " is a null tensor handle");
    if (!h->defined()) throw BadArgument(std::string(name) + " is an undefined tensor");
    return *h;
}

template <class T>
T* out_ptr(T* p, const char* name) {
    if (p == nullptr) throw BadArgument(std::string("output pointer ") + name + " is null");
    return p;
}

at::ScalarType scalar_type(int dtype) {
    switch (dtype) {
        case 0: return at::kFloat;
        case 1: return at::kInt;
        default: throw BadArgument("unknown dtype code " + std::to_string(dtype) + " (0 = float32, 1 = int32)");
    }
}

std::vector<int64_t> dims(const int64_t* shape, int rank) {
    if (rank < 0) throw BadArgument("negative rank " + std::to_string(rank));
    if (rank > 0 && shape == nullptr) throw BadArgument("null shape pointer");
    std::vector<int64_t> v(shape, shape + rank);
    for (int64_t d : v)
        if (d < 0) throw BadArgument("negative dimension " + std::to_string(d));
    return v;
}

// What a handle may own: detached, contiguous, and sharing no storage with any input.
at::Tensor own(at::Tensor t, std::initializer_list<const at::Tensor*> inputs) {
    t = t.detach();
    if (!t.is_contiguous()) t = t.contiguous();
    for (const at::Tensor* i : inputs)
        if (i != nullptr && i->defined() && t.is_alias_of(*i)) {
            t = t.clone(at::MemoryFormat::Contiguous);
            break;
        }
    return t;
}

// A leaf for the rebuilt graph: an alias of the input (never written) that requires grad.
at::Tensor leaf(const at::Tensor& t) { return t.detach().requires_grad_(true); }

// Gradients of `out` with respect to `inputs` given the output gradient gy (torch's autograd).
std::vector<at::Tensor> autograd(const at::Tensor& out, const std::vector<at::Tensor>& inputs, const at::Tensor& gy) {
    TORCH_CHECK(out.sizes() == gy.sizes(), "the output gradient has shape ", gy.sizes(),
                " but the op's output has shape ", out.sizes());
    return torch::autograd::grad({out}, inputs, {gy}, /*retain_graph=*/false, /*create_graph=*/false,
                                 /*allow_unused=*/false);
}

void emit(et_tensor* dst, at::Tensor t) { *dst = new at::Tensor(std::move(t)); }

// Several outputs: all allocated first, then all written (none leaks if an allocation fails).
void emit_all(std::initializer_list<std::pair<et_tensor*, at::Tensor>> outs) {
    std::vector<std::unique_ptr<at::Tensor>> made;
    for (const auto& o : outs) made.emplace_back(new at::Tensor(o.second));
    size_t i = 0;
    for (const auto& o : outs) *o.first = made[i++].release();
}

// ---------------------------------------------------------------- forward definitions
// Each is used by the forward op and again, on leaves, by its backward.

at::Tensor matmul_fwd(const at::Tensor& a, const at::Tensor& b, bool ta, bool tb) {
    at::Tensor A = ta ? a.transpose(-2, -1) : a;
    at::Tensor B = tb ? b.transpose(-2, -1) : b;
    if (A.dim() == 2 && B.dim() == 2) return at::mm(A, B);
    if (A.dim() == 3 && B.dim() == 3) return at::bmm(A, B);
    if (A.dim() == 3 && B.dim() == 2) return at::matmul(A, B);  // B broadcast over the batch
    throw BadArgument("A and B must be rank 2 or 3 (rank-3 A may take a rank-2 B), got A rank " +
                      std::to_string(A.dim()) + " and B rank " + std::to_string(B.dim()));
}

at::Tensor gelu_fwd(const at::Tensor& x) { return at::gelu(x, "tanh"); }

at::Tensor layer_norm_fwd(const at::Tensor& x, const at::Tensor& g, const at::Tensor& b, double eps) {
    return at::layer_norm(x, {x.size(-1)}, g, b, eps);
}

at::Tensor softmax_fwd(const at::Tensor& x) { return at::softmax(x, -1); }

// softmax(q·kᵀ/√D + mask)·v with a causal mask and an optional key padding mask (B, T).
// Rows (queries) with no key to attend to get scores 0 before the softmax (so it stays finite)
// and probabilities 0 after it: their output is 0 and they pass no gradient, with no NaN.
at::Tensor attention_fwd(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor* key_mask) {
    TORCH_CHECK(q.dim() == 4, "q must be (B, H, T, D), got ", q.sizes());
    TORCH_CHECK(k.sizes() == q.sizes() && v.sizes() == q.sizes(), "q ", q.sizes(), ", k ", k.sizes(), " and v ",
                v.sizes(), " must have the same shape");
    const int64_t B = q.size(0), T = q.size(2), D = q.size(3);
    const double scale = 1.0 / std::sqrt(static_cast<double>(D));
    at::Tensor scores = at::matmul(q, k.transpose(-2, -1)) * scale;  // (B, H, T, T)
    at::Tensor allowed = at::ones({T, T}, q.options().dtype(at::kBool)).tril().view({1, 1, T, T});
    if (key_mask != nullptr) {
        TORCH_CHECK(key_mask->sizes() == at::IntArrayRef({B, T}), "key_mask must be (B, T) = (", B, ", ", T, "), got ",
                    key_mask->sizes());
        allowed = allowed.logical_and(key_mask->ne(0).view({B, 1, 1, T}));  // (B, 1, T, T)
    }
    at::Tensor any = allowed.any(-1, /*keepdim=*/true);  // (·, 1, T, 1)
    scores = scores.masked_fill(allowed.logical_not(), -std::numeric_limits<double>::infinity());
    scores = at::where(any, scores, at::zeros_like(scores));
    at::Tensor p = at::softmax(scores, -1);
    p = at::where(any, p, at::zeros_like(p));
    return at::matmul(p, v);
}

at::Tensor embedding_fwd(const at::Tensor& ids32, const at::Tensor& table) {
    return at::embedding(table, ids32.to(at::kLong));
}

// Mean over counted positions of the negative log-likelihood; 0 when no position counts.
at::Tensor cross_entropy_fwd(const at::Tensor& logits, const at::Tensor& targets32, int64_t ignore) {
    at::Tensor t = targets32.to(at::kLong);
    at::Tensor total = at::nll_loss(at::log_softmax(logits, -1), t, {}, at::Reduction::Sum, ignore);
    at::Tensor count = t.ne(ignore).sum().clamp_min(1).to(logits.scalar_type());
    return (total / count).reshape({1});
}

// MELO's per-sample LoRA: y[s] = scale·x[s]·A[id_s]·B[id_s]; a sample whose id is outside [0, blocks) gets zeros.
at::Tensor lora_fwd(const at::Tensor& x, const at::Tensor& a, const at::Tensor& b, const at::Tensor& ids32, double scale) {
    TORCH_CHECK(x.dim() == 3 && a.dim() == 3 && b.dim() == 3, "x, a and b must be rank 3");
    const int64_t blocks = a.size(0);
    at::Tensor ids = ids32.to(at::kLong);
    at::Tensor valid = ids.ge(0).logical_and(ids.lt(blocks));
    at::Tensor safe = at::where(valid, ids, at::zeros_like(ids));
    at::Tensor y = at::bmm(at::bmm(x, a.index_select(0, safe)), b.index_select(0, safe)) * scale;  // (S, T, out)
    return y * valid.to(x.scalar_type()).view({-1, 1, 1});
}

}  // namespace

// ====================================================================== library

ET_API const char* et_last_error() { return g_last_error.c_str(); }

ET_API int et_abi_version(int* version) {
    return guarded("abi_version", [&] { *out_ptr(version, "version") = kAbiVersion; });
}

// The version of the libtorch headers the shim was compiled against (TORCH_VERSION).
ET_API int et_torch_version(const char** version) {
    return guarded("torch_version", [&] { *out_ptr(version, "version") = TORCH_VERSION; });
}

// The OpenBLAS library torch loaded (libopenblas.so.0, or libblas.so.3 when that is OpenBLAS), or null.
static void* openblas_handle() {
    for (const char* lib : {"libopenblas.so.0", "libblas.so.3"}) {
        void* h = dlopen(lib, RTLD_LAZY | RTLD_NOLOAD);
        if (h == nullptr) continue;
        if (dlsym(h, "openblas_set_num_threads") != nullptr) return h;  // kept open: it is loaded anyway
        dlclose(h);
    }
    return nullptr;
}

// Intra-op threads n (at::set_num_threads, which also sets OpenMP's count) and OpenBLAS's own pool
// blas_n, set apart: OpenBLAS threads working beside OpenMP's spinning ones oversubscribe the cores
// (see TorchBackend.ResolveBlasThreads). *blas = 1 when torch's BLAS is OpenBLAS and its count was set.
ET_API int et_set_num_threads(int n, int blas_n, int* blas) {
    return guarded("set_num_threads", [&] {
        if (n < 1) throw BadArgument("thread count must be at least 1, got " + std::to_string(n));
        if (blas_n < 1) throw BadArgument("OpenBLAS thread count must be at least 1, got " + std::to_string(blas_n));
        at::set_num_threads(n);
        g_threads.store(n, std::memory_order_relaxed);
        t_threads = n;
        int applied = 0;
        if (void* h = openblas_handle()) {
            using SetThreads = void (*)(int);
            reinterpret_cast<SetThreads>(dlsym(h, "openblas_set_num_threads"))(blas_n);
            applied = 1;
        }
        if (blas != nullptr) *blas = applied;
    });
}

// The kernel family OpenBLAS runs (openblas_get_corename, e.g. "Haswell") and its thread count;
// *core = nullptr and *threads = 0 when torch's BLAS is not OpenBLAS.
ET_API int et_blas_info(const char** core, int* threads) {
    return guarded<false>("blas_info", [&] {
        *out_ptr(core, "core") = nullptr;
        *out_ptr(threads, "threads") = 0;
        void* h = openblas_handle();
        if (h == nullptr) return;
        using CoreName = char* (*)();
        using GetThreads = int (*)();
        if (auto f = reinterpret_cast<CoreName>(dlsym(h, "openblas_get_corename"))) *core = f();
        if (auto f = reinterpret_cast<GetThreads>(dlsym(h, "openblas_get_num_threads"))) *threads = f();
    });
}

ET_API int et_get_num_threads(int* n) {
    return guarded("get_num_threads", [&] { *out_ptr(n, "n") = at::get_num_threads(); });
}

// ====================================================================== tensors

ET_API int et_free(et_tensor t) {
    return guarded<false>("free", [&] { delete t; });  // also from .NET's finalizer thread: no thread set-up
}

// An uninitialised tensor; with poison, float32 is filled with NaN and int32 with NaN's bit
// pattern 0x7FC00000 (what the Vulkan backend's NaN fill leaves in an int buffer).
ET_API int et_empty(int dtype, const int64_t* shape, int rank, int poison, et_tensor* out) {
    return guarded("empty", [&] {
        out_ptr(out, "out");
        auto st = scalar_type(dtype);
        at::Tensor t = at::empty(dims(shape, rank), at::TensorOptions().dtype(st));
        if (poison) {
            if (st == at::kFloat) t.fill_(std::numeric_limits<double>::quiet_NaN());
            else t.fill_(static_cast<int64_t>(0x7FC00000));
        }
        emit(out, std::move(t));
    });
}

ET_API int et_from_data(int dtype, const void* data, const int64_t* shape, int rank, et_tensor* out) {
    return guarded("from_data", [&] {
        out_ptr(out, "out");
        auto st = scalar_type(dtype);
        at::Tensor t = at::empty(dims(shape, rank), at::TensorOptions().dtype(st));
        if (t.numel() > 0) {
            if (data == nullptr) throw BadArgument("null data pointer");
            std::memcpy(t.data_ptr(), data, static_cast<size_t>(t.numel()) * t.element_size());
        }
        emit(out, std::move(t));
    });
}

// Copies count elements of t (which must have that many, of that dtype) to dst.
ET_API int et_to_data(et_tensor t, int dtype, void* dst, int64_t count) {
    return guarded("to_data", [&] {
        const at::Tensor& x = in(t, "tensor");
        auto st = scalar_type(dtype);
        if (x.scalar_type() != st)
            throw BadArgument(std::string("tensor is ") + c10::toString(x.scalar_type()) + ", not " +
                              c10::toString(st));
        if (x.numel() != count)
            throw BadArgument("tensor has " + std::to_string(x.numel()) + " elements, not " + std::to_string(count));
        if (count == 0) return;
        if (dst == nullptr) throw BadArgument("null destination pointer");
        at::Tensor c = x.contiguous();
        std::memcpy(dst, c.data_ptr(), static_cast<size_t>(count) * c.element_size());
    });
}

// The tensor's rank and (up to max_rank) dimensions; its dtype code.
ET_API int et_shape(et_tensor t, int64_t* sizes, int max_rank, int* rank) {
    return guarded("shape", [&] {
        const at::Tensor& x = in(t, "tensor");
        *out_ptr(rank, "rank") = static_cast<int>(x.dim());
        if (x.dim() > max_rank)
            throw BadArgument("rank " + std::to_string(x.dim()) + " exceeds " + std::to_string(max_rank));
        for (int64_t i = 0; i < x.dim(); i++) out_ptr(sizes, "sizes")[i] = x.size(i);
    });
}

ET_API int et_dtype(et_tensor t, int* dtype) {
    return guarded("dtype", [&] {
        const at::Tensor& x = in(t, "tensor");
        int code = x.scalar_type() == at::kFloat ? 0 : x.scalar_type() == at::kInt ? 1 : -1;
        if (code < 0) throw BadArgument(std::string("unexpected dtype ") + c10::toString(x.scalar_type()));
        *out_ptr(dtype, "dtype") = code;
    });
}

// ====================================================================== elementwise

ET_API int et_fill(et_tensor x, float value) {
    return guarded("fill", [&] {
        at::NoGradGuard ng;
        at::Tensor t = in(x, "x");
        t.fill_(value);
    });
}

ET_API int et_reshape(et_tensor x, const int64_t* shape, int rank, et_tensor* out) {
    return guarded("reshape", [&] {
        out_ptr(out, "out");
        const at::Tensor& t = in(x, "x");
        emit(out, t.reshape(dims(shape, rank)).clone(at::MemoryFormat::Contiguous));
    });
}

ET_API int et_add(et_tensor a, et_tensor b, et_tensor* out) {
    return guarded("add", [&] {
        at::NoGradGuard ng;
        out_ptr(out, "out");
        emit(out, own(at::add(in(a, "a"), in(b, "b")), {}));
    });
}

ET_API int et_sub(et_tensor a, et_tensor b, et_tensor* out) {
    return guarded("sub", [&] {
        at::NoGradGuard ng;
        out_ptr(out, "out");
        emit(out, own(at::sub(in(a, "a"), in(b, "b")), {}));
    });
}

ET_API int et_mul(et_tensor a, et_tensor b, et_tensor* out) {
    return guarded("mul", [&] {
        at::NoGradGuard ng;
        out_ptr(out, "out");
        emit(out, own(at::mul(in(a, "a"), in(b, "b")), {}));
    });
}

ET_API int et_scale(et_tensor x, float alpha, et_tensor* out) {
    return guarded("scale", [&] {
        at::NoGradGuard ng;
        out_ptr(out, "out");
        emit(out, own(at::mul(in(x, "x"), alpha), {}));
    });
}

// In place: y += alpha·x.
ET_API int et_axpy(float alpha, et_tensor x, et_tensor y) {
    return guarded("axpy", [&] {
        at::NoGradGuard ng;
        const at::Tensor& xs = in(x, "x");
        at::Tensor ys = in(y, "y");
        ys.add_(xs, alpha);
    });
}

// ====================================================================== layout

// dst[dst_off + r*dst_stride + c] = src[src_off + r*src_stride + c]; bounds are checked by the caller (C#).
ET_API int et_copy_strided(et_tensor src, et_tensor dst, int64_t rows, int64_t cols, int64_t src_off,
                           int64_t src_stride, int64_t dst_off, int64_t dst_stride) {
    return guarded("copy_strided", [&] {
        at::NoGradGuard ng;
        const at::Tensor& s = in(src, "src");
        at::Tensor d = in(dst, "dst");
        if (rows == 0 || cols == 0) return;
        auto from = s.reshape({-1}).as_strided({rows, cols}, {src_stride, 1}, src_off);
        d.reshape({-1}).as_strided({rows, cols}, {dst_stride, 1}, dst_off).copy_(from);
    });
}

// (A, B, C, D) -> (A, C, B, D)
ET_API int et_transpose12(et_tensor x, et_tensor* out) {
    return guarded("transpose12", [&] {
        at::NoGradGuard ng;
        out_ptr(out, "out");
        emit(out, in(x, "x").transpose(1, 2).contiguous().clone(at::MemoryFormat::Contiguous));
    });
}

// ====================================================================== reductions

ET_API int et_sum(et_tensor x, et_tensor* out) {
    return guarded("sum", [&] {
        at::NoGradGuard ng;
        out_ptr(out, "out");
        emit(out, own(in(x, "x").sum().reshape({1}), {}));
    });
}

// Σ over the last dimension; a rank-1 input gives shape [1].
ET_API int et_row_sum(et_tensor x, et_tensor* out) {
    return guarded("row_sum", [&] {
        at::NoGradGuard ng;
        out_ptr(out, "out");
        const at::Tensor& t = in(x, "x");
        at::Tensor s = t.sum(-1);
        if (t.dim() == 1) s = s.reshape({1});
        emit(out, own(s, {}));
    });
}

ET_API int et_row_max(et_tensor x, et_tensor* out) {
    return guarded("row_max", [&] {
        at::NoGradGuard ng;
        out_ptr(out, "out");
        const at::Tensor& t = in(x, "x");
        at::Tensor m = std::get<0>(t.max(-1));
        if (t.dim() == 1) m = m.reshape({1});
        emit(out, own(m, {}));
    });
}

// y of `shape` filled with scale·gy[0] (a broadcast: direct, not through autograd).
ET_API int et_sum_backward(et_tensor gy, const int64_t* shape, int rank, float scale, et_tensor* out) {
    return guarded("sum_backward", [&] {
        at::NoGradGuard ng;
        out_ptr(out, "out");
        const at::Tensor& g = in(gy, "gy");
        if (g.numel() != 1) throw BadArgument("gy must have one element");
        emit(out, own((g.reshape({}) * scale).expand(dims(shape, rank)), {&g}));
    });
}

// y[r, c] = scale·gy[r] for y of `shape` (rows = all leading dimensions; one row for rank ≤ 1).
ET_API int et_row_sum_backward(et_tensor gy, const int64_t* shape, int rank, float scale, et_tensor* out) {
    return guarded("row_sum_backward", [&] {
        at::NoGradGuard ng;
        out_ptr(out, "out");
        const at::Tensor& g = in(gy, "gy");
        auto s = dims(shape, rank);
        at::Tensor y;
        if (s.empty()) {
            if (g.numel() != 1) throw BadArgument("gy must have one element for a scalar shape");
            y = g.reshape({}) * scale;
        } else {
            int64_t cols = s.back(), rows = 1;
            for (size_t i = 0; i + 1 < s.size(); i++) rows *= s[i];
            if (g.numel() != rows) throw BadArgument("gy must have one value per row");
            y = (g.reshape({rows, 1}) * scale).expand({rows, cols}).reshape(s);
        }
        emit(out, own(y, {&g}));
    });
}

// ====================================================================== matmul

ET_API int et_matmul(et_tensor a, et_tensor b, int trans_a, int trans_b, et_tensor* out) {
    return guarded("matmul", [&] {
        at::NoGradGuard ng;
        out_ptr(out, "out");
        emit(out, own(matmul_fwd(in(a, "A"), in(b, "B"), trans_a != 0, trans_b != 0), {}));
    });
}

ET_API int et_matmul_backward(et_tensor a, et_tensor b, et_tensor gy, int trans_a, int trans_b, et_tensor* grad_a,
                              et_tensor* grad_b) {
    return guarded("matmul_backward", [&] {
        out_ptr(grad_a, "grad_a");
        out_ptr(grad_b, "grad_b");
        const at::Tensor &A = in(a, "A"), &B = in(b, "B"), &G = in(gy, "gy");
        at::Tensor la = leaf(A), lb = leaf(B);
        auto g = autograd(matmul_fwd(la, lb, trans_a != 0, trans_b != 0), {la, lb}, G);
        emit_all({{grad_a, own(g[0], {&A, &B, &G})}, {grad_b, own(g[1], {&A, &B, &G})}});
    });
}

// ====================================================================== layers

ET_API int et_bias_add(et_tensor x, et_tensor bias, et_tensor* out) {
    return guarded("bias_add", [&] {
        at::NoGradGuard ng;
        out_ptr(out, "out");
        emit(out, own(in(x, "x") + in(bias, "bias"), {}));
    });
}

ET_API int et_bias_add_backward(et_tensor x, et_tensor bias, et_tensor gy, et_tensor* grad_x, et_tensor* grad_bias) {
    return guarded("bias_add_backward", [&] {
        out_ptr(grad_x, "grad_x");
        out_ptr(grad_bias, "grad_bias");
        const at::Tensor &X = in(x, "x"), &Bi = in(bias, "bias"), &G = in(gy, "gy");
        at::Tensor lx = leaf(X), lb = leaf(Bi);
        auto g = autograd(lx + lb, {lx, lb}, G);
        emit_all({{grad_x, own(g[0], {&X, &Bi, &G})}, {grad_bias, own(g[1], {&X, &Bi, &G})}});
    });
}

ET_API int et_gelu(et_tensor x, et_tensor* out) {
    return guarded("gelu", [&] {
        at::NoGradGuard ng;
        out_ptr(out, "out");
        emit(out, own(gelu_fwd(in(x, "x")), {}));
    });
}

ET_API int et_gelu_backward(et_tensor x, et_tensor gy, et_tensor* grad_x) {
    return guarded("gelu_backward", [&] {
        out_ptr(grad_x, "grad_x");
        const at::Tensor &X = in(x, "x"), &G = in(gy, "gy");
        at::Tensor lx = leaf(X);
        auto g = autograd(gelu_fwd(lx), {lx}, G);
        emit(grad_x, own(g[0], {&X, &G}));
    });
}

ET_API int et_layer_norm(et_tensor x, et_tensor gamma, et_tensor beta, float eps, et_tensor* out) {
    return guarded("layer_norm", [&] {
        at::NoGradGuard ng;
        out_ptr(out, "out");
        emit(out, own(layer_norm_fwd(in(x, "x"), in(gamma, "gamma"), in(beta, "beta"), eps), {}));
    });
}

ET_API int et_layer_norm_backward(et_tensor x, et_tensor gamma, et_tensor beta, et_tensor gy, float eps,
                                  et_tensor* grad_x, et_tensor* grad_gamma, et_tensor* grad_beta) {
    return guarded("layer_norm_backward", [&] {
        out_ptr(grad_x, "grad_x");
        out_ptr(grad_gamma, "grad_gamma");
        out_ptr(grad_beta, "grad_beta");
        const at::Tensor &X = in(x, "x"), &Ga = in(gamma, "gamma"), &Be = in(beta, "beta"), &G = in(gy, "gy");
        at::Tensor lx = leaf(X), lg = leaf(Ga), lb = leaf(Be);
        auto g = autograd(layer_norm_fwd(lx, lg, lb, eps), {lx, lg, lb}, G);
        emit_all({{grad_x, own(g[0], {&X, &Ga, &Be, &G})},
                  {grad_gamma, own(g[1], {&X, &Ga, &Be, &G})},
                  {grad_beta, own(g[2], {&X, &Ga, &Be, &G})}});
    });
}

ET_API int et_softmax(et_tensor x, et_tensor* out) {
    return guarded("softmax", [&] {
        at::NoGradGuard ng;
        out_ptr(out, "out");
        emit(out, own(softmax_fwd(in(x, "x")), {}));
    });
}

ET_API int et_softmax_backward(et_tensor x, et_tensor gy, et_tensor* grad_x) {
    return guarded("softmax_backward", [&] {
        out_ptr(grad_x, "grad_x");
        const at::Tensor &X = in(x, "x"), &G = in(gy, "gy");
        at::Tensor lx = leaf(X);
        auto g = autograd(softmax_fwd(lx), {lx}, G);
        emit(grad_x, own(g[0], {&X, &G}));
    });
}

// ====================================================================== sequence

// key_mask may be null (no padding).
ET_API int et_causal_attention(et_tensor q, et_tensor k, et_tensor v, et_tensor key_mask, et_tensor* out) {
    return guarded("causal_attention", [&] {
        at::NoGradGuard ng;
        out_ptr(out, "out");
        const at::Tensor* mask = key_mask != nullptr ? &in(key_mask, "key_mask") : nullptr;
        emit(out, own(attention_fwd(in(q, "q"), in(k, "k"), in(v, "v"), mask), {}));
    });
}

ET_API int et_causal_attention_backward(et_tensor q, et_tensor k, et_tensor v, et_tensor key_mask, et_tensor gy,
                                        et_tensor* grad_q, et_tensor* grad_k, et_tensor* grad_v) {
    return guarded("causal_attention_backward", [&] {
        out_ptr(grad_q, "grad_q");
        out_ptr(grad_k, "grad_k");
        out_ptr(grad_v, "grad_v");
        const at::Tensor &Q = in(q, "q"), &K = in(k, "k"), &V = in(v, "v"), &G = in(gy, "gy");
        const at::Tensor* mask = key_mask != nullptr ? &in(key_mask, "key_mask") : nullptr;
        at::Tensor lq = leaf(Q), lk = leaf(K), lv = leaf(V);
        auto g = autograd(attention_fwd(lq, lk, lv, mask), {lq, lk, lv}, G);
        emit_all({{grad_q, own(g[0], {&Q, &K, &V, &G})},
                  {grad_k, own(g[1], {&Q, &K, &V, &G})},
                  {grad_v, own(g[2], {&Q, &K, &V, &G})}});
    });
}

ET_API int et_embedding(et_tensor ids, et_tensor table, et_tensor* out) {
    return guarded("embedding", [&] {
        at::NoGradGuard ng;
        out_ptr(out, "out");
        emit(out, own(embedding_fwd(in(ids, "ids"), in(table, "table")), {}));
    });
}

// The table's gradient (V, C): autograd through embedding from a zero table leaf of that shape.
ET_API int et_embedding_backward(et_tensor ids, et_tensor gy, int64_t vocab_size, et_tensor* grad_table) {
    return guarded("embedding_backward", [&] {
        out_ptr(grad_table, "grad_table");
        const at::Tensor &I = in(ids, "ids"), &G = in(gy, "gy");
        if (vocab_size < 0) throw BadArgument("negative vocab_size");
        if (G.dim() < 1) throw BadArgument("gy must have at least one dimension");
        at::Tensor table = at::zeros({vocab_size, G.size(-1)}, G.options()).requires_grad_(true);
        auto g = autograd(embedding_fwd(I, table), {table}, G);
        emit(grad_table, own(g[0], {&I, &G}));
    });
}

ET_API int et_cross_entropy(et_tensor logits, et_tensor targets, int64_t ignore_index, et_tensor* out) {
    return guarded("cross_entropy", [&] {
        at::NoGradGuard ng;
        out_ptr(out, "out");
        emit(out, own(cross_entropy_fwd(in(logits, "logits"), in(targets, "targets"), ignore_index), {}));
    });
}

ET_API int et_cross_entropy_backward(et_tensor logits, et_tensor targets, et_tensor gy, int64_t ignore_index,
                                     et_tensor* grad_logits) {
    return guarded("cross_entropy_backward", [&] {
        out_ptr(grad_logits, "grad_logits");
        const at::Tensor &L = in(logits, "logits"), &T = in(targets, "targets"), &G = in(gy, "gy");
        at::Tensor ll = leaf(L);
        auto g = autograd(cross_entropy_fwd(ll, T, ignore_index), {ll}, G);
        emit(grad_logits, own(g[0], {&L, &T, &G}));
    });
}

// ====================================================================== editor ops (MELO)

ET_API int et_lora_forward(et_tensor x, et_tensor a, et_tensor b, et_tensor ids, float scale, et_tensor* out) {
    return guarded("lora_forward", [&] {
        at::NoGradGuard ng;
        out_ptr(out, "out");
        emit(out, own(lora_fwd(in(x, "x"), in(a, "a"), in(b, "b"), in(ids, "ids"), scale), {}));
    });
}

// Gradients by torch's autograd: the trained block enters as its own leaf for the samples routed to it
// (the rest of the banks are constants), so only that block's gradient is formed, never the whole bank's.
ET_API int et_lora_backward(et_tensor x, et_tensor a, et_tensor b, et_tensor ids, et_tensor gy, float scale, int64_t block,
                            et_tensor* grad_x, et_tensor* grad_a, et_tensor* grad_b) {
    return guarded("lora_backward", [&] {
        out_ptr(grad_x, "grad_x"); out_ptr(grad_a, "grad_a"); out_ptr(grad_b, "grad_b");
        const at::Tensor &X = in(x, "x"), &A = in(a, "a"), &B = in(b, "b"), &I = in(ids, "ids"), &G = in(gy, "gy");
        if (block < -1 || block >= A.size(0)) throw BadArgument("block " + std::to_string(block) + " is outside [-1, blocks)");
        const int64_t blocks = A.size(0);
        at::Tensor id = I.to(at::kLong);
        at::Tensor valid = id.ge(0).logical_and(id.lt(blocks));
        at::Tensor safe = at::where(valid, id, at::zeros_like(id));
        at::Tensor lx = leaf(X);
        at::Tensor asel = A.index_select(0, safe), bsel = B.index_select(0, safe);  // (S, in, k), (S, k, out)
        at::Tensor on = id.eq(block);
        bool trained = block >= 0 && on.any().item<bool>();
        at::Tensor la, lb;
        if (trained) {
            la = leaf(A[block]); lb = leaf(B[block]);
            asel = at::where(on.view({-1, 1, 1}), la.unsqueeze(0).expand_as(asel), asel);
            bsel = at::where(on.view({-1, 1, 1}), lb.unsqueeze(0).expand_as(bsel), bsel);
        }
        at::Tensor y = at::bmm(at::bmm(lx, asel), bsel) * scale * valid.to(X.scalar_type()).view({-1, 1, 1});
        auto g = autograd(y, trained ? std::vector<at::Tensor>{lx, la, lb} : std::vector<at::Tensor>{lx}, G);
        at::Tensor ga = trained ? g[1] : at::zeros({A.size(1), A.size(2)}, A.options());
        at::Tensor gb = trained ? g[2] : at::zeros({B.size(1), B.size(2)}, B.options());
        emit_all({{grad_x, own(g[0], {&X, &G})}, {grad_a, own(ga, {&A})}, {grad_b, own(gb, {&B})}});
    });
}

// Nearest centre (exact Euclidean distances, no matmul shortcut), radius test, nearest point of that cluster.
ET_API int et_cluster_lookup(et_tensor queries, et_tensor centres, et_tensor radii, et_tensor points, et_tensor point_info,
                             et_tensor* blocks_out, et_tensor* dist_out) {
    return guarded("cluster_lookup", [&] {
        at::NoGradGuard ng;
        out_ptr(blocks_out, "blocks"); out_ptr(dist_out, "dist");
        const at::Tensor &Q = in(queries, "queries"), &C = in(centres, "centres"), &R = in(radii, "radii"),
                         &P = in(points, "points"), &PI = in(point_info, "point_info");
        TORCH_CHECK(C.size(0) >= 1, "the index has no centre");
        auto nearest = at::cdist(Q, C, 2.0, /*donot_use_mm_for_euclid_dist*/ 2).min(1);
        at::Tensor d = std::get<0>(nearest), c = std::get<1>(nearest);
        at::Tensor inside = d.le(R.index_select(0, c));
        at::Tensor blocks = at::full({Q.size(0)}, -1, Q.options().dtype(at::kLong));
        if (P.size(0) > 0 && Q.size(0) > 0) {
            at::Tensor cl = PI.select(1, 0).to(at::kLong), bl = PI.select(1, 1).to(at::kLong);
            at::Tensor mine = cl.view({1, -1}).eq(c.view({-1, 1}));  // (Q, P)
            at::Tensor pd = at::cdist(Q, P, 2.0, 2).masked_fill(mine.logical_not(), std::numeric_limits<double>::infinity());
            at::Tensor p = std::get<1>(pd.min(1));
            blocks = at::where(inside.logical_and(mine.any(1)), bl.index_select(0, p), blocks);
        }
        emit_all({{blocks_out, blocks.to(at::kInt).contiguous()}, {dist_out, d.contiguous()}});
    });
}

// ====================================================================== optimizer

// PyTorch 1.13's _single_tensor_adam / _single_tensor_adamw, in place on param, m and v.
// Hyper-parameter arithmetic is in double, as in Python; grad is never modified.
ET_API int et_adam_step(et_tensor param, et_tensor grad, et_tensor m, et_tensor v, double lr, double beta1,
                        double beta2, double eps, double weight_decay, int decoupled, int64_t step) {
    return guarded("adam_step", [&] {
        at::NoGradGuard ng;
        if (step < 1) throw BadArgument("step must be at least 1 (1-based), got " + std::to_string(step));
        at::Tensor p = in(param, "param");
        at::Tensor g = in(grad, "grad");
        at::Tensor ma = in(m, "m");
        at::Tensor va = in(v, "v");
        TORCH_CHECK(g.sizes() == p.sizes() && ma.sizes() == p.sizes() && va.sizes() == p.sizes(),
                    "param, grad, m and v must have the same shape");
        if (weight_decay != 0) {
            if (decoupled) p.mul_(1 - lr * weight_decay);
            else g = g.add(p, weight_decay);  // a new tensor: the caller's grad is left as it was
        }
        ma.mul_(beta1).add_(g, 1 - beta1);
        va.mul_(beta2).addcmul_(g, g, 1 - beta2);
        const double bc1 = 1 - std::pow(beta1, static_cast<double>(step));
        const double bc2 = 1 - std::pow(beta2, static_cast<double>(step));
        const double step_size = lr / bc1;
        at::Tensor denom = (va.sqrt() / std::sqrt(bc2)).add_(eps);
        p.addcdiv_(ma, denom, -step_size);
    });
}

// ====================================================================== whole model (reference check)

// GPT-2's next-token loss as ONE torch graph and ONE backward, for checking the per-op tape:
// params in Gpt2Config.ParameterShapes() order (wte, wpe, 12 per layer, ln_f weight and bias),
// ids I32 (B, T), optional key_mask (B, T), targets I32 (B·T) with -100 ignored.
// Writes the loss [1] and one gradient per parameter.
ET_API int et_gpt2_loss_grads(const et_tensor* params, int n_params, int n_layer, int n_head, double eps, et_tensor ids,
                              et_tensor key_mask, et_tensor targets, et_tensor* loss_out, et_tensor* grads_out) {
    return guarded("gpt2_loss_grads", [&] {
        if (params == nullptr || grads_out == nullptr) throw BadArgument("null params or grads");
        if (n_params != 2 + 12 * n_layer + 2) throw BadArgument("expected 2 + 12·n_layer + 2 parameters");
        out_ptr(loss_out, "loss");
        std::vector<at::Tensor> p;
        for (int i = 0; i < n_params; i++) p.push_back(leaf(in(params[i], "param")));
        const at::Tensor& I = in(ids, "ids");
        const at::Tensor* mask = key_mask != nullptr ? &in(key_mask, "key_mask") : nullptr;
        const int64_t B = I.size(0), T = I.size(1), C = p[0].size(1), H = n_head, D = C / H;
        at::Tensor pos = at::arange(T, I.options().dtype(at::kLong)).view({1, T}).expand({B, T});
        at::Tensor x = at::embedding(p[0], I.to(at::kLong)) + at::embedding(p[1], pos);
        auto heads = [&](const at::Tensor& t) { return t.view({B, T, H, D}).transpose(1, 2); };
        for (int l = 0; l < n_layer; l++) {
            const at::Tensor* w = &p[2 + 12 * l];  // ln_1 w b, c_attn w b, c_proj w b, ln_2 w b, c_fc w b, mlp.c_proj w b
            at::Tensor a = at::layer_norm(x, {C}, w[0], w[1], eps);
            at::Tensor qkv = at::matmul(a, w[2]) + w[3];
            auto parts = qkv.split(C, -1);
            at::Tensor y = attention_fwd(heads(parts[0]), heads(parts[1]), heads(parts[2]), mask);
            x = x + at::matmul(y.transpose(1, 2).reshape({B, T, C}), w[4]) + w[5];
            at::Tensor m = at::layer_norm(x, {C}, w[6], w[7], eps);
            x = x + at::matmul(at::gelu(at::matmul(m, w[8]) + w[9], "tanh"), w[10]) + w[11];
        }
        x = at::layer_norm(x, {C}, p[n_params - 2], p[n_params - 1], eps);
        at::Tensor logits = at::matmul(x, p[0].t()).reshape({B * T, -1});
        at::Tensor loss = cross_entropy_fwd(logits, in(targets, "targets"), -100);
        auto g = torch::autograd::grad({loss}, p, {}, false, false, /*allow_unused=*/false);
        std::vector<std::unique_ptr<at::Tensor>> made;
        for (auto& t : g) made.emplace_back(new at::Tensor(t.detach().contiguous().clone()));
        made.emplace_back(new at::Tensor(loss.detach().clone()));
        for (int i = 0; i < n_params; i++) grads_out[i] = made[i].release();
        *loss_out = made[n_params].release();
    });
}

// ====================================================================== mixture of experts (MOMoE)

#include "editrt_torch_moe.h"

// ====================================================================== hyper-network editors (MEND, MALMEN) and SPD solves

#include "editrt_torch_hypernet.h"

// ====================================================================== LLaMA-family ops (RMSNorm, RoPE, SwiGLU's gated product)

#include "editrt_torch_llama.h"
