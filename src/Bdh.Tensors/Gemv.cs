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
/// and ask for rows <see cref="PrefetchRows"/> ahead of the one they read.
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
    /// token needs only the rows of its active neurons, so only those are read. float reads four rows at
    /// a time (a row at a time waits on memory for each); every row is summed the same way wherever it
    /// falls in the list, so y[i] depends only on row i and x.
    /// </summary>
    public static void MatrixTimesVector<T>(ReadOnlySpan<T> w, ReadOnlySpan<T> x, Span<T> y, ReadOnlySpan<T> where) where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (w.Length != y.Length * x.Length) throw new ArgumentException($"W must be [{y.Length}, {x.Length}]");
        if (where.Length != y.Length) throw new ArgumentException($"where must have {y.Length} entries");
        if (typeof(T) == typeof(float))
        {
            ReadOnlySpan<float> wf = MemoryMarshal.Cast<T, float>(w), xf = MemoryMarshal.Cast<T, float>(x), mask = MemoryMarshal.Cast<T, float>(where);
            Span<float> yf = MemoryMarshal.Cast<T, float>(y);
            switch (Simd.Widest)
            {
                case 512: MatrixTimesVector<Float512, Vector512<float>>(wf, xf, yf, mask); break;
                case 256: MatrixTimesVector<Float256, Vector256<float>>(wf, xf, yf, mask); break;
                default: MatrixTimesVector<Float128, Vector128<float>>(wf, xf, yf, mask); break;
            }
            return;
        }
        for (int i = 0; i < y.Length; i++)
            y[i] = where[i] == T.Zero ? T.Zero : TP.Dot<T>(w.Slice(i * x.Length, x.Length), x);
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

    /// <summary><see cref="MatrixTimesVector{T}"/> for float at width W; y[i] = W[i, :]·x where mask[i] ≠ 0, else 0.</summary>
    internal static void MatrixTimesVector<W, V>(ReadOnlySpan<float> w, ReadOnlySpan<float> x, Span<float> y, ReadOnlySpan<float> mask) where W : struct, IFloatVector<V> where V : struct
    {
        int m = y.Length, k = x.Length;
        int[] index = TensorPool<int>.Rent(m + 16 + 3 + PrefetchRows); // room for NonZeros' 16-lane stores, the padding to four and the rows read ahead
        y.Clear();
        fixed (float* wP = w, xP = x, yP = y, maskP = mask)
        fixed (int* rows = index)
        {
            int count = SparseGemm.NonZeros<W, V>(maskP, m, rows);
            if (count > 0)
            {
                // Pad the list to a multiple of four with its last row (computed again, same value).
                int padded = (count + 3) & ~3;
                PadList(rows, count, padded - count + PrefetchRows);
                for (int e = 0; e < padded; e += 4) FourRowDots<W, V>(rows + e, wP, k, xP, yP);
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
    /// y[r] = W[r, :]·x for the four rows r in rows[0..4): four rows' loads in flight at once, and the rows
    /// <see cref="PrefetchRows"/> further on the list (valid entries, see PadList) requested into the caches.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization | MethodImplOptions.NoInlining)]
    private static void FourRowDots<W, V>(int* rows, float* w, int k, float* x, float* y) where W : struct, IFloatVector<V> where V : struct
    {
        float* w0 = w + (long)rows[0] * k, w1 = w + (long)rows[1] * k, w2 = w + (long)rows[2] * k, w3 = w + (long)rows[3] * k;
        int* later = rows + PrefetchRows;
        float* p0 = w + (long)later[0] * k, p1 = w + (long)later[1] * k, p2 = w + (long)later[2] * k, p3 = w + (long)later[3] * k;
        float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        int j = 0;
        if (W.IsAccelerated)
        {
            V v0 = default, v1 = default, v2 = default, v3 = default;
            for (; j <= k - W.Count; j += W.Count)
            {
                // W is kept in the caches (the encoders are read again by the next layer): a plain prefetch, once per 64-byte line.
                if ((j & 15) == 0) { Simd.Prefetch(p0 + j); Simd.Prefetch(p1 + j); Simd.Prefetch(p2 + j); Simd.Prefetch(p3 + j); }
                var xj = W.Load(x + j);
                v0 = W.MultiplyAdd(xj, W.Load(w0 + j), v0);
                v1 = W.MultiplyAdd(xj, W.Load(w1 + j), v1);
                v2 = W.MultiplyAdd(xj, W.Load(w2 + j), v2);
                v3 = W.MultiplyAdd(xj, W.Load(w3 + j), v3);
            }
            (s0, s1, s2, s3) = (W.Sum(v0), W.Sum(v1), W.Sum(v2), W.Sum(v3));
        }
        for (; j < k; j++) // the columns past the last full vector
        {
            s0 = MathF.FusedMultiplyAdd(x[j], w0[j], s0);
            s1 = MathF.FusedMultiplyAdd(x[j], w1[j], s1);
            s2 = MathF.FusedMultiplyAdd(x[j], w2[j], s2);
            s3 = MathF.FusedMultiplyAdd(x[j], w3[j], s3);
        }
        (y[rows[0]], y[rows[1]], y[rows[2]], y[rows[3]]) = (s0, s1, s2, s3);
    }
}
