using System.Runtime.Intrinsics;
using System.Numerics;
using System.Runtime.CompilerServices;

using Bdh.Tensors.Kernels;

namespace Bdh.Tensors;

/// <summary>
/// C (+)= A·B for an A that is mostly zeros. BDH's xs⊙ys is a few percent non-zero once trained, and so is the gradient
/// that ys's ReLU passes back (ys has no use but xs⊙ys), so the decoder product, the backward products of both and their
/// weight gradients need a small fraction of the dense work. Each thread takes a range of rows of C; for each row it
/// lists the non-zeros of that row of op(A) (in order of p), then adds A[i, p]·B[p, :] for each, with the row of C held
/// in 8 vector registers (128 columns at 512 bits); an operand whose tensor has lists of its non-zeros (<see cref="RowLists"/>:
/// BDH's xy and dys) is not scanned, its lists are read. Every row adds its terms in order of p, so the result is the same
/// for any thread count. <see cref="Gemm.Multiply{T}"/> comes here when <see cref="IsSparse"/> says A, or B
/// (<see cref="MultiplyBySparseB"/>), is below <see cref="MaxDensityFor"/>; <see cref="Gemv"/>'s one-token products use
/// its row kernel (<see cref="MultiplyRow"/>) and non-zero scan (<see cref="NonZeros"/>).
/// </summary>
internal static unsafe class SparseGemm
{
    /// <summary>
    /// Below this fraction of non-zeros this kernel beats the packed dense one on BDH's shapes where op(A) is A as stored
    /// (xy·decoder, dC·Wᵀ): the dense kernel's time does not depend on the density, this one's grows with it. The
    /// crossover's measurements are in bench/README.md ("Sparse products").
    /// </summary>
    public const double MaxDensity = 0.16;

    /// <summary>
    /// <see cref="MaxDensity"/> where B is at most <see cref="CachedBBytes"/>, so each term's row of B comes from L2: the
    /// crossover there is near 30% (`bench -- sparse`, Zen 4, 2 threads: dX = dC·Wᵀ 0.64× the dense product at 20% and
    /// 0.79× at 30% at 512 bits, 0.68× and 0.91× at AVX2, 0.51× and 0.66× at 128 bits), which takes xs's input gradient
    /// (18–26% non-zero once trained) sparse. A B out of L2 (the `paper` config's 8 MB heads) made the sparse kernel 2.2×
    /// slower at 22%: it keeps <see cref="MaxDensity"/>. (AVX2 and 128 bits kept MaxDensity here too while they found
    /// non-zeros by a loop over each register's set bits: AVX2 was level with the dense product at 20%.)
    /// </summary>
    public const double MaxDensityCachedB = 0.25;

    /// <summary>B's size up to which <see cref="MaxDensityCachedB"/> holds: half the L2 of the AVX-512 CPUs measured (1–1.25 MB).</summary>
    internal const long CachedBBytes = 512 * 1024;

    /// <summary>
    /// <see cref="MaxDensity"/> for an A stored transposed (the weight gradients xyᵀ·dY, dCᵀ·X and dysᵀ·ln(a)), whose rows
    /// of op(A) are A's columns (<see cref="MultiplyRowsOfTransposedA"/>): `bench -- sparse`'s dW = Xᵀ·dC took 0.62× the
    /// dense product at 20% and 0.77× at 30% at 512 bits, 0.73× and 0.89× at AVX2 (Zen 4, 2 threads), which takes the
    /// encoder's gradient (dC 18–26% non-zero once trained) sparse.
    /// </summary>
    public const double MaxDensityTransposed = 0.25;

