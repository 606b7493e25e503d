using System.Runtime.Intrinsics;
using System.Buffers;
using System.Numerics;
using System.Runtime.CompilerServices;

using Bdh.Tensors.Kernels;

namespace Bdh.Tensors;

/// <summary>
/// C (+)= A·B for an A that is mostly zeros, B row-major. BDH's xs⊙ys is a few percent non-zero once
/// trained, so the decoder product and its weight gradient need a small fraction of the dense work.
/// Each thread takes a range of rows of C; for each row it lists the non-zeros of that row of op(A)
/// (in order of p), then adds A[i, p]·B[p, :] for each, with the row of C held in 8 vector registers
/// (128 columns at 512 bits). Every row adds its terms in order of p, so the result is the same for any thread count.
/// <see cref="Gemm.Multiply{T}"/> comes here when <see cref="IsSparse"/> says A is below <see cref="MaxDensity"/>,
/// and <see cref="Gemm.RowTimesMatrix{T}"/> for every one-row product of a generated token, whatever its density.
/// <see cref="Gemm.MatrixTimesVector{T}"/> also comes here: the other way round, the rows of W that a token's
/// active neurons need, dotted with a dense x (listed with the same <see cref="NonZeros"/>).
/// </summary>
internal static unsafe class SparseGemm
{
    /// <summary>
    /// Below this fraction of non-zeros this kernel beats the packed dense one. Measured on the decoder's
    /// shapes ([1024×512]·[512×128] and its weight gradient), 2 threads, ms sparse / dense: 5%: 0.50 / 0.81
    /// and 0.45 / 0.97; 10%: 0.58 / 0.81 and 0.61 / 1.03; 20%: 0.94 / 0.81 and 0.89 / 1.08.
    /// </summary>
    public const double MaxDensity = 0.12;

    private const int RowRun = 32;   // rows of B per run of MultiplyRow: 32 KB at 256 columns, in L1/L2 for the next tile
    /// <summary>
    /// How many listed rows ahead the one-token products ask for the rows they will read. Their rows are scattered,
    /// so the hardware's stream prefetcher, which stops at each 4 KB page, starts most rows with a miss; a
    /// few rows requested ahead keep more misses in flight (paper config, 2 threads: ~10% less time per token).
    /// </summary>
    private const int PrefetchRows = 8;

    /// <summary>
    /// Whether op(A) [m, k] has at most <see cref="MaxDensity"/> non-zeros. Every large float product asks,
    /// so the count stops as soon as it passes the bound: a dense A is rejected after a tenth of a scan.
    /// </summary>
    public static bool IsSparse(int m, int k, MatrixRef<float> a)
    {
        // Stored rows: m rows of k, or k rows of m when transposed.
        int rows = a.Transposed ? k : m, cols = a.Transposed ? m : k;
        long limit = (long)(MaxDensity * m * k), nonZero = 0;
        for (int r = 0; r < rows && nonZero <= limit; r++)
            nonZero += Elementwise.CountNonZeros<float>(a.Array.AsSpan(a.Offset + r * a.Stride, cols));
        return nonZero <= limit;
    }

    public static void Multiply(int m, int n, int k, MatrixRef<float> a, MatrixRef<float> b, MatrixRef<float> c, bool accumulate, bool parallel)
    {
        switch (Simd.Widest)
        {
            case 512: Multiply<Float512, Vector512<float>>(m, n, k, a, b, c, accumulate, parallel); break;
            case 256: Multiply<Float256, Vector256<float>>(m, n, k, a, b, c, accumulate, parallel); break;
            default: Multiply<Float128, Vector128<float>>(m, n, k, a, b, c, accumulate, parallel); break; // 128 bits, or scalar where W.IsAccelerated is false
        }
    }

    /// <summary><see cref="Multiply"/> at width W.</summary>
    internal static void Multiply<W, V>(int m, int n, int k, MatrixRef<float> a, MatrixRef<float> b, MatrixRef<float> c, bool accumulate, bool parallel)
        where W : struct, IFloatVector<V> where V : struct
    {
        int chunks = parallel ? Math.Min(Parallelism.Threads, m) : 1;
        Parallelism.For(chunks, chunk =>
            MultiplyRows<W, V>((int)((long)chunk * m / chunks), (int)((long)(chunk + 1) * m / chunks), n, k, a, b, c, accumulate));
    }

