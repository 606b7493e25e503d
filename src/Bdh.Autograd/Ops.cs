using Bdh.Tensors.Kernels;

namespace Bdh.Autograd;

/// <summary>
/// Every differentiable op, micrograd-style: the forward computes the value with a Bdh.Tensors kernel, and the
/// closure beside it hands each input that needs one its gradient through the input's <see cref="GradSlot{T}"/>,
/// which the backward kernel writes or adds to, as the slot says. The kernels split their work over the cores.
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
    /// a·b summed to <paramref name="shape"/> over the batch dimensions where it has 1 (BDH's decoder: Σ_h xy_h·decoder_h,
    /// the heads concatenated). The GEMM adds each product into the output in batch order, so the products of the single
    /// batch entries are never stored. Backward as MatMul's, with dY read broadcast over the summed dimensions.
    /// </summary>
    public static Var<T> MatMulSummed<T>(Var<T> a, Var<T> b, params int[] shape) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int[] full = Tensors.MatMul.OutputShape(a.Shape, false, b.Shape, false);
        if (shape.Length != full.Length || !Broadcast.Shape(shape, full).AsSpan().SequenceEqual(full) || !shape.AsSpan(shape.Length - 2).SequenceEqual(full.AsSpan(full.Length - 2)))
            throw new ArgumentException($"cannot sum the product {Tensor<T>.Format(full)} to {Tensor<T>.Format(shape)}");
        var c = Tensor<T>.Empty(shape);
        Tensors.MatMul.Multiply(a.ListedValue, false, b.Value, false, c, accumulate: false); // a's lists, where they are its only copy (BDH's xy)
        return Var<T>.FromOp(c, "matmul_summed", [a, b], y => SendMatMulGrads(a, b, false, false, y.Grad!));
    }

    /// <summary>
    /// relu(a·op(b)) in one buffer, op(b) = bᵀ (b given as [.., n, k]) with <paramref name="transB"/>: the GEMM applies the
    /// ReLU as it stores the product (BDH's xs and ys, the largest activations, would otherwise be kept twice, before and
    /// after the ReLU, or pass through memory twice). Backward: dC = dy where y &gt; 0. The ops that read y in their own
    /// backward (<see cref="Rope{T}"/>, <see cref="DropoutOfProduct{T}"/>) apply that mask as they store dy
    /// (<see cref="Var{T}.ReluMaskedGradSlot"/>), and this pass is then skipped: 24 MB of memory traffic for each of BDH's
    /// xs and ys a layer.
    /// With <paramref name="where"/> (of the output's shape), y is computed only where it is not zero and is 0 elsewhere:
    /// BDH's ys, which only ever meets xs in xs⊙ys, is needed where xs fires (<see cref="Tensors.MatMul.Multiply{T}(Tensor{T}, bool, Tensor{T}, bool, Tensor{T}, bool, bool, Tensor{T}?, bool)"/>'s
    /// masked product, which reads B's columns as rows: b as given with transB, else a copy of b with its last two axes
    /// swapped). Where it goes by dots (float, the mask sparse enough), y is left as lists at the mask's places, with the
    /// mask's values beside them (<see cref="RowLists.AtNonZerosOf"/>): its only copy, which <see cref="DropoutOfProduct{T}"/>
    /// reads, and <see cref="Var{T}.Value"/> writes out for any other reader. The gradient is the same formula: dy is 0 where y is.
    /// </summary>
    public static Var<T> MatMulRelu<T>(Var<T> a, Var<T> b, Var<T>? where = null, bool transB = false) where T : unmanaged, IFloatingPointIeee754<T>
    {
        var c = Tensor<T>.Empty(Tensors.MatMul.OutputShape(a.Shape, false, b.Shape, transB));
        if (where is null || transB) Tensors.MatMul.Multiply(a.Value, false, b.Value, transB, c, accumulate: false, relu: true, where?.Value, ListsMaskedProducts);
        else
        {
            using var rowsOfB = Tensor<T>.Empty([.. b.Shape[..^2], b.Shape[^1], b.Shape[^2]]); // [.., n, k]: B's columns as rows
            Layout.SwapAxes(b.Value, b.Shape.Length - 2, b.Shape.Length - 1, rowsOfB, accumulate: false);
            Tensors.MatMul.Multiply(a.Value, false, rowsOfB, true, c, accumulate: false, relu: true, where.Value, ListsMaskedProducts);
        }
        return Var<T>.FromOp(c, where is null ? "matmul_relu" : "matmul_relu_where", [a, b], y =>
        {
            var dc = y.Grad!; // dy becomes dC in place: nothing reads dy after this op's backward
            if (!y.GradIsReluMasked) Elementwise.ReluBackward(y.Value, dc, new GradSlot<T>(dc, Accumulate: false));
            SendMatMulGrads(a, b, false, transB, dc); // a dC listed as its only copy (BDH's dys) goes to the products as lists
        }).AsReluOutput().AsTakingListedGrad();
    }

    /// <summary>
    /// dA (+)= dC·op(B)ᵀ and dB (+)= op(A)ᵀ·dC, each in the orientation its operand is stored in. An A whose gradient is
    /// read only where it is not zero (<see cref="Var{T}.GradNeededOnlyWhereNonZero"/>: BDH's xs⊙ys, 3% non-zero once
    /// trained, in the decoder's product) gets dA at those places only; where A comes with lists of its non-zeros that
    /// hold its factors' values (<see cref="DropoutOfProduct{T}"/>: at most <see cref="ListedGradMaxDensity"/> non-zero),
    /// dA is those places' values only (lists that are its only copy): no pass writes the zeros between them, and
    /// xs⊙ys's backward reads them as lists.
    /// </summary>
    private static void SendMatMulGrads<T>(Var<T> a, Var<T> b, bool transA, bool transB, Tensor<T> dc) where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (a.RequiresGrad)
        {
            bool onlyWhereNonZero = a.GradNeededOnlyWhereNonZero && !transA && !transB && a.Grad is null && !SumsOverBatch(dc, b, a);
            if (onlyWhereNonZero && a.ListedValue.NonZeroRows is { FactorValues.Length: 2 } places) // xy's lists, kept with xs's and ys's values
                Tensors.MatMul.Multiply(dc, false, b.Value, true, a.SetListedGrad(places.AtSamePlaces()), accumulate: false, where: a.ListedValue);
            else
            {
                var (da, add) = a.GradSlot();
                if (transA) Tensors.MatMul.Multiply(b.Value, transB, dc, true, da, add);  // dA = op(B)·dCᵀ
                else if (onlyWhereNonZero) Tensors.MatMul.Multiply(dc, false, b.Value, true, da, accumulate: false, where: a.ListedValue); // dA = dC·Bᵀ where A ≠ 0
                else Tensors.MatMul.Multiply(dc, false, b.Value, !transB, da, add);       // dA = dC·op(B)ᵀ
            }
        }
        if (b.RequiresGrad)
        {
            var (db, add) = b.GradSlot();
            if (transB) Tensors.MatMul.Multiply(dc, true, a.Value, transA, db, add);  // dB = dCᵀ·op(A)
            else Tensors.MatMul.Multiply(a.ListedValue, !transA, dc, false, db, add); // dB = op(A)ᵀ·dC, from A's lists where they are its only copy
        }
    }

    /// <summary>
    /// The most non-zeros, as a fraction of its elements, that xs⊙ys may have for its gradient and the two it passes back
    /// to be lists (<see cref="DropoutOfProduct{T}"/> keeps xs's and ys's values at its listed places only up to it,
    /// <see cref="SendMatMulGrads{T}"/> lists the gradient where they are kept): the bound above which the products that
    /// read dys from lists turn it by blocks instead (<see cref="SparseGemm.MaxDensityFromLists"/>). Settable for the
    /// tests, which compare the two ways.
    /// </summary>
    internal static double ListedGradMaxDensity { get; set; } = SparseGemm.MaxDensityFromLists;

    /// <summary>How many times xs⊙ys's backward has read its gradient as lists on this thread: the tests check that the way they compare ran.</summary>
    [ThreadStatic] internal static int ListedProductBackwards;

    /// <summary>
    /// Whether <see cref="MatMulRelu{T}"/>'s masked products leave their values as lists at the mask's places where they go
    /// by dots (BDH's ys, which <see cref="DropoutOfProduct{T}"/> then reads). Settable for the tests, which compare the two ways.
    /// </summary>
    internal static bool ListsMaskedProducts { get; set; } = true;

    /// <summary>How many times a dropout of a product has been made from its factor's lists on this thread (see <see cref="ListedProductBackwards"/>).</summary>
    [ThreadStatic] internal static int ListedProductForwards;

    /// <summary>Whether dA = dC·Bᵀ sums products over a batch dimension A broadcasts along (a masked product cannot).</summary>
    private static bool SumsOverBatch<T>(Tensor<T> dc, Var<T> b, Var<T> a) where T : unmanaged, IFloatingPointIeee754<T> =>
        Tensor<T>.ShapeLength(Tensors.MatMul.OutputShape(dc.Shape, false, b.Shape, true)) != Tensor<T>.ShapeLength(a.Shape);

    /// <summary>a + b with broadcasting; each gradient is summed back to its input's shape.</summary>
    public static Var<T> Add<T>(Var<T> a, Var<T> b) where T : unmanaged, IFloatingPointIeee754<T> =>
        Var<T>.FromOp(BroadcastOps.Add(a.Value, b.Value), "add", [a, b], y =>
        {
            if (a.RequiresGrad) SumInto(y.Grad!, a.GradSlot());
            if (b.RequiresGrad) SumInto(y.Grad!, b.GradSlot());
        });

    /// <summary>x summed over the dimensions where <paramref name="shape"/> has 1 (x must broadcast from it); dx = dy broadcast back.</summary>
    public static Var<T> SumTo<T>(Var<T> x, params int[] shape) where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (!Broadcast.Shape(shape, x.Shape).AsSpan().SequenceEqual(x.Shape))
            throw new ArgumentException($"cannot sum {Tensor<T>.Format(x.Shape)} to {Tensor<T>.Format(shape)}");
        var y = Tensor<T>.Empty(shape);
        BroadcastOps.SumInto(x.Value, y, accumulate: false);
        return Var<T>.FromOp(y, "sum_to", [x], o =>
        {
            var (dx, add) = x.GradSlot();
            BroadcastOps.BroadcastInto(o.Grad!, dx, add);
        });
    }

    /// <summary>a ⊙ b with broadcasting: da = Σ dy ⊙ b, db = Σ dy ⊙ a.</summary>
    public static Var<T> Mul<T>(Var<T> a, Var<T> b) where T : unmanaged, IFloatingPointIeee754<T> =>
        Var<T>.FromOp(BroadcastOps.Multiply(a.Value, b.Value), "mul", [a, b], y =>
        {
            if (a.RequiresGrad) MultiplySumInto(y.Grad!, b.Value, a.GradSlot());
            if (b.RequiresGrad) MultiplySumInto(y.Grad!, a.Value, b.GradSlot());
        });

    private static void SumInto<T>(Tensor<T> dy, GradSlot<T> dx) where T : unmanaged, IFloatingPointIeee754<T> =>
        BroadcastOps.SumInto(dy, dx.Tensor, dx.Accumulate);

    private static void MultiplySumInto<T>(Tensor<T> dy, Tensor<T> other, GradSlot<T> dx) where T : unmanaged, IFloatingPointIeee754<T> =>
        BroadcastOps.MultiplySumInto(dy, other, dx.Tensor, dx.Accumulate);

    public static Var<T> Relu<T>(Var<T> x) where T : unmanaged, IFloatingPointIeee754<T>
    {
        var y = Tensor<T>.Empty(x.Shape);
        Elementwise.Relu(x.Value, y);
        return Var<T>.FromOp(y, "relu", [x], o => Elementwise.ReluBackward(o.Value, o.Grad!, x.GradSlot()));
    }

    /// <summary>LayerNorm over the last dimension, no affine parameters.</summary>
    public static Var<T> LayerNorm<T>(Var<T> x, double eps = 1e-5) where T : unmanaged, IFloatingPointIeee754<T>
    {
        var y = Tensor<T>.Empty(x.Shape);
        var rstd = Tensor<T>.Empty(x.Value.Length / x.Shape[^1]);
        Tensors.Kernels.LayerNorm.Forward(x.Value, y, rstd, T.CreateTruncating(eps));
        return Var<T>.FromOp(y, "layernorm", [x], o => Tensors.Kernels.LayerNorm.Backward(o.Grad!, o.Value, rstd, x.GradSlot()), rstd);
    }

    /// <summary>
    /// Rotary embedding of x [..., table.Length, table.N] (see <see cref="Tensors.Kernels.Rope"/>). When x is a ReLU's
    /// output, the backward applies the ReLU's mask as it stores dx.
    /// </summary>
    public static Var<T> Rope<T>(Var<T> x, RopeTable table) where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (x.Shape[^1] != table.N || x.Shape[^2] != table.Length)
            throw new ArgumentException($"rope table is [{table.Length}, {table.N}], input {Tensor<T>.Format(x.Shape)}");
        var y = Tensor<T>.Empty(x.Shape);
        Tensors.Kernels.Rope.Forward(x.Value, y, table);
        return Var<T>.FromOp(y, "rope", [x], o =>
        {
            if (x.IsReluOutput) Tensors.Kernels.Rope.Backward(o.Grad!, x.ReluMaskedGradSlot(), table, reluOutput: x.Value);
            else Tensors.Kernels.Rope.Backward(o.Grad!, x.GradSlot(), table);
        });
    }

    /// <summary>
    /// tril(q qᵀ, −1)·v per head and sequence: q [H,B,T,N], v [1|H,B,T,D] → [H,B,T,D]; with a rope table, of rope(q), made
    /// a sequence at a time inside the kernel and never stored (<see cref="Tensors.Kernels.CausalLinearAttention"/>): the
    /// same values as <see cref="Rope{T}"/> and then this op. When q is then a ReLU's output, the backward applies the
    /// ReLU's mask as it stores dq.
    /// </summary>
    public static Var<T> CausalLinearAttention<T>(Var<T> q, Var<T> v, RopeTable? rope = null) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int h = q.Shape[0], b = q.Shape[1], t = q.Shape[2];
        var scores = Tensor<T>.Empty(h, b, t, t);
        var y = Tensor<T>.Empty(h, b, t, v.Shape[^1]);
        Tensors.Kernels.CausalLinearAttention.Forward(q.Value, v.Value, scores, y, rope);
        bool foldRelu = rope != null && q.IsReluOutput; // the rotation back stores dq, masks it on the way, and adds a listed dq to it
        return Var<T>.FromOp(y, "attention", [q, v], o => Tensors.Kernels.CausalLinearAttention.Backward(q.Value, v.Value, scores, o.Grad!,
            !q.RequiresGrad ? null : foldRelu ? q.ReluMaskedGradSlot(takesListedGrad: true) : q.GradSlot(), v.RequiresGrad ? v.GradSlot() : null,
            rope, foldRelu ? q.Value : null), scores);
    }

    /// <summary>The same storage seen with another shape (no copy).</summary>
    public static Var<T> Reshape<T>(Var<T> x, params int[] shape) where T : unmanaged, IFloatingPointIeee754<T> =>
        Var<T>.FromOp(x.Value.Reshape(shape), "reshape", [x], o => SumInto(o.Grad!.Reshape(x.Shape), x.GradSlot()));

    /// <summary>Swaps two dimensions (a copy; its backward swaps them back).</summary>
    public static Var<T> Transpose<T>(Var<T> x, int d0, int d1) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int[] shape = (int[])x.Shape.Clone();
        (shape[d0], shape[d1]) = (shape[d1], shape[d0]);
        var y = Tensor<T>.Empty(shape);
        Layout.SwapAxes(x.Value, d0, d1, y, accumulate: false);
        return Var<T>.FromOp(y, "transpose", [x], o =>
        {
            var (dx, add) = x.GradSlot();
            Layout.SwapAxes(o.Grad!, d0, d1, dx, add);
        });
    }

    /// <summary>Rows of weight [V, D] picked by ids: → [..idsShape, D].</summary>
    public static Var<T> Embedding<T>(Var<T> weight, int[] ids, params int[] idsShape) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int d = weight.Shape[1];
        var y = Tensor<T>.Empty([.. idsShape, d]);
        if (y.Length != ids.Length * d) throw new ArgumentException($"{ids.Length} ids do not fill shape {Tensor<T>.Format(idsShape)}");
        Elementwise.EmbeddingForward<T>(weight.Value.Span, ids, y.Span, d);
        return Var<T>.FromOp(y, "embedding", [weight], o => Elementwise.EmbeddingBackward(o.Grad!, ids, weight.GradSlot()));
    }

    /// <summary>Inverted dropout with probability p; the identity when p is 0 or no rng is given (evaluation).</summary>
    public static Var<T> Dropout<T>(Var<T> x, double p, Rng? rng) where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (p == 0 || rng is null) return x;
        ulong seed = rng.NextUInt64(); // one draw per call: the mask is a hash of (seed, index), drawn again by the backward
        var y = Tensor<T>.Empty(x.Shape);
        Elementwise.Dropout(seed, p, x.Value, null, y);
        return Var<T>.FromOp(y, "dropout", [x], o => Elementwise.DropoutBackward(seed, p, o.Grad!, null, x.GradSlot()));
    }

    /// <summary>
    /// dropout(a ⊙ b) for a and b of one shape, in one pass (BDH's xy: the undropped product is never stored);
    /// a ⊙ b when p is 0 or no rng is given. da = dropout(dy ⊙ b), db = dropout(dy ⊙ a), with the forward's mask, in one
    /// pass; when a and b are both ReLU outputs (BDH's xs and ys), the ReLUs' masks are applied as da and db are stored.
    /// </summary>
    public static Var<T> DropoutOfProduct<T>(Var<T> a, Var<T> b, double p, Rng? rng) where T : unmanaged, IFloatingPointIeee754<T>
    {
        bool reluInputs = a.IsReluOutput && b.IsReluOutput; // the gradient of their product matters only where it is not 0
        if (p == 0 || rng is null) return reluInputs ? (a * b).AsGradNeededOnlyWhereNonZero() : a * b;
        if (!a.Shape.AsSpan().SequenceEqual(b.Shape))
            throw new ArgumentException($"dropout of a product needs one shape: {Tensor<T>.Format(a.Shape)} and {Tensor<T>.Format(b.Shape)}");
        ulong seed = rng.NextUInt64();
        var y = Tensor<T>.Empty(a.Shape);
        // The decoder's products read xy's lists, and where its gradients will be lists (SendMatMulGrads), the backward
        // reads a's and b's values there. A b made only where a is not zero, as lists with a's values there (MatMulRelu's
        // masked product: BDH's ys where xs fires), gives them from those lists alone.
        if (typeof(T) == typeof(float) && b.ListedValue.NonZeroRows is { IsOnlyCopy: true } listed && ReferenceEquals(listed.PlacesOf, a.ListedValue))
        {
            Elementwise.DropoutOfProduct(seed, p, listed, (Tensor<float>)(object)y, ListedGradMaxDensity);
            ListedProductForwards++;
        }
        else Elementwise.Dropout(seed, p, a.Value, b.Value, y, listNonZeros: reluInputs, factorValuesUpTo: ListedGradMaxDensity);
        var product = Var<T>.FromOp(y, "dropout_product", [a, b], o =>
        {
            if (o.Grad!.NonZeroRows is { IsOnlyCopy: true } listed && o.ListedValue.NonZeroRows is { FactorValues.Length: 2 } places
                && a.RequiresGrad && b.RequiresGrad && a.Grad is null && b.Grad is null)
            {
                // dy only at the product's listed places (its decoder's product, SendMatMulGrads), where the mask kept
                // the element and both ReLUs fired: da and db there only, as lists, and no mask drawn.
                var (da, db) = Elementwise.DropoutOfProductBackward(p, listed, places);
                a.SetListedGrad(da, reluMasked: true);
                b.SetListedGrad(db, reluMasked: true);
                ListedProductBackwards++;
                return;
            }
            o.Grad.WriteListedValues();
            if (a.RequiresGrad && b.RequiresGrad)
            {
                Elementwise.DropoutOfProductBackward(seed, p, o.Grad!, a.Value, b.Value,
                    reluInputs ? a.ReluMaskedGradSlot() : a.GradSlot(), reluInputs ? b.ReluMaskedGradSlot() : b.GradSlot(), reluInputs,
                    listNonZeros: reluInputs); // db, as sparse as the product: encoder_v's backward products read its lists
            }
            else if (a.RequiresGrad) Elementwise.DropoutBackward(seed, p, o.Grad!, b.Value, a.GradSlot());
            else if (b.RequiresGrad) Elementwise.DropoutBackward(seed, p, o.Grad!, a.Value, b.GradSlot());
        });
        return reluInputs ? product.AsGradNeededOnlyWhereNonZero().AsTakingListedGrad() : product;
    }

    /// <summary>Mean cross-entropy of logits [..., V] against targets (one per row) → scalar [1].</summary>
    public static Var<T> CrossEntropy<T>(Var<T> logits, int[] targets) where T : unmanaged, IFloatingPointIeee754<T>
    {
        var loss = Tensor<T>.Empty(1);
        loss.Span[0] = Tensors.Kernels.CrossEntropy.Forward(logits.Value, targets);
        return Var<T>.FromOp(loss, "cross_entropy", [logits], o => Tensors.Kernels.CrossEntropy.Backward(
            logits.Value, targets, o.Grad!.Span[0] / T.CreateTruncating(targets.Length), logits.GradSlot()));
    }

    /// <summary>Σ x → [1].</summary>
    public static Var<T> Sum<T>(Var<T> x) where T : unmanaged, IFloatingPointIeee754<T> => Scaled(x, T.One, "sum");

    /// <summary>Σ x / n → [1].</summary>
    public static Var<T> Mean<T>(Var<T> x) where T : unmanaged, IFloatingPointIeee754<T> =>
        Scaled(x, T.One / T.CreateTruncating(x.Value.Length), "mean");

    /// <summary>Σ x · scale → [1]; dx = dy · scale in every element.</summary>
    private static Var<T> Scaled<T>(Var<T> x, T scale, string op) where T : unmanaged, IFloatingPointIeee754<T>
    {
        var y = Tensor<T>.Empty(1);
        y.Span[0] = TP.Sum<T>(x.Value.Span) * scale;
        return Var<T>.FromOp(y, op, [x], o =>
        {
            var (dx, add) = x.GradSlot();
            BroadcastOps.BroadcastInto(Tensor<T>.From([o.Grad!.Span[0] * scale], 1), dx, add);
        });
    }
}