    /// <summary>
    /// Below this density a transposed A that comes with lists of its non-zeros (<see cref="RowLists"/>: xy in xyᵀ·dY,
    /// dys in dysᵀ·ln(a)) is listed by columns from its lists; above it, it is turned a block at a time as an A without
    /// lists is. `bench -- sparse`'s xyᵀ·dY from the lists took 0.12× the dense product at 2%, 0.30× at 6%, 0.59–0.71×
    /// at 12% and 0.93–1.19× at 20%, by blocks 0.33×, 0.40×, 0.56× and 0.63–0.67×.
    /// </summary>
    public const double MaxDensityFromLists = 0.1;

    private const int RowRun = 32;   // rows of B per run of MultiplyRow: 32 KB at 256 columns, in L1/L2 for the next tile
    private const int TransposedBlock = 64; // A's stored rows a block of MultiplyRowsOfTransposedBlocks: 64 rows of B in L1

    /// <summary>
    /// About how many of an operand's stored rows <see cref="IsSparse"/> counts, spread evenly over them: one in each run
    /// of rows / SampledRows (rounded down), so every row of an operand with fewer than 2·SampledRows, else from SampledRows
    /// to 2·SampledRows − 1.
    /// </summary>
    internal const int SampledRows = 64;

    /// <summary>
    /// Whether op(A) [m, k] has at most <see cref="MaxDensityFor"/> non-zeros, judged from <see cref="SampledRows"/> of its stored rows spread evenly: every large float
    /// product asks, and a full count of an operand fresh from the op before it took a third of a sparse product's time
    /// in a step (0.36 ms of xy·decoder_h's 1.5 at 6% non-zeros, on the Xeon), where 64 rows of 512 tell the density to a
    /// fraction of a percent. The count also stops as soon as it passes the bound. The rows read depend only on the
    /// shape, so the choice is the same for any thread count.
    /// </summary>
    public static bool IsSparse(int m, int n, int k, MatrixRef<float> a) => HasAtMost(MaxDensityFor(n, k, a.Transposed), m, k, a);

    /// <summary>
    /// The density below which the sparse kernel beats the dense one for op(A)·B with B [k, n]: for an A stored transposed
    /// <see cref="MaxDensityTransposed"/>, else <see cref="MaxDensityCachedB"/> or <see cref="MaxDensity"/>.
    /// </summary>
    public static double MaxDensityFor(int n, int k, bool transposedA) =>
        transposedA ? MaxDensityTransposed
        : (long)k * n * sizeof(float) <= CachedBBytes ? MaxDensityCachedB
        : MaxDensity;

    /// <summary>Whether op(A) [m, k] has at most this fraction of non-zeros, judged as <see cref="IsSparse"/> judges it.</summary>
    public static bool HasAtMost(double density, int m, int k, MatrixRef<float> a)
    {
        // Stored rows: m rows of k, or k rows of m when transposed. One row of each run of `step` is read, at a scattered
        // place in it: rows every `step` apart would fall in step with a pattern that repeats along the tokens (the
        // first token of each sequence attends to nothing, so its ys and xy are all zeros) and misjudge the density.
        int rows = a.Transposed ? k : m, cols = a.Transposed ? m : k, step = Math.Max(1, rows / SampledRows), samples = rows / step;
        if (a.Lists is { } lists) return lists.NonZeros(a.ListsRow, rows) <= (long)(density * rows * cols); // counted, not sampled
        long limit = (long)(density * samples * cols), nonZero = 0;
        for (int i = 0; i < samples && nonZero <= limit; i++)
        {
            int r = i * step + (int)(((uint)i * 2654435769u >> 16) % (uint)step); // Fibonacci hashing of i
            nonZero += Elementwise.CountNonZeros<float>(a.Array.AsSpan(a.Offset + r * a.Stride, cols));
        }
        return nonZero <= limit;
    }

    /// <summary>
    /// Whether B [k, n] of op(A) [m, k]·B is sparse enough for <see cref="MultiplyBySparseB"/>, which multiplies it as Bᵀ,
    /// an A of n rows stored the other way round, by op(A)ᵀ [k, m]: the bound is that of such a product.
    /// </summary>
    public static bool IsSparseB(int m, int n, int k, MatrixRef<float> b) => IsSparse(n, m, k, b with { Transposed = !b.Transposed });