    /// <summary>Rows [i0, i1) of C.</summary>
    private static void MultiplyRows<W, V>(int i0, int i1, int n, int k, MatrixRef<float> a, MatrixRef<float> b, MatrixRef<float> c, bool accumulate)
        where W : struct, IFloatVector<V> where V : struct
    {
        // op(A)'s rows [i0, i1) in compressed form (CSR): row r's non-zeros are entries start[r]..start[r+1], in
        // order of p. A is scanned by its stored rows, 16 values at a time: rows of op(A) when A is plain,
        // its columns when A is transposed (two passes then: count per row, then place).
        int rows = i1 - i0, storedRows = a.Transposed ? k : rows, storedLength = a.Transposed ? rows : k;
        int[] start = TensorPool<int>.Rent(rows + 1), next = TensorPool<int>.Rent(rows), positions = TensorPool<int>.Rent(storedLength + 16); // + 16: NonZeros' last whole-register store
        Array.Clear(start, 0, rows + 1);
        fixed (float* aP = a.Array)
        fixed (int* found = positions)
        {
            // Stored row s begins at a0 + s·stride: row i0 + s of op(A), or (transposed) its column s from row i0 on.
            float* a0 = aP + a.Offset + (a.Transposed ? i0 : (long)i0 * a.Stride);
            for (int s = 0; s < storedRows; s++)
            {
                int count = NonZeros<W, V>(a0 + (long)s * a.Stride, storedLength, found);
                if (a.Transposed) for (int e = 0; e < count; e++) start[found[e] + 1]++;
                else start[s + 1] = count;
            }
            for (int r = 0; r < rows; r++) start[r + 1] += start[r];
            Array.Copy(start, next, rows);
            // The count varies from call to call: the shared pool, not the exact-length tensor pool, holds these.
            int[] index = ArrayPool<int>.Shared.Rent(Math.Max(start[rows], 1));
            float[] value = ArrayPool<float>.Shared.Rent(Math.Max(start[rows], 1));
            for (int s = 0; s < storedRows; s++)
            {
                float* stored = a0 + (long)s * a.Stride;
                int count = NonZeros<W, V>(stored, storedLength, found);
                for (int e = 0; e < count; e++)
                {
                    int r = a.Transposed ? found[e] : s, at = next[r]++;
                    index[at] = a.Transposed ? s : found[e];
                    value[at] = stored[found[e]];
                }
            }
            fixed (float* bP = b.Array, cP = c.Array, values = value)
            fixed (int* indices = index)
                for (int r = 0; r < rows; r++)
                    MultiplyRow<W, V>(start[r + 1] - start[r], indices + start[r], values + start[r], bP + b.Offset, b.Stride, n,
                        cP + c.Offset + (long)(i0 + r) * c.Stride, accumulate);
            ArrayPool<int>.Shared.Return(index);
            ArrayPool<float>.Shared.Return(value);
        }
        TensorPool<int>.Return(start);
        TensorPool<int>.Return(next);
        TensorPool<int>.Return(positions);
    }

    /// <summary>y [n] = x [k]·W [k, n] (W row-major, rows of n): the one-row product of a generated token.</summary>
    public static void RowTimesMatrix(ReadOnlySpan<float> x, ReadOnlySpan<float> w, Span<float> y)
    {
        switch (Simd.Widest)
        {
            case 512: RowTimesMatrix<Float512, Vector512<float>>(x, w, y); break;
            case 256: RowTimesMatrix<Float256, Vector256<float>>(x, w, y); break;
            default: RowTimesMatrix<Float128, Vector128<float>>(x, w, y); break;
        }
    }

