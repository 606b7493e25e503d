using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace Bdh.Tensors;

/// <summary>
/// The one-token products of generation, a vector against a matrix where the matrix lies: y = x·W, skipping x's
/// zeros (<see cref="RowTimesMatrix{T}"/>: ρ, the decoder, the LM head, and the encoder in double), and y = W·x on the
/// rows a mask selects (<see cref="MatrixTimesVector{T}"/>: encoder_v at a token's active neurons, and the float
/// encoder's columns that its int8 screen lets through, <see cref="ScreenedReluProduct"/>). Each reads a large W once per
/// token, so both are bound by memory: they list the rows they need (with <see cref="SparseGemm"/>'s non-zero scan)
/// and ask for rows <see cref="PrefetchRows"/> ahead of the one they read. The masked rows' dots also serve a masked
/// product of many rows (<see cref="MaskedRows"/>, from <see cref="Gemm.MultiplyWhere{T}"/>), whose W stays in the caches.
/// </summary>
public static unsafe class Gemv
{
    /// <summary>
    /// How many listed rows ahead the one-token products ask for the rows they will read. Their rows are scattered,
    /// so the hardware's stream prefetcher, which stops at each 4 KB page, starts most rows with a miss; a
    /// few rows requested ahead keep more misses in flight (bench/README.md has the gain).
    /// </summary>
    internal const int PrefetchRows = 8;

