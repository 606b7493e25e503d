namespace Bdh.Tensors;

/// <summary>
/// A matrix inside a flat array: element (i, j) is <c>Array[Offset + i*Stride + j]</c>, or
/// <c>Array[Offset + j*Stride + i]</c> when <see cref="Transposed"/> — so a transpose costs nothing. <see cref="Lists"/>,
/// where the matrix lies in a tensor that has them, are the non-zeros of its stored rows (of length Stride, whichever
/// way it is read), the first being row <see cref="ListsRow"/> of the lists.
/// </summary>
internal readonly record struct MatrixRef<T>(T[] Array, int Offset, int Stride, bool Transposed = false, RowLists? Lists = null, int ListsRow = 0)
{
    public T this[int i, int j] => Array[Offset + (Transposed ? j * Stride + i : i * Stride + j)];
}

/// <summary>
/// Zeros a causal product may skip (square T×T operands of attention): <c>LowerOutput</c>, only C[i, j]
/// with j &lt; i is wanted (the caller masks or overwrites the rest); <c>LowerA</c>, A[i, p] = 0 for p ≥ i;
/// <c>UpperA</c>, A[i, p] = 0 for p ≤ i. Skipping exact zeros leaves every wanted value unchanged.
/// </summary>
internal enum Causal { None, LowerOutput, LowerA, UpperA }

/// <summary>
/// General matrix multiply <c>C[m,n] = (accumulate ? C : 0) + A[m,k]·B[k,n]</c>, then max(C, 0) with relu, the entry of every product of
/// training and prefill (<see cref="MatMul"/> over tensors comes here). float runs the packed, register-blocked SIMD
/// kernel (<see cref="PackedGemm"/>), or, when A or B is mostly zeros, the sparse one (<see cref="SparseGemm"/>: the choice
/// is made per call from the operands' measured density and is deterministic); double (used by gradient checks) runs a
/// row-at-a-time TensorPrimitives loop. Both split work over output rows or tiles only, so results are
/// bit-identical for any thread count. A generated token's one-row products are <see cref="Gemv"/>'s.
/// </summary>
internal static unsafe class Gemm
{
    /// <summary>Below this many multiply-adds a product runs on one thread: the fork costs more than it saves.</summary>
    internal const long ParallelThreshold = 1 << 18;

    /// <summary>
    /// The densest mask <see cref="MultiplyWhere{T}"/> computes by dots (`bench -- sparse 2`, [1024, 128]·[128, 512] on a
    /// Zen 4, 2 threads, the dots' time over the whole product's at 20%, 30% and 50% of the places; bench/README.md,
    /// "Masked products"): at 512 bits 0.63×, 0.89–1.13×, 1.42–1.71×; at 256 bits 0.65×, 0.92×, 1.35×; at 128 bits with
    /// FMA 0.43×, 0.59×, 0.90×, without 0.50×, 0.71×, 1.09× (the whole product at 128 bits runs at half the wider widths'
    /// speed, the dots do not, as their rows come from L2).
    /// </summary>
    internal static double MaskedMaxDensity => Simd.Widest >= 256 ? 0.3 : 0.4;

    /// <summary>From this many elements of A on, a float product counts A's non-zeros to choose the sparse kernel.</summary>
    internal const long SparseCheckSize = 1 << 14;