    /// <summary>
    /// C (+)= op(A)·op(B) for a mostly-zero op(A). A transposed B (a weight, in the product that gives a ReLU's input its
    /// gradient: dX = dC·Wᵀ) is first copied row-major, [k, n]: the kernel adds whole rows of it.
    /// </summary>
    public static void Multiply(int m, int n, int k, MatrixRef<float> a, MatrixRef<float> b, MatrixRef<float> c, bool accumulate, bool parallel)
    {
        if (b.Transposed)
        {
            float[] rows = TensorPool<float>.Rent(k * n);
            int first = TensorPool<float>.AlignedStart(rows); // the kernel's loads of a row, each one cache line where n is a multiple of 16
            Layout.Transpose<float>(n, k, 1, b.Array, b.Offset, b.Stride, rows, first, n, accumulate: false); // stored [n, k] → [k, n]
            Multiply(m, n, k, a, new MatrixRef<float>(rows, first, n), c, accumulate, parallel);
            TensorPool<float>.Return(rows);
            return;
        }
        switch (Simd.Widest)
        {
            case 512: Multiply<Float512, Vector512<float>>(m, n, k, a, b, c, accumulate, parallel); break;
            case 256: Multiply<Float256, Vector256<float>>(m, n, k, a, b, c, accumulate, parallel); break;
            default: Multiply<Float128, Vector128<float>>(m, n, k, a, b, c, accumulate, parallel); break; // 128 bits, or scalar where W.IsAccelerated is false
        }
    }

    /// <summary>
    /// C (+)= op(A)·B for a mostly-zero B (a ReLU's masked gradient dC, in the product that gives its weight's gradient:
    /// dW = Xᵀ·dC): Cᵀ = Bᵀ·op(A)ᵀ by the sparse kernel into a scratch [n, m], then added to C transposed.
    /// </summary>
    public static void MultiplyBySparseB(int m, int n, int k, MatrixRef<float> a, MatrixRef<float> b, MatrixRef<float> c, bool accumulate, bool parallel)
    {
        float[] cT = TensorPool<float>.Rent(n * m);
        int first = TensorPool<float>.AlignedStart(cT);
        Multiply(n, m, k, b with { Transposed = !b.Transposed }, a with { Transposed = !a.Transposed }, new MatrixRef<float>(cT, first, m), accumulate: false, parallel);
        Layout.Transpose<float>(n, m, 1, cT, first, m, c.Array, c.Offset, c.Stride, accumulate);
        TensorPool<float>.Return(cT);
    }

    /// <summary><see cref="Multiply"/> at width W.</summary>
    internal static void Multiply<W, V>(int m, int n, int k, MatrixRef<float> a, MatrixRef<float> b, MatrixRef<float> c, bool accumulate, bool parallel)
        where W : struct, IFloatVector<V> where V : struct
    {
        // A transposed A's lists list its columns faster than turning it by blocks only while they are short (lists that
        // are A's only copy are all there is).
        if (a.Transposed && a.Lists is { IsOnlyCopy: false } lists && lists.NonZeros(a.ListsRow, k) > MaxDensityFromLists * m * k) a = a with { Lists = null };
        Parallelism.ForRowRanges(m, parallel, (i0, i1) => MultiplyRows<W, V>(i0, i1, n, k, a, b, c, accumulate));
    }

