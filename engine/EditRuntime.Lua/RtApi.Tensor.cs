using EditRuntime.Backends;

namespace EditRuntime.Lua;

/// <summary>
/// A backend tensor as scripts hold it: either owned by the script (freed when collected, by t:free() or when the
/// host closes; counted against the tensor memory limit) or a view of a model's weight (model:weight), which
/// in-place methods (axpy_, fill_, copy_) change for real.
/// </summary>
internal sealed class TensorObject : LuaObject
{
    private readonly RtApi _api;
    private Tensor? _t;
    private readonly long _bytes;

    /// <param name="reserved">The bytes were already counted against the tensor limit by the caller.</param>
    public TensorObject(RtApi api, Tensor t, bool owned, ModelObject? model, string? label, bool reserved = false)
    {
        _api = api; _t = t; Owned = owned; Model = model; Label = label;
        _bytes = t.Count * 4L;
        if (owned && !reserved)
        {
            try { api.ReserveTensorBytes(_bytes); }
            catch { t.Dispose(); _t = null; throw; }
        }
    }

    public bool Owned { get; }
    public ModelObject? Model { get; }
    public string? Label { get; }
    public override string TypeName => "Tensor";

    public Tensor Value
    {
        get
        {
            if (_t is null) throw new LuaArgumentException("this Tensor was freed");
            if (Model is { Closed: true }) throw new LuaArgumentException($"the model of this tensor ({Model.Path}) was closed");
            return _t;
        }
    }

    public override string Describe() => _t is null ? "Tensor (freed)"
        : $"Tensor{_t.ShapeString} ({_t.Backend.Name}{(Label is null ? "" : ", " + Label)}{(Owned ? "" : ", the model's own")})";

    public override void OnCollected() => Free();

    public void Free()
    {
        if (_t is null) return;
        if (Owned)
        {
            _t.Dispose();
            _api.ReleaseTensorBytes(_bytes);
        }
        _t = null;
    }
}

internal sealed partial class RtApi
{
    private long _tensorBytes;

    internal void ReserveTensorBytes(long bytes)
    {
        if (_tensorBytes + bytes > Options.TensorMemoryLimitBytes)
            throw new InvalidOperationException($"tensor memory limit of {LuaHost.Mib(Options.TensorMemoryLimitBytes)} exceeded: {LuaHost.Mib(bytes)} more requested, " +
                                                $"{LuaHost.Mib(_tensorBytes)} held (free tensors with t:free(), or raise --tensor-memory-limit)");
        _tensorBytes += bytes;
    }

    internal void ReleaseTensorBytes(long bytes) => _tensorBytes = Math.Max(0, _tensorBytes - bytes);

    /// <summary>Runs an op whose result holds <paramref name="elements"/> floats (known from the input shapes) and
    /// wraps it as a script-owned tensor. The bytes are counted BEFORE the op runs, so an op that would pass the
    /// limit never allocates, and released again if the op fails (only what exists is counted).</summary>
    private TensorObject Own(long elements, Func<Tensor> op, string? label = null)
    {
        long bytes = elements * 4;
        ReserveTensorBytes(bytes);
        Tensor t;
        try { t = op(); }
        catch { ReleaseTensorBytes(bytes); throw; }
        // The op's own result decides what is held (a broadcast or a backend may differ from the estimate).
        ReleaseTensorBytes(bytes);
        return new TensorObject(this, t, owned: true, null, label);
    }

    /// <summary>Elements of op(A)·op(B): (M, N), or (B, M, N) for batched operands (the larger batch of the two).</summary>
    private static long MatmulElements(Tensor a, Tensor b, bool ta, bool tb)
    {
        if (a.Rank < 2 || b.Rank < 2) return Math.Max(a.Count, b.Count);
        long m = ta ? a.Shape[^1] : a.Shape[^2], n = tb ? b.Shape[^2] : b.Shape[^1];
        long batchA = a.Count / ((long)a.Shape[^1] * a.Shape[^2]), batchB = b.Count / ((long)b.Shape[^1] * b.Shape[^2]);
        return Math.Max(batchA, batchB) * m * n;
    }