    public static void Multiply<T>(int m, int n, int k, MatrixRef<T> a, MatrixRef<T> b, MatrixRef<T> c,
        bool accumulate, bool parallel = true, Causal causal = Causal.None, bool relu = false) where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (c.Transposed) throw new ArgumentException("the output matrix cannot be transposed");
        if (relu && causal != Causal.None) throw new ArgumentException("a causal product skips tiles of C, which would miss the ReLU");
        if (m == 0 || n == 0) return;
        parallel &= (long)m * n * k >= ParallelThreshold && Parallelism.Threads > 1;
        bool reluDone = false; // the packed kernel applies it in its stores; the others leave it to a pass at the end
        if (k == 0)
        {
            if (!accumulate)
                for (int i = 0; i < m; i++) c.Array.AsSpan(c.Offset + i * c.Stride, n).Clear();
        }
        else if (typeof(T) == typeof(float))
            reluDone = MultiplyFloat(m, n, k, (MatrixRef<float>)(object)a, (MatrixRef<float>)(object)b, (MatrixRef<float>)(object)c,
                accumulate, parallel, causal, relu);
        else
            MultiplyByRows(m, n, k, a, b, c, accumulate, parallel);
        if (relu && !reluDone)
            for (int i = 0; i < m; i++)
            {
                Span<T> row = c.Array.AsSpan(c.Offset + i * c.Stride, n);
                Kernels.Elementwise.Relu<T>(row, row);
            }
    }

    /// <summary>
    /// C[i, j] = A[i, :]·B[j, :] where mask[i, j] ≠ 0, else 0 (then max(C, 0) with relu): a product of which only some
    /// outputs are needed, each computed as a dot of a row of A and a row of B as stored ([n, k]), the others not at all.
    /// BDH's ys is needed only where xs fires and the gradient of xs⊙ys only where the product is not zero: a fifth and a
    /// thirtieth of a trained model's outputs. Row by row with <see cref="Gemv.MaskedRows"/> (eight dots at a time), whose sums depend
    /// only on the two rows: the same bits for any thread count. Each dot reads its row of B from L2 (no register tile
    /// reuses it), so above <see cref="MaskedMaxDensity"/> the whole product is faster: float then runs <see cref="Multiply{T}"/>,
    /// and the places outside the mask hold their products. A C whose lists are its only copy (<see cref="RowLists.IsOnlyCopy"/>:
    /// at the mask's listed places, or room to list the mask's places in) gets its dots there, whatever the density.
    /// </summary>
    public static void MultiplyWhere<T>(int m, int n, int k, MatrixRef<T> a, MatrixRef<T> b, MatrixRef<T> mask, MatrixRef<T> c,
        bool parallel, bool relu) where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (a.Transposed || !b.Transposed || b.Stride != k || mask.Transposed || c.Transposed)
            throw new ArgumentException("a masked product reads plain rows of A and of B stored [n, k] (op(B) transposed)");
        if (c.Lists is not { IsOnlyCopy: true } && !MultipliesByDots(m, n, mask)) Multiply(m, n, k, a, b, c, accumulate: false, parallel, relu: relu);
        else MultiplyByDots(m, n, k, a, b, mask, c, parallel, relu);
    }

    /// <summary>Whether <see cref="MultiplyWhere{T}"/> computes C [m, n] by dots at the mask's places: float's mask at most <see cref="MaskedMaxDensity"/> non-zero.</summary>
    internal static bool MultipliesByDots<T>(int m, int n, MatrixRef<T> mask) where T : unmanaged, IFloatingPointIeee754<T> =>
        typeof(T) != typeof(float) || (long)m * n < SparseCheckSize || SparseGemm.HasAtMost(MaskedMaxDensity, m, n, (MatrixRef<float>)(object)mask);

    /// <summary><see cref="MultiplyWhere{T}"/> by dots at the mask's places, whatever its density.</summary>
    internal static void MultiplyByDots<T>(int m, int n, int k, MatrixRef<T> a, MatrixRef<T> b, MatrixRef<T> mask, MatrixRef<T> c,
        bool parallel, bool relu) where T : unmanaged, IFloatingPointIeee754<T>
    {
        Parallelism.ForRowRanges(m, parallel && (long)m * n * k >= ParallelThreshold, (i0, i1) =>
        {
            if (typeof(T) == typeof(float))
                fixed (T* aP = a.Array, bP = b.Array, maskP = mask.Array, cP = c.Array)
                    Gemv.MaskedRows(i1 - i0, n, k, (float*)aP + a.Offset + (long)i0 * a.Stride, a.Stride, (float*)bP + b.Offset,
                        (float*)maskP + mask.Offset + (long)i0 * mask.Stride, mask.Stride, (float*)cP + c.Offset + (long)i0 * c.Stride, c.Stride, relu, streamed: false,
                        mask.Lists, (mask.Lists is null ? c.ListsRow : mask.ListsRow) + i0, c.Lists is { IsOnlyCopy: true } ? c.Lists : null);
            else
                for (int i = i0; i < i1; i++)
                {
                    Span<T> row = c.Array.AsSpan(c.Offset + i * c.Stride, n);
                    Gemv.MatrixTimesVector<T>(b.Array.AsSpan(b.Offset, n * k), a.Array.AsSpan(a.Offset + i * a.Stride, k), row,
                        mask.Array.AsSpan(mask.Offset + i * mask.Stride, n));
                    if (relu) Kernels.Elementwise.Relu<T>(row, row);
                }
        });
    }

    /// <summary>
    /// A float product: the sparse kernel where op(A) or B is mostly zeros (xs⊙ys and the ReLUs' masked gradients, once
    /// trained) or has no copy but its lists (<see cref="RowLists.IsOnlyCopy"/>: BDH's dys), else the packed SIMD kernel,
    /// else (no vectors at all) by rows. Returns whether it applied the ReLU.
    /// </summary>
    private static bool MultiplyFloat(int m, int n, int k, MatrixRef<float> a, MatrixRef<float> b, MatrixRef<float> c,
        bool accumulate, bool parallel, Causal causal, bool relu)
    {
        if (a.Lists is { IsOnlyCopy: true } || causal == Causal.None && (long)m * k >= SparseCheckSize && SparseGemm.IsSparse(m, n, k, a))
            SparseGemm.Multiply(m, n, k, a, b, c, accumulate, parallel);
        else if (b.Lists is { IsOnlyCopy: true } || causal == Causal.None && (long)k * n >= SparseCheckSize && SparseGemm.IsSparseB(m, n, k, b))
            SparseGemm.MultiplyBySparseB(m, n, k, a, b, c, accumulate, parallel);
        else if (Simd.Widest > 0)
        {
            PackedGemm.Multiply(m, n, k, a, b, c, accumulate, relu, parallel, causal);
            return true;
        }
        else
            MultiplyByRows(m, n, k, a, b, c, accumulate, parallel);
        return false;
    }

    /// <summary>C[i,:] (+)= Σ_p A[i,p]·B[p,:], or a dot product per element when B is transposed.</summary>
    private static void MultiplyByRows<T>(int m, int n, int k, MatrixRef<T> a, MatrixRef<T> b, MatrixRef<T> c,
        bool accumulate, bool parallel) where T : unmanaged, IFloatingPointIeee754<T>
    {
        Parallelism.ForRowRanges(m, parallel, (i0, i1) =>
        {
            T[] aRow = TensorPool<T>.Rent(k);
            for (int i = i0; i < i1; i++)
            {
                for (int p = 0; p < k; p++) aRow[p] = a[i, p];
                Span<T> cRow = c.Array.AsSpan(c.Offset + i * c.Stride, n);
                if (!accumulate) cRow.Clear();
                if (b.Transposed)
                    for (int j = 0; j < n; j++) cRow[j] += TP.Dot<T>(aRow.AsSpan(0, k), b.Array.AsSpan(b.Offset + j * b.Stride, k));
                else
                    for (int p = 0; p < k; p++) TP.MultiplyAdd(b.Array.AsSpan(b.Offset + p * b.Stride, n), aRow[p], cRow, cRow);
            }
            TensorPool<T>.Return(aRow);
        });
    }
}