    /// <summary>Rows [i0, i1) of C.</summary>
    private static void MultiplyRows<W, V>(int i0, int i1, int n, int k, MatrixRef<float> a, MatrixRef<float> b, MatrixRef<float> c, bool accumulate)
        where W : struct, IFloatVector<V> where V : struct
    {
        if (a.Transposed)
        {
            MultiplyRowsOfTransposedA<W, V>(i0, i1, n, k, a, b, c, accumulate);
            return;
        }
        if (a.Lists is { } lists)
        {
            fixed (float* bP = b.Array, cP = c.Array, values = lists.Value)
            fixed (int* indices = lists.Index)
                for (int i = i0; i < i1; i++)
                {
                    int r = a.ListsRow + i;
                    MultiplyRow<W, V>(lists.Count[r], indices + lists.Start[r], values + lists.Start[r], bP + b.Offset, b.Stride, n,
                        cP + c.Offset + (long)i * c.Stride, accumulate);
                }
            return;
        }
        // A plain: each row's non-zeros are found, 16 values at a time, and multiplied while the row is still in L1, so A
        // is read once (listing a whole chunk's rows first read it twice, and at 2% non-zeros that was most of the time).
        int[] positions = TensorPool<int>.Rent(k + 16); // + 16: NonZeros' last whole-register store
        float[] value = TensorPool<float>.Rent(k);
        fixed (float* aP = a.Array, bP = b.Array, cP = c.Array, values = value)
        fixed (int* found = positions)
            for (int i = i0; i < i1; i++)
            {
                int count = NonZeroTerms<W, V>(aP + a.Offset + (long)i * a.Stride, k, found, values);
                MultiplyRow<W, V>(count, found, values, bP + b.Offset, b.Stride, n, cP + c.Offset + (long)i * c.Stride, accumulate);
            }
        TensorPool<int>.Return(positions);
        TensorPool<float>.Return(value);
    }

    /// <summary>
    /// Rows [i0, i1) of C where A is stored transposed ([k, m]): op(A)'s rows are A's columns. With A's lists, they are
    /// listed for the whole chunk in compressed form (CSR: row r's non-zeros are entries start[r]..start[r+1], in order of
    /// p), from two passes over the lists (count per row, then place), then multiplied; without, a block of A at a time is
    /// turned (<see cref="MultiplyRowsOfTransposedBlocks"/>).
    /// </summary>
    private static void MultiplyRowsOfTransposedA<W, V>(int i0, int i1, int n, int k, MatrixRef<float> a, MatrixRef<float> b, MatrixRef<float> c, bool accumulate)
        where W : struct, IFloatVector<V> where V : struct
    {
        if (a.Lists is not { } lists)
        {
            MultiplyRowsOfTransposedBlocks<W, V>(i0, i1, n, k, a, b, c, accumulate);
            return;
        }
        int rows = i1 - i0;
        int[] start = TensorPool<int>.Rent(rows + 1), next = TensorPool<int>.Rent(rows);
        int[] positions = TensorPool<int>.Rent(rows);
        float[] found = TensorPool<float>.Rent(rows);
        Array.Clear(start, 0, rows + 1);
        fixed (float* foundValues = found)
        fixed (int* foundAt = positions)
        {
            for (int s = 0; s < k; s++)
            {
                int count = NonZerosInColumns(lists, a.ListsRow, s, i0, rows, foundAt, null);
                for (int e = 0; e < count; e++) start[foundAt[e] + 1]++;
            }
            for (int r = 0; r < rows; r++) start[r + 1] += start[r];
            Array.Copy(start, next, rows);
            // The count varies from call to call and between the threads' chunks: rented a power of two long (at most
            // twice the count), the lists of a step fall in a few classes the pool keeps, instead of a new length for
            // the LOH at every call.
            int listLength = (int)Math.Min(BitOperations.RoundUpToPowerOf2((uint)Math.Max(start[rows], 1)), (long)k * rows);
            int[] index = TensorPool<int>.Rent(listLength);
            float[] value = TensorPool<float>.Rent(listLength);
            for (int s = 0; s < k; s++)
            {
                int count = NonZerosInColumns(lists, a.ListsRow, s, i0, rows, foundAt, foundValues);
                for (int e = 0; e < count; e++)
                {
                    int at = next[foundAt[e]]++;
                    index[at] = s;
                    value[at] = foundValues[e];
                }
            }
            fixed (float* bP = b.Array, cP = c.Array, values = value)
            fixed (int* indices = index)
                for (int r = 0; r < rows; r++)
                    MultiplyRow<W, V>(start[r + 1] - start[r], indices + start[r], values + start[r], bP + b.Offset, b.Stride, n,
                        cP + c.Offset + (long)(i0 + r) * c.Stride, accumulate);
            TensorPool<int>.Return(index);
            TensorPool<float>.Return(value);
        }
        TensorPool<int>.Return(start);
        TensorPool<int>.Return(next);
        TensorPool<int>.Return(positions);
        TensorPool<float>.Return(found);
    }