    private void RegisterTensor()
    {
        Fn("rt.tensor.zeros", 1, 2, "rt.tensor.zeros(shape[, {backend=}])", c =>
        {
            var shape = Shape(c, 1);
            var be = Backend(Str(c.Options(2, "backend"), "backend", c));
            ReserveTensorBytes(Count(shape) * 4);
            Tensor? t = null;
            try
            {
                t = be.Empty(DType.F32, shape);
                be.Fill(t, 0f);
            }
            catch
            {
                // A tensor that could not be made holds nothing: it must not stay counted against the limit.
                t?.Dispose();
                ReleaseTensorBytes(Count(shape) * 4);
                throw;
            }
            return c.Return(new TensorObject(this, t, true, null, null, reserved: true));
        });
        Fn("rt.tensor.from_table", 2, 3, "rt.tensor.from_table(values, shape[, {backend=}])", c =>
        {
            var values = c.List(1, "values");
            var shape = Shape(c, 2);
            if (values.Count != Count(shape)) throw c.ArgError(1, $"{values.Count} values for shape {Tensor.Format(shape)} ({Count(shape)} elements)");
            var data = values.Select((v, i) => v switch { long l => (float)l, double d => (float)d, _ => throw c.ArgError(1, $"values[{i + 1}]: number expected, got {LuaValues.Describe(v)}") }).ToArray();
            var be = Backend(Str(c.Options(3, "backend"), "backend", c));
            return c.Return(Own(data.Length, () => be.FromArray(data, shape)));
        });

        static TensorObject Self(LuaCall c) => c.Self<TensorObject>();
        Tensor Other(LuaCall c, int i) => c.Object<TensorObject>(i, "Tensor").Value;

        _host.DefineType("Tensor",
        [
            Method("Tensor:shape", 0, 0, "t:shape()", c => c.Return(Self(c).Value.Shape.ToList())),
            Method("Tensor:numel", 0, 0, "t:numel()", c => c.Return(Self(c).Value.Count)),
            Method("Tensor:backend", 0, 0, "t:backend()", c => c.Return(Self(c).Value.Backend.Name)),
            Method("Tensor:to_table", 0, 0, "t:to_table()", c =>
            {
                var t = Self(c).Value;
                long need = t.Count * 24 + 64;
                if (need > _host.MemoryLeft) throw new InvalidOperationException($"a table of {t.Count} numbers (about {LuaHost.Mib(need)}) would exceed the Lua memory limit ({LuaHost.Mib(_host.MemoryLeft)} left)");
                return c.Return(t.Backend.ToFloatArray(t));
            }),
            Method("Tensor:item", 0, 0, "t:item()", c =>
            {
                var t = Self(c).Value;
                if (t.Count != 1) throw new InvalidOperationException($"item() needs a tensor of one element, this one is {t.ShapeString}");
                return c.Return((double)t.Backend.ToFloatArray(t)[0]);
            }),
            Method("Tensor:add", 1, 1, "t:add(other)", c => { var t = Self(c).Value; var o = Other(c, 1); return c.Return(Own(Math.Max(t.Count, o.Count), () => t.Backend.Add(t, o))); }),
            Method("Tensor:sub", 1, 1, "t:sub(other)", c => { var t = Self(c).Value; var o = Other(c, 1); return c.Return(Own(Math.Max(t.Count, o.Count), () => t.Backend.Sub(t, o))); }),
            Method("Tensor:mul", 1, 1, "t:mul(other)", c => { var t = Self(c).Value; var o = Other(c, 1); return c.Return(Own(Math.Max(t.Count, o.Count), () => t.Backend.Mul(t, o))); }),
            Method("Tensor:scale", 1, 1, "t:scale(alpha)", c => { var t = Self(c).Value; float a = (float)c.Number(1); return c.Return(Own(t.Count, () => t.Backend.Scale(t, a))); }),
            Method("Tensor:matmul", 1, 2, "t:matmul(other[, {trans_a=false, trans_b=false}])", c =>
            {
                var t = Self(c).Value;
                var b = Other(c, 1);
                var o = c.Options(2, "trans_a", "trans_b");
                bool ta = o.GetValueOrDefault("trans_a") is true, tb = o.GetValueOrDefault("trans_b") is true;
                return c.Return(Own(MatmulElements(t, b, ta, tb), () => t.Backend.Matmul(t, b, ta, tb)));
            }),
            Method("Tensor:sum", 0, 0, "t:sum()", c =>
            {
                var t = Self(c).Value;
                using var s = t.Backend.Sum(t);
                return c.Return((double)t.Backend.ToFloatArray(s)[0]);
            }),
            Method("Tensor:dot", 1, 1, "t:dot(other)", c =>
            {
                var t = Self(c).Value;
                using var p = t.Backend.Mul(t, Other(c, 1));
                using var s = t.Backend.Sum(p);
                return c.Return((double)t.Backend.ToFloatArray(s)[0]);
            }),
            Method("Tensor:norm", 0, 0, "t:norm()", c =>
            {
                var t = Self(c).Value;
                using var p = t.Backend.Mul(t, t);
                using var s = t.Backend.Sum(p);
                return c.Return(Math.Sqrt(t.Backend.ToFloatArray(s)[0]));
            }),
            Method("Tensor:reshape", 1, 1, "t:reshape(shape)", c => { var t = Self(c).Value; var shape = Shape(c, 1); return c.Return(Own(Count(shape), () => t.Backend.Reshape(t, shape))); }),
            Method("Tensor:clone", 0, 0, "t:clone()", c => { var t = Self(c).Value; return c.Return(Own(t.Count, () => t.Backend.Scale(t, 1f), Self(c).Label)); }),
            Method("Tensor:axpy_", 2, 2, "t:axpy_(alpha, x)", c =>
            {
                var t = Self(c).Value;
                t.Backend.Axpy((float)c.Number(1), Other(c, 2), t);
                lua_self(c);
                return 1;
            }),
            Method("Tensor:fill_", 1, 1, "t:fill_(value)", c =>
            {
                var t = Self(c).Value;
                t.Backend.Fill(t, (float)c.Number(1));
                lua_self(c);
                return 1;
            }),
            Method("Tensor:copy_", 1, 1, "t:copy_(source)", c =>
            {
                var t = Self(c).Value;
                var src = Other(c, 1);
                if (src.Count != t.Count) throw c.ArgError(1, $"source has {src.Count} elements ({src.ShapeString}), this tensor {t.Count} ({t.ShapeString})");
                t.Backend.CopyStrided(src, t, 1, (int)t.Count, 0, t.Count, 0, t.Count);
                lua_self(c);
                return 1;
            }),
            Method("Tensor:free", 0, 0, "t:free()", c =>
            {
                var s = Self(c);
                if (!s.Owned) throw new InvalidOperationException("this tensor is a model's weight (it lives as long as the model)");
                s.Free();
                _host.ForgetObject(s);
                return c.Nothing();
            }),
        ]);
    }

    /// <summary>Pushes self again (in-place methods return their tensor, for chaining).</summary>
    private static void lua_self(LuaCall c) => LuaNative.lua_pushvalue(c.State, 1);

    private static int[] Shape(LuaCall c, int i)
    {
        var list = c.List(i, "shape");
        if (list.Count is 0 or > 4) throw c.ArgError(i, $"a shape of 1 to 4 dimensions expected, got {list.Count}");
        var shape = list.Select((v, k) => v is long l && l > 0 && l <= int.MaxValue ? (int)l : throw c.ArgError(i, $"shape[{k + 1}]: a positive integer expected, got {LuaValues.Describe(v)} {v}")).ToArray();
        if (Count(shape) > int.MaxValue) throw c.ArgError(i, $"{Count(shape)} elements: at most {int.MaxValue}");
        return shape;
    }

    private static long Count(int[] shape) => shape.Aggregate(1L, (a, d) => a * d);
}
