using Bdh.Tensors.Kernels;

namespace Bdh.Autograd;

/// <summary>
/// Every differentiable op: the forward computes the value with a Bdh.Tensors kernel, and the
/// closure beside it adds the op's vector-Jacobian product into the inputs' gradients.
/// </summary>
public static class Ops
{
    /// <summary>op(a)·op(b) with batch broadcasting; shapes [..., m, k]·[..., k, n] → [..., m, n].</summary>
    public static Var<T> MatMul<T>(Var<T> a, Var<T> b, bool transA = false, bool transB = false)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        var c = Tensor<T>.Empty(Tensors.MatMul.OutputShape(a.Shape, transA, b.Shape, transB));
        Tensors.MatMul.Multiply(a.Value, transA, b.Value, transB, c, accumulate: false);
        return Var<T>.FromOp(c, "matmul", [a, b], y => SendMatMulGrads(a, b, transA, transB, y.Grad!));
    }

    /// <summary>
    /// relu(a·b) in one buffer: the ReLU runs in place on the product (BDH's xs and ys, the largest
    /// activations, would otherwise be kept twice, before and after the ReLU). Backward: dC = dy where y &gt; 0.
    /// </summary>
    public static Var<T> MatMulRelu<T>(Var<T> a, Var<T> b) where T : unmanaged, IFloatingPointIeee754<T>
    {
        var c = Tensor<T>.Empty(Tensors.MatMul.OutputShape(a.Shape, false, b.Shape, false));
        Tensors.MatMul.Multiply(a.Value, false, b.Value, false, c, accumulate: false);
        Parallelism.ForSlices(c.Length, 1, (s, n) => Elementwise.Relu<T>(c.Span.Slice(s, n), c.Span.Slice(s, n)));
        return Var<T>.FromOp(c, "matmul_relu", [a, b], y =>
        {
            var dc = y.Grad!; // dy becomes dC in place: nothing reads dy after this op's backward
            Parallelism.ForSlices(dc.Length, 1, (s, n) => Elementwise.ReluBackward<T>(y.Value.Span.Slice(s, n), dc.Span.Slice(s, n), dc.Span.Slice(s, n), accumulate: false));
            SendMatMulGrads(a, b, false, false, dc);
        });
    }

    /// <summary>dA (+)= dC·op(B)ᵀ and dB (+)= op(A)ᵀ·dC, each in the orientation its operand is stored in.</summary>
    private static void SendMatMulGrads<T>(Var<T> a, Var<T> b, bool transA, bool transB, Tensor<T> dc) where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (a.RequiresGrad)
        {
            var (da, add) = Var<T>.GradSlot(a);
            if (transA) Tensors.MatMul.Multiply(b.Value, transB, dc, true, da, add);  // dA = op(B)·dCᵀ
            else Tensors.MatMul.Multiply(dc, false, b.Value, !transB, da, add);       // dA = dC·op(B)ᵀ
        }
        if (b.RequiresGrad)
        {
            var (db, add) = Var<T>.GradSlot(b);
            if (transB) Tensors.MatMul.Multiply(dc, true, a.Value, transA, db, add);  // dB = dCᵀ·op(A)
            else Tensors.MatMul.Multiply(a.Value, !transA, dc, false, db, add);       // dB = op(A)ᵀ·dC
        }
    }

    /// <summary>a + b with broadcasting; each gradient is summed back to its input's shape.</summary>
    public static Var<T> Add<T>(Var<T> a, Var<T> b) where T : unmanaged, IFloatingPointIeee754<T> =>
        Var<T>.FromOp(BroadcastOps.Add(a.Value, b.Value), "add", [a, b], y =>
        {
            if (a.RequiresGrad) BroadcastOps.SumInto(y.Grad!, Var<T>.GradFor(a));
            if (b.RequiresGrad) BroadcastOps.SumInto(y.Grad!, Var<T>.GradFor(b));
        });

    /// <summary>x summed over the dimensions where <paramref name="shape"/> has 1 (x must broadcast from it); dx = dy broadcast back.</summary>
    public static Var<T> SumTo<T>(Var<T> x, params int[] shape) where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (!Broadcast.Shape(shape, x.Shape).AsSpan().SequenceEqual(x.Shape))
            throw new ArgumentException($"cannot sum {Tensor<T>.Format(x.Shape)} to {Tensor<T>.Format(shape)}");
        var y = Tensor<T>.Zeros(shape);
        BroadcastOps.SumInto(x.Value, y);
        return Var<T>.FromOp(y, "sum_to", [x], o =>
        {
            var (dx, accumulate) = Var<T>.GradSlot(x);
            BroadcastOps.BroadcastInto(o.Grad!, dx, accumulate);
        });
    }

    /// <summary>a ⊙ b with broadcasting: da = Σ dy ⊙ b, db = Σ dy ⊙ a.</summary>
    public static Var<T> Mul<T>(Var<T> a, Var<T> b) where T : unmanaged, IFloatingPointIeee754<T> =>
        Var<T>.FromOp(BroadcastOps.Multiply(a.Value, b.Value), "mul", [a, b], y =>
        {
            if (a.RequiresGrad) SumProductInto(y.Grad!, b.Value, a);
            if (b.RequiresGrad) SumProductInto(y.Grad!, a.Value, b);
        });

    /// <summary>x's gradient (+)= Σ dy ⊙ other over the dimensions x was broadcast along.</summary>
    private static void SumProductInto<T>(Tensor<T> dy, Tensor<T> other, Var<T> x) where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (dy.Shape.AsSpan().SequenceEqual(other.Shape) && dy.Shape.AsSpan().SequenceEqual(x.Shape))
        {
            // xs ⊙ ys: no broadcast, so one fused pass per slice
            var (grad, add) = Var<T>.GradSlot(x);
            Parallelism.ForSlices(grad.Length, 1, (s, n) =>
            {
                if (add) TP.MultiplyAdd<T>(dy.Span.Slice(s, n), other.Span.Slice(s, n), grad.Span.Slice(s, n), grad.Span.Slice(s, n));
                else TP.Multiply<T>(dy.Span.Slice(s, n), other.Span.Slice(s, n), grad.Span.Slice(s, n));
            });
            return;
        }
        using var product = BroadcastOps.Multiply(dy, other);
        BroadcastOps.SumInto(product, Var<T>.GradFor(x));
    }

    public static Var<T> Relu<T>(Var<T> x) where T : unmanaged, IFloatingPointIeee754<T>
    {
        var y = Tensor<T>.Empty(x.Shape);
        Parallelism.ForSlices(y.Length, 1, (s, n) => Elementwise.Relu<T>(x.Value.Span.Slice(s, n), y.Span.Slice(s, n)));
        return Var<T>.FromOp(y, "relu", [x], o =>
        {
            var (dx, add) = Var<T>.GradSlot(x);
            Parallelism.ForSlices(dx.Length, 1, (s, n) => Elementwise.ReluBackward<T>(o.Value.Span.Slice(s, n), o.Grad!.Span.Slice(s, n), dx.Span.Slice(s, n), add));
        });
    }

    /// <summary>LayerNorm over the last dimension, no affine parameters.</summary>
    public static Var<T> LayerNorm<T>(Var<T> x, double eps = 1e-5) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int d = x.Shape[^1];
        var y = Tensor<T>.Empty(x.Shape);
        var rstd = Tensor<T>.Empty(x.Value.Length / d);
        Parallelism.ForSlices(y.Length, d, (s, n) =>
            Tensors.Kernels.LayerNorm.Forward<T>(x.Value.Span.Slice(s, n), y.Span.Slice(s, n), rstd.Span.Slice(s / d, n / d), d, T.CreateTruncating(eps)));
        return Var<T>.FromOp(y, "layernorm", [x], o =>
        {
            var (dx, accumulate) = Var<T>.GradSlot(x);
            Parallelism.ForSlices(dx.Length, d, (s, n) =>
                Tensors.Kernels.LayerNorm.Backward<T>(o.Grad!.Span.Slice(s, n), o.Value.Span.Slice(s, n), rstd.Span.Slice(s / d, n / d), dx.Span.Slice(s, n), d, accumulate));
        }, rstd);
    }

    /// <summary>Rotary embedding of x [..., table.Length, table.N] (see <see cref="Tensors.Kernels.Rope"/>).</summary>
    public static Var<T> Rope<T>(Var<T> x, RopeTable table) where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (x.Shape[^1] != table.N || x.Shape[^2] != table.Length)
            throw new ArgumentException($"rope table is [{table.Length}, {table.N}], input {Tensor<T>.Format(x.Shape)}");
        var y = Tensor<T>.Empty(x.Shape);
        int n = table.N;
        Parallelism.ForSlices(y.Length, n, (s, len) => Tensors.Kernels.Rope.Forward<T>(x.Value.Span.Slice(s, len), y.Span.Slice(s, len), table, s / n));
        return Var<T>.FromOp(y, "rope", [x], o =>
        {
            var (dx, accumulate) = Var<T>.GradSlot(x);
            Parallelism.ForSlices(dx.Length, n, (s, len) => Tensors.Kernels.Rope.Backward<T>(o.Grad!.Span.Slice(s, len), dx.Span.Slice(s, len), table, s / n, accumulate));
        });
    }

    /// <summary>tril(q qᵀ, −1)·v per head and sequence: q [H,B,T,N], v [1|H,B,T,D] → [H,B,T,D].</summary>
    public static Var<T> CausalLinearAttention<T>(Var<T> q, Var<T> v) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int h = q.Shape[0], b = q.Shape[1], t = q.Shape[2];
        var scores = Tensor<T>.Empty(h, b, t, t);
        var y = Tensor<T>.Empty(h, b, t, v.Shape[^1]);
        Tensors.Kernels.CausalLinearAttention.Forward(q.Value, v.Value, scores, y);
        return Var<T>.FromOp(y, "attention", [q, v], o =>
        {
            using var dScores = Tensor<T>.Empty(scores.Shape);
            Tensors.Kernels.CausalLinearAttention.Backward(q.Value, v.Value, scores, o.Grad!,
                q.RequiresGrad ? Var<T>.GradFor(q) : null, v.RequiresGrad ? Var<T>.GradFor(v) : null, dScores);
        }, scores);
    }

    /// <summary>The same storage seen with another shape (no copy).</summary>
    public static Var<T> Reshape<T>(Var<T> x, params int[] shape) where T : unmanaged, IFloatingPointIeee754<T> =>
        Var<T>.FromOp(x.Value.Reshape(shape), "reshape", [x], o =>
        {
            var dx = Var<T>.GradFor(x).Span;
            TP.Add(dx, o.Grad!.Span, dx);
        });

    /// <summary>Swaps two dimensions (a copy; its backward swaps them back).</summary>
    public static Var<T> Transpose<T>(Var<T> x, int d0, int d1) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int[] shape = (int[])x.Shape.Clone();
        (shape[d0], shape[d1]) = (shape[d1], shape[d0]);
        var y = Tensor<T>.Empty(shape);
        BroadcastOps.SwapAxes(x.Value, d0, d1, y, accumulate: false);
        return Var<T>.FromOp(y, "transpose", [x], o => BroadcastOps.SwapAxes(o.Grad!, d0, d1, Var<T>.GradFor(x), accumulate: true));
    }

    /// <summary>Rows of weight [V, D] picked by ids: → [..idsShape, D].</summary>
    public static Var<T> Embedding<T>(Var<T> weight, int[] ids, params int[] idsShape) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int d = weight.Shape[1];
        var y = Tensor<T>.Empty([.. idsShape, d]);
        if (y.Length != ids.Length * d) throw new ArgumentException($"{ids.Length} ids do not fill shape {Tensor<T>.Format(idsShape)}");
        Elementwise.EmbeddingForward<T>(weight.Value.Span, ids, y.Span, d);
        return Var<T>.FromOp(y, "embedding", [weight], o => Elementwise.EmbeddingBackward<T>(o.Grad!.Span, ids, Var<T>.GradFor(weight).Span, d));
    }

    /// <summary>Inverted dropout with probability p; the identity when p is 0 or no rng is given (evaluation).</summary>
    public static Var<T> Dropout<T>(Var<T> x, double p, Rng? rng) where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (p == 0 || rng is null) return x;
        ulong seed = rng.NextUInt64(); // one draw per call: the mask is a hash of (seed, index), drawn again by the backward
        var y = Tensor<T>.Empty(x.Shape);
        Parallelism.ForSlices(y.Length, 1, (s, n) => Elementwise.Dropout<T>(seed, p, x.Value.Span.Slice(s, n), y.Span.Slice(s, n), s, accumulate: false));
        return Var<T>.FromOp(y, "dropout", [x], o =>
        {
            var (dx, add) = Var<T>.GradSlot(x);
            Parallelism.ForSlices(dx.Length, 1, (s, n) => Elementwise.Dropout<T>(seed, p, o.Grad!.Span.Slice(s, n), dx.Span.Slice(s, n), s, add));
        });
    }

    /// <summary>Mean cross-entropy of logits [..., V] against targets (one per row) → scalar [1].</summary>
    public static Var<T> CrossEntropy<T>(Var<T> logits, int[] targets) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int vocab = logits.Shape[^1];
        if (logits.Value.Length != targets.Length * vocab) throw new ArgumentException($"{targets.Length} targets for logits {Tensor<T>.Format(logits.Shape)}");
        // Rows split over the cores; the per-row losses are then summed in one fixed order (any thread count, same bits).
        using var rowLoss = Tensor<T>.Empty(targets.Length);
        Parallelism.ForSlices(logits.Value.Length, vocab, (s, n) => Tensors.Kernels.CrossEntropy.RowLosses<T>(
            logits.Value.Span.Slice(s, n), targets.AsSpan(s / vocab, n / vocab), vocab, rowLoss.Span.Slice(s / vocab, n / vocab)));
        var loss = Tensor<T>.Empty(1);
        loss.Span[0] = TP.Sum<T>(rowLoss.Span) / T.CreateTruncating(targets.Length);
        return Var<T>.FromOp(loss, "cross_entropy", [logits], o =>
        {
            T scale = o.Grad!.Span[0] / T.CreateTruncating(targets.Length);
            var (dLogits, accumulate) = Var<T>.GradSlot(logits);
            Parallelism.ForSlices(dLogits.Length, vocab, (s, n) => Tensors.Kernels.CrossEntropy.Backward<T>(
                logits.Value.Span.Slice(s, n), targets.AsSpan(s / vocab, n / vocab), vocab, scale, dLogits.Span.Slice(s, n), accumulate));
        });
    }

    /// <summary>Σ x → [1].</summary>
    public static Var<T> Sum<T>(Var<T> x) where T : unmanaged, IFloatingPointIeee754<T> => Scaled(x, T.One, "sum");

    /// <summary>Σ x / n → [1].</summary>
    public static Var<T> Mean<T>(Var<T> x) where T : unmanaged, IFloatingPointIeee754<T> =>
        Scaled(x, T.One / T.CreateTruncating(x.Value.Length), "mean");

    private static Var<T> Scaled<T>(Var<T> x, T scale, string op) where T : unmanaged, IFloatingPointIeee754<T>
    {
        var y = Tensor<T>.Empty(1);
        y.Span[0] = TP.Sum<T>(x.Value.Span) * scale;
        return Var<T>.FromOp(y, op, [x], o =>
        {
            var dx = Var<T>.GradFor(x).Span;
            TP.Add(dx, o.Grad!.Span[0] * scale, dx);
        });
    }
}