    /// <summary>
    /// Rows [i0, i1) of C where A is stored transposed ([k, m]) and has no lists (a ReLU's masked gradient dC, in dW =
    /// Xᵀ·dC as dWᵀ = dCᵀ·X), or lists above <see cref="MaxDensityFromLists"/>, which <see cref="Multiply{W, V}"/> sets
    /// aside: A's stored rows [s0, s0 + <see cref="TransposedBlock"/>) in the chunk's columns are turned
    /// into a block [rows, TransposedBlock] (<see cref="Layout.Transpose{T}"/>, 4×4 blocks in registers), then each of its
    /// rows is scanned and its terms added into C's row, B's rows s0 on. Listing the whole chunk's rows first took two
    /// scans of A and a scattered write per non-zero, as long as the product itself at 20% non-zeros (`bench -- sparse`'s
    /// dW); a block is turned at the cost of a copy, and its rows of B, 32 KB at 128 columns, stay in L1 while every row
    /// of C adds from them. Each row of C still adds its terms in order of p.
    /// </summary>
    private static void MultiplyRowsOfTransposedBlocks<W, V>(int i0, int i1, int n, int k, MatrixRef<float> a, MatrixRef<float> b, MatrixRef<float> c, bool accumulate)
        where W : struct, IFloatVector<V> where V : struct
    {
        int rows = i1 - i0;
        float[] turned = TensorPool<float>.Rent(rows * TransposedBlock);
        int[] positions = TensorPool<int>.Rent(TransposedBlock + 16); // + 16: NonZeros' last whole-register store
        float[] found = TensorPool<float>.Rent(TransposedBlock);
        int first = TensorPool<float>.AlignedStart(turned);
        fixed (float* bP = b.Array, cP = c.Array, block = turned, values = found)
        fixed (int* foundAt = positions)
            for (int s0 = 0; s0 < k; s0 += TransposedBlock)
            {
                int depth = Math.Min(TransposedBlock, k - s0);
                Layout.Transpose<float>(depth, rows, 1, a.Array, a.Offset + s0 * a.Stride + i0, a.Stride, turned, first, TransposedBlock, accumulate: false);
                bool addToC = accumulate || s0 > 0; // the first block sets C's rows, with or without terms
                for (int r = 0; r < rows; r++)
                {
                    int count = NonZeroTerms<W, V>(block + first + r * TransposedBlock, depth, foundAt, values);
                    if (count > 0 || !addToC)
                        MultiplyRow<W, V>(count, foundAt, values, bP + b.Offset + (long)s0 * b.Stride, b.Stride, n, cP + c.Offset + (long)(i0 + r) * c.Stride, addToC);
                }
            }
        TensorPool<float>.Return(turned);
        TensorPool<int>.Return(positions);
        TensorPool<float>.Return(found);
    }

    /// <summary>
    /// The non-zeros of A's stored row s in columns [i0, i0 + rows), from A's lists (in order of column: the entries past
    /// the chunk's columns are not read): their columns from i0 to foundAt, and their values to foundValues unless it is
    /// null (room for rows); returns how many.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int NonZerosInColumns(RowLists lists, int listsRow, int s, int i0, int rows, int* foundAt, float* foundValues)
    {
        int r = listsRow + s, start = lists.Start[r], end = start + lists.Count[r], count = 0;
        fixed (int* index = lists.Index)
        fixed (float* value = lists.Value)
            for (int e = start; e < end && index[e] < i0 + rows; e++)
                if (index[e] >= i0)
                {
                    foundAt[count] = index[e] - i0;
                    if (foundValues != null) foundValues[count] = value[e];
                    count++;
                }
        return count;
    }