    /// <summary><see cref="RowTimesMatrix"/> at width W.</summary>
    internal static void RowTimesMatrix<W, V>(ReadOnlySpan<float> x, ReadOnlySpan<float> w, Span<float> y) where W : struct, IFloatVector<V> where V : struct
    {
        int k = x.Length;
        int[] index = TensorPool<int>.Rent(k + 16 + PrefetchRows); // room for NonZeros' 16-lane stores and the rows read ahead
        float[] value = TensorPool<float>.Rent(k);
        fixed (float* xP = x, wP = w, yP = y, values = value)
        fixed (int* indices = index)
        {
            int count = NonZeros<W, V>(xP, k, indices);
            for (int e = 0; e < count; e++) values[e] = xP[indices[e]];
            PadList(indices, count, PrefetchRows);
            MultiplyRow<W, V>(count, indices, values, wP, y.Length, y.Length, yP, accumulate: false, streamed: true);
        }
        TensorPool<int>.Return(index);
        TensorPool<float>.Return(value);
    }

    /// <summary>y[i] = W[i, :]·x where mask[i] ≠ 0, else 0; W row-major [y.Length, x.Length].</summary>
    public static void MatrixTimesVector(ReadOnlySpan<float> w, ReadOnlySpan<float> x, Span<float> y, ReadOnlySpan<float> mask)
    {
        switch (Simd.Widest)
        {
            case 512: MatrixTimesVector<Float512, Vector512<float>>(w, x, y, mask); break;
            case 256: MatrixTimesVector<Float256, Vector256<float>>(w, x, y, mask); break;
            default: MatrixTimesVector<Float128, Vector128<float>>(w, x, y, mask); break;
        }
    }