    /// <summary>
    /// y [n] = x [k]·W [k, n], W row-major: one row times a matrix, as each generated token needs. W is read
    /// once where it lies (packing it would cost more than the product), and x's zeros, most of them in BDH's
    /// activations, are skipped: float runs the sparse product's row loop (<see cref="SparseGemm"/>).
    /// </summary>
    public static void RowTimesMatrix<T>(ReadOnlySpan<T> x, ReadOnlySpan<T> w, Span<T> y) where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (w.Length != x.Length * y.Length) throw new ArgumentException($"W must be [{x.Length}, {y.Length}]");
        if (typeof(T) == typeof(float))
        {
            ReadOnlySpan<float> xf = MemoryMarshal.Cast<T, float>(x), wf = MemoryMarshal.Cast<T, float>(w);
            Span<float> yf = MemoryMarshal.Cast<T, float>(y);
            switch (Simd.Widest)
            {
                case 512: RowTimesMatrix<Float512, Vector512<float>>(xf, wf, yf); break;
                case 256: RowTimesMatrix<Float256, Vector256<float>>(xf, wf, yf); break;
                default: RowTimesMatrix<Float128, Vector128<float>>(xf, wf, yf); break;
            }
            return;
        }
        y.Clear();
        for (int p = 0; p < x.Length; p++)
            if (x[p] != T.Zero) TP.MultiplyAdd(w.Slice(p * y.Length, y.Length), x[p], y, y);
    }

    /// <summary>
    /// y [m] = W [m, k]·x [k] on the rows where <paramref name="where"/> is non-zero, 0 on the others: a
    /// token needs only the rows of its active neurons, so only those are read. float reads eight rows at
    /// a time (a row at a time waits on memory for each); every row is summed the same way wherever it
    /// falls in the list, so y[i] depends only on row i and x.
    /// </summary>
    public static void MatrixTimesVector<T>(ReadOnlySpan<T> w, ReadOnlySpan<T> x, Span<T> y, ReadOnlySpan<T> where) where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (w.Length != y.Length * x.Length) throw new ArgumentException($"W must be [{y.Length}, {x.Length}]");
        if (where.Length != y.Length) throw new ArgumentException($"where must have {y.Length} entries");
        if (typeof(T) == typeof(float))
        {
            fixed (T* wP = w, xP = x, yP = y, maskP = where)
                MaskedRows(1, y.Length, x.Length, (float*)xP, 0, (float*)wP, (float*)maskP, 0, (float*)yP, 0, relu: false, streamed: true);
            return;
        }
        for (int i = 0; i < y.Length; i++)
            y[i] = where[i] == T.Zero ? T.Zero : TP.Dot<T>(w.Slice(i * x.Length, x.Length), x);
    }

    /// <summary>
    /// C[i, j] = A[i, :]·W[j, :] where mask[i, j] ≠ 0, else 0, for rows i of A [rows, k] (stride lda) and W [n, k]; then
    /// max(C, 0) with relu: <see cref="MatrixTimesVector{T}"/> for each row of A (<see cref="Gemm.MultiplyWhere{T}"/>).
    /// <paramref name="streamed"/>: W is read once (one token's product), from memory: rows further on the list are
    /// requested ahead. Many rows of A read W again from the caches, where those requests only cost instructions.
    /// <paramref name="maskLists"/>: the mask's non-zeros, its row 0 being their row <paramref name="maskRow"/>, read instead of the mask.
    /// <paramref name="outputLists"/>: lists that are C's only copy, at the mask lists' places (<see cref="RowLists.AtSamePlaces"/>),
    /// or, with no mask lists, room to list the mask's places in (<see cref="RowLists.AtNonZerosOf"/>), its row 0 being
    /// their row <paramref name="maskRow"/>: each dot goes to its place's entry, and C's storage is not written.
    /// </summary>
    internal static void MaskedRows(int rows, int n, int k, float* a, long lda, float* w, float* mask, long ldm, float* c, long ldc, bool relu, bool streamed,
        RowLists? maskLists = null, int maskRow = 0, RowLists? outputLists = null)
    {
        if (outputLists is not null && (maskLists is null ? outputLists.PlacesOf is null : !outputLists.HasPlacesOf(maskLists)))
            throw new ArgumentException("a masked product writes into lists only at its mask's listed places, or lists them");
        switch (Simd.Widest)
        {
            case 512: MaskedRows<Float512, Vector512<float>>(rows, n, k, a, lda, w, mask, ldm, c, ldc, relu, streamed, maskLists, maskRow, outputLists); break;
            case 256: MaskedRows<Float256, Vector256<float>>(rows, n, k, a, lda, w, mask, ldm, c, ldc, relu, streamed, maskLists, maskRow, outputLists); break;
            default: MaskedRows<Float128, Vector128<float>>(rows, n, k, a, lda, w, mask, ldm, c, ldc, relu, streamed, maskLists, maskRow, outputLists); break;
        }
    }

    /// <summary><see cref="RowTimesMatrix{T}"/> for float at width W.</summary>
    internal static void RowTimesMatrix<W, V>(ReadOnlySpan<float> x, ReadOnlySpan<float> w, Span<float> y) where W : struct, IFloatVector<V> where V : struct
    {
        int k = x.Length;
        int[] index = TensorPool<int>.Rent(k + 16 + PrefetchRows); // room for NonZeros' 16-lane stores and the rows read ahead
        float[] value = TensorPool<float>.Rent(k);
        fixed (float* xP = x, wP = w, yP = y, values = value)
        fixed (int* indices = index)
        {
            int count = SparseGemm.NonZeroTerms<W, V>(xP, k, indices, values);
            PadList(indices, count, PrefetchRows);
            SparseGemm.MultiplyRow<W, V>(count, indices, values, wP, y.Length, y.Length, yP, accumulate: false, streamed: true);
        }
        TensorPool<int>.Return(index);
        TensorPool<float>.Return(value);
    }

    /// <summary><see cref="MaskedRows"/> at width W: each row's masked places listed, then their dots eight at a time.</summary>
    internal static void MaskedRows<W, V>(int rows, int n, int k, float* a, long lda, float* w, float* mask, long ldm, float* c, long ldc, bool relu, bool streamed,
        RowLists? maskLists = null, int maskRow = 0, RowLists? outputLists = null) where W : struct, IFloatVector<V> where V : struct
    {
        int[] index = TensorPool<int>.Rent(n + 16 + 7 + PrefetchRows); // room for NonZeros' 16-lane stores, the padding to eight and the rows read ahead
        int* entries = stackalloc int[8]; // into lists: where each of eight dots goes from the first's entry
        bool listing = outputLists is not null && maskLists is null;
        int listedUpTo = maskRow * n; // listing: this call's rows one after another from its first row's room
        fixed (int* list = index)
        fixed (float* listed = outputLists?.Value)
            for (int i = 0; i < rows; i++)
            {
                int count, row = maskRow + i;
                if (listing)
                {
                    count = outputLists!.ListMaskRow<W, V>(row, listedUpTo, mask + i * ldm);
                    listedUpTo += count;
                }
                else count = maskLists is null ? SparseGemm.NonZeros<W, V>(mask + i * ldm, n, list) : maskLists.Count[row];
                if ((maskLists ?? (listing ? outputLists : null)) is { } places) // the row's places, copied where the padding can follow them
                    places.Index.AsSpan(places.Start[row], count).CopyTo(new Span<int>(list, count));
                float* y = outputLists is null ? c + i * ldc : listed + outputLists.Start[row];
                if (outputLists is null) new Span<float>(y, n).Clear();
                if (count > 0)
                {
                    // Pad the list to a multiple of eight with its last row (computed again, same value).
                    int padded = (count + 7) & ~7;
                    PadList(list, count, padded - count + PrefetchRows);
                    for (int e = 0; e < padded; e += 8)
                    {
                        // W is kept in the caches (the encoders are read again by the next layer): a plain prefetch, once per
                        // 64-byte line. Here, not in the dots' loop, where its registers pushed the rows' pointers to the stack.
                        if (streamed)
                            for (int r = e + PrefetchRows; r < e + PrefetchRows + 8; r++)
                                for (int line = 0; line < k; line += 16) Simd.Prefetch(w + (long)list[r] * k + line);
                        // A dense row takes each dot at its column; lists at the dot's entry, the padding's on the last one.
                        if (outputLists is not null)
                            for (int r = 0; r < 8; r++) entries[r] = Math.Min(e + r, count - 1);
                        EightRowDots<W, V>(list + e, w, k, a + i * lda, y, outputLists is null ? list + e : entries, relu);
                    }
                }
            }
        TensorPool<int>.Return(index);
    }

    /// <summary>Repeats the last of a list's count entries (or 0 for none) in the next extra places, so reads past the end stay in W.</summary>
    private static void PadList(int* list, int count, int extra)
    {
        int last = count > 0 ? list[count - 1] : 0;
        for (int e = count; e < count + extra; e++) list[e] = last;
    }

    /// <summary>
    /// y[places[r]] = W[rows[r], :]·x (max(·, 0) with relu) for r in [0, 8): eight rows' loads in flight at once, their
    /// partial sums added across lanes in one tree (<see cref="IFloatVector{V}.StoreSums"/>). The places between the listed
    /// rows stay 0, so the ReLU applies here, not in a pass over all of y. The eight row pointers, x and j fill 11 of
    /// x64's 14 free integer registers: anything more in the loop (a prefetch of later rows was) spills pointers.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization | MethodImplOptions.NoInlining)]
    private static void EightRowDots<W, V>(int* rows, float* w, int k, float* x, float* y, int* places, bool relu) where W : struct, IFloatVector<V> where V : struct
    {
        float* w0 = w + (long)rows[0] * k, w1 = w + (long)rows[1] * k, w2 = w + (long)rows[2] * k, w3 = w + (long)rows[3] * k;
        float* w4 = w + (long)rows[4] * k, w5 = w + (long)rows[5] * k, w6 = w + (long)rows[6] * k, w7 = w + (long)rows[7] * k;
        float* sums = stackalloc float[8];
        int j = 0;
        if (W.IsAccelerated)
        {
            V v0 = default, v1 = default, v2 = default, v3 = default, v4 = default, v5 = default, v6 = default, v7 = default;
            for (; j <= k - W.Count; j += W.Count)
            {
                var xj = W.Load(x + j);
                v0 = W.MultiplyAdd(xj, W.Load(w0 + j), v0);
                v1 = W.MultiplyAdd(xj, W.Load(w1 + j), v1);
                v2 = W.MultiplyAdd(xj, W.Load(w2 + j), v2);
                v3 = W.MultiplyAdd(xj, W.Load(w3 + j), v3);
                v4 = W.MultiplyAdd(xj, W.Load(w4 + j), v4);
                v5 = W.MultiplyAdd(xj, W.Load(w5 + j), v5);
                v6 = W.MultiplyAdd(xj, W.Load(w6 + j), v6);
                v7 = W.MultiplyAdd(xj, W.Load(w7 + j), v7);
            }
            W.StoreSums(v0, v1, v2, v3, v4, v5, v6, v7, sums);
        }
        else new Span<float>(sums, 8).Clear();
        for (; j < k; j++) // the columns past the last full vector
        {
            sums[0] = MathF.FusedMultiplyAdd(x[j], w0[j], sums[0]);
            sums[1] = MathF.FusedMultiplyAdd(x[j], w1[j], sums[1]);
            sums[2] = MathF.FusedMultiplyAdd(x[j], w2[j], sums[2]);
            sums[3] = MathF.FusedMultiplyAdd(x[j], w3[j], sums[3]);
            sums[4] = MathF.FusedMultiplyAdd(x[j], w4[j], sums[4]);
            sums[5] = MathF.FusedMultiplyAdd(x[j], w5[j], sums[5]);
            sums[6] = MathF.FusedMultiplyAdd(x[j], w6[j], sums[6]);
            sums[7] = MathF.FusedMultiplyAdd(x[j], w7[j], sums[7]);
        }
        for (int r = 0; r < 8; r++) y[places[r]] = relu ? MathF.Max(sums[r], 0) : sums[r];
    }
}