    /// <summary>
    /// c[0..n) (+)= Σ_e values[e]·b[indices[e], 0..n): one row of C from its row of A in compressed form, in register
    /// tiles of 8 vectors (128 columns at 512 bits, 64 at 256, 32 at 128), then one vector, then one column. The terms
    /// go in runs of <see cref="RowRun"/>, all tiles of one run before the next, so B's rows are read from memory once,
    /// not once per tile (a row of 256 floats is two tiles at 512 bits); each element still adds its terms in order of
    /// p, so any thread count gives the same bits, and so does any width where the CPU has FMA (one rounding per term).
    /// <paramref name="streamed"/>: C is one row, so this product reads each row of B once: its tiles are requested
    /// <see cref="Gemv.PrefetchRows"/> terms ahead (indices valid that far, see PadList), non-temporally, as ρ, the largest
    /// B of a generated token, is read once per token and should not push the encoders out of the caches (the
    /// decoder's rows take the same path). Several rows of C read each row of B again: the caches keep it, no prefetch.
    /// </summary>
    internal static void MultiplyRow<W, V>(int count, int* indices, float* values, float* b, int ldb, int n, float* c, bool accumulate, bool streamed = false)
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
    /// returns how many. A register's positions are stored with no branch on the data (a branch on each non-zero
    /// mispredicts about once per non-zero, which costs more than the arithmetic): AVX-512's compress, elsewhere a table's
    /// row of positions for the register's mask (<see cref="Simd.StoreSetBits"/>).
    /// </summary>
    internal static int NonZeros<W, V>(float* row, int length, int* found) where W : struct, IFloatVector<V> where V : struct
    {
        int count = 0, j = 0;
        if (W.IsAccelerated)
            for (; j <= length - W.Count; j += W.Count)
                count += W.StoreNonZeroPositions(W.Load(row + j), j, found + count);
        for (; j < length; j++) if (row[j] != 0) found[count++] = j;
        return count;
    }

    /// <summary>
    /// <see cref="NonZeros"/>, and each one's value beside its position (values has room for length): a row of A as the
    /// terms <see cref="MultiplyRow"/> adds.
    /// </summary>
    internal static int NonZeroTerms<W, V>(float* row, int length, int* found, float* values) where W : struct, IFloatVector<V> where V : struct
    {
        int count = NonZeros<W, V>(row, length, found);
        for (int e = 0; e < count; e++) values[e] = row[found[e]];
        return count;
    }

    /// <summary>c[0..W.Count) (+)= Σ_e values[e]·b[indices[e], 0..W.Count): the columns after the last full tile.</summary>
    private static void RowVector<W, V>(int count, int* indices, float* values, float* b, int ldb, float* c, bool accumulate) where W : struct, IFloatVector<V> where V : struct
    {
        var sum = accumulate ? W.Load(c) : default;
        for (int e = 0; e < count; e++)
            sum = W.MultiplyAdd(W.Broadcast(values + e), W.Load(b + (long)indices[e] * ldb), sum);
        W.Store(sum, c);
    }

    /// <summary>
    /// c[0..8·W.Count) (+)= Σ_e values[e]·b[indices[e], 0..8·W.Count): the row of C stays in 8 registers. With
    /// <paramref name="streamed"/>, the same columns of the row <see cref="Gemv.PrefetchRows"/> terms on are requested.
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
                float* later = b + (long)indices[e + Gemv.PrefetchRows] * ldb;
                for (int line = 0; line < 8 * w; line += 16) Simd.PrefetchNonTemporal(later + line);
            }
            var x = W.Broadcast(values + e);
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