    /// <summary><see cref="MatrixTimesVector"/> at width W.</summary>
    internal static void MatrixTimesVector<W, V>(ReadOnlySpan<float> w, ReadOnlySpan<float> x, Span<float> y, ReadOnlySpan<float> mask) where W : struct, IFloatVector<V> where V : struct
    {
        int m = y.Length, k = x.Length;
        int[] index = TensorPool<int>.Rent(m + 16 + 3 + PrefetchRows); // room for NonZeros' 16-lane stores, the padding to four and the rows read ahead
        y.Clear();
        fixed (float* wP = w, xP = x, yP = y, maskP = mask)
        fixed (int* rows = index)
        {
            int count = NonZeros<W, V>(maskP, m, rows);
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

    /// <summary>
    /// c[0..n) (+)= Σ_e values[e]·b[indices[e], 0..n): one row of C from its row of A in compressed form, in register
    /// tiles of 8 vectors (128 columns at 512 bits, 64 at 256, 32 at 128), then one vector, then one column. The terms
    /// go in runs of <see cref="RowRun"/>, all tiles of one run before the next, so B's rows are read from memory once,
    /// not once per tile (a row of 256 floats is two tiles at 512 bits); each element still adds its terms in order of
    /// p, so any thread count gives the same bits, and so does any width where the CPU has FMA (one rounding per term).
    /// <paramref name="streamed"/>: C is one row, so this product reads each row of B once: its tiles are requested
    /// <see cref="PrefetchRows"/> terms ahead (indices valid that far, see PadList), non-temporally, as ρ, the largest
    /// B of a generated token, is read once per token and should not push the encoders out of the caches (the
    /// decoder's rows take the same path). Several rows of C read each row of B again: the caches keep it, no prefetch.
    /// </summary>
    private static void MultiplyRow<W, V>(int count, int* indices, float* values, float* b, int ldb, int n, float* c, bool accumulate, bool streamed = false)
        where W : struct, IFloatVector<V> where V : struct
    {
        int j = 0;
        if (W.IsAccelerated)
        {
            int e = 0, tile = 8 * W.Count;
            do // once even with no terms, to zero C's row when not accumulating
            {
                int run = Math.Min(RowRun, count - e);
                bool addToC = accumulate || e > 0;
                for (j = 0; j <= n - tile; j += tile)
                    RowTile<W, V>(run, indices + e, values + e, b + j, ldb, c + j, addToC, streamed);
                for (; j <= n - W.Count; j += W.Count)
                    RowVector<W, V>(run, indices + e, values + e, b + j, ldb, c + j, addToC);
                e += RowRun;
            } while (e < count);
        }
        for (; j < n; j++) // columns past the last vector
        {
            float sum = accumulate ? c[j] : 0;
            for (int e = 0; e < count; e++) sum = MathF.FusedMultiplyAdd(values[e], b[(long)indices[e] * ldb + j], sum);
            c[j] = sum;
        }
    }

    /// <summary>
    /// Writes the positions of the non-zeros of row[0..length) to found (room for length + 16), in order;
    /// returns how many. A register's positions are stored with no branch per element where the ISA can (AVX-512's
    /// compress; a branch on each non-zero mispredicts about once per non-zero, which costs more than the arithmetic),
    /// elsewhere one step per non-zero of a register's mask, none for a register of zeros.
    /// </summary>
    private static int NonZeros<W, V>(float* row, int length, int* found) where W : struct, IFloatVector<V> where V : struct
    {
        int count = 0, j = 0;
        if (W.IsAccelerated)
            for (; j <= length - W.Count; j += W.Count)
                count += W.StoreNonZeroPositions(W.Load(row + j), j, found + count);
        for (; j < length; j++) if (row[j] != 0) found[count++] = j;
        return count;
    }

    /// <summary>c[0..W.Count) (+)= Σ_e values[e]·b[indices[e], 0..W.Count): the columns after the last full tile.</summary>
    private static void RowVector<W, V>(int count, int* indices, float* values, float* b, int ldb, float* c, bool accumulate) where W : struct, IFloatVector<V> where V : struct
    {
        var sum = accumulate ? W.Load(c) : default;
        for (int e = 0; e < count; e++)
            sum = W.MultiplyAdd(W.Create(values[e]), W.Load(b + (long)indices[e] * ldb), sum);
        W.Store(sum, c);
    }

    /// <summary>
    /// c[0..8·W.Count) (+)= Σ_e values[e]·b[indices[e], 0..8·W.Count): the row of C stays in 8 registers. With
    /// <paramref name="streamed"/>, the same columns of the row <see cref="PrefetchRows"/> terms on are requested.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization | MethodImplOptions.NoInlining)]
    private static void RowTile<W, V>(int count, int* indices, float* values, float* b, int ldb, float* c, bool accumulate, bool streamed)
        where W : struct, IFloatVector<V> where V : struct
    {
        int w = W.Count;
        V c0 = default, c1 = default, c2 = default, c3 = default, c4 = default, c5 = default, c6 = default, c7 = default;
        if (accumulate)
            (c0, c1, c2, c3, c4, c5, c6, c7) = (W.Load(c), W.Load(c + w), W.Load(c + 2 * w), W.Load(c + 3 * w),
                W.Load(c + 4 * w), W.Load(c + 5 * w), W.Load(c + 6 * w), W.Load(c + 7 * w));
        for (int e = 0; e < count; e++)
        {
            if (streamed)
            {
                float* later = b + (long)indices[e + PrefetchRows] * ldb;
                for (int line = 0; line < 8 * w; line += 16) Simd.PrefetchNonTemporal(later + line);
            }
            var x = W.Create(values[e]);
            float* row = b + (long)indices[e] * ldb;
            c0 = W.MultiplyAdd(x, W.Load(row), c0);
            c1 = W.MultiplyAdd(x, W.Load(row + w), c1);
            c2 = W.MultiplyAdd(x, W.Load(row + 2 * w), c2);
            c3 = W.MultiplyAdd(x, W.Load(row + 3 * w), c3);
            c4 = W.MultiplyAdd(x, W.Load(row + 4 * w), c4);
            c5 = W.MultiplyAdd(x, W.Load(row + 5 * w), c5);
            c6 = W.MultiplyAdd(x, W.Load(row + 6 * w), c6);
            c7 = W.MultiplyAdd(x, W.Load(row + 7 * w), c7);
        }
        W.Store(c0, c); W.Store(c1, c + w); W.Store(c2, c + 2 * w); W.Store(c3, c + 3 * w);
        W.Store(c4, c + 4 * w); W.Store(c5, c + 5 * w); W.Store(c6, c + 6 * w); W.Store(c7, c + 7 * w);
    }
}
