using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace Bdh.Tensors.Kernels;

/// <summary>
/// BDH's attention: <c>out = tril(Q Qᵀ, −1) · V</c> per head and sequence — no softmax, keys equal
/// queries, and the diagonal excluded (a token does not attend to itself). Heads lead, as the model lays
/// them out: Q: [H, B, T, N], V: [1 or H, B, T, D], scores S: [H, B, T, T], out: [H, B, T, D]. Q is used as given, or
/// with a <see cref="RopeTable"/> as rope(Q) (BDH's rope(xs)), rotated one sequence at a time into a block of its own
/// where it is read, forward and backward, and never stored: the whole rotated tensor would be written, read back, and
/// its gradient written and read again, four passes over memory (8 MB each a layer at the `cpu` preset).
/// </summary>
public static class CausalLinearAttention
{
    public static void Forward<T>(Tensor<T> q, Tensor<T> v, Tensor<T> scores, Tensor<T> output, RopeTable? rope = null)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        var (h, b, t, n, d) = Dims(q, v, rope);
        Parallelism.For(h * b, bh =>
        {
            int vOff = VOffset(bh, b, v.Shape[0], t, d);
            var s = scores.Matrix(bh * t * t, t);
            var (queries, rotated) = Queries(q, bh, t, n, rope);
            LowerScores(t, n, queries, queries, s);
            Gemm.Multiply(t, d, t, s, v.Matrix(vOff, d), output.Matrix(bh * t * d, d), false, parallel: false, Causal.LowerA);
            if (rotated != null) TensorPool<T>.Return(rotated);
        });
    }

    /// <summary>
    /// From dOut: dS = tril(dOut·Vᵀ, −1); dQ (+)= (dS + dSᵀ)·Q; dV (+)= Σ_heads Sᵀ·dOut, for the slots given (null:
    /// that input needs no gradient). <paramref name="scores"/> are the forward's S. With <paramref name="rope"/>, the
    /// forward's queries were rope(Q): each sequence's are rotated again, and the gradient of them turned back by the
    /// transposed rotation into Q's slot; <paramref name="reluOutput"/> (Q, a ReLU's output) then stores it zero wherever
    /// Q is not positive, the ReLU's backward folded in. A dq slot whose tensor's only copy is lists (<see cref="RowLists.IsOnlyCopy"/>:
    /// BDH's xs, whose gradient from xs⊙ys is non-zero at a few places) has them added to each sequence's block after it is
    /// stored, not read back from memory; the tensor is then whole, and the lists go.
    /// </summary>
    public static void Backward<T>(Tensor<T> q, Tensor<T> v, Tensor<T> scores, Tensor<T> dOutput, GradSlot<T>? dq, GradSlot<T>? dv,
        RopeTable? rope = null, Tensor<T>? reluOutput = null) where T : unmanaged, IFloatingPointIeee754<T>
    {
        var (h, b, t, n, d) = Dims(q, v, rope);
        if (reluOutput != null && rope is null) throw new ArgumentException("the attention folds in a ReLU's backward only with rope");
        if (dq is { } dqSlot)
        {
            var listed = dqSlot.Tensor.NonZeroRows is { IsOnlyCopy: true } lists ? lists : null;
            if (listed != null && (rope is null || typeof(T) != typeof(float)))
                throw new ArgumentException("the attention adds a listed dq only as it turns dq back by the rotation");
            if (listed != null && (listed.Rows != h * b * t || listed.Cols != n))
                throw new ArgumentException($"a listed dq is [{listed.Rows}, {listed.Cols}]: its rows are not Q's [{h * b * t}, {n}]");
            using var dScores = Tensor<T>.Empty(scores.Shape);
            Parallelism.For(h * b, bh =>
            {
                var ds = dScores.Matrix(bh * t * t, t);
                LowerScores(t, d, dOutput.Matrix(bh * t * d, d), v.Matrix(VOffset(bh, b, v.Shape[0], t, d), d), ds);
                Symmetrize(dScores.Span.Slice(bh * t * t, t * t), t); // dS + dSᵀ: one product reads Q once
                var (queries, rotated) = Queries(q, bh, t, n, rope);
                if (rotated is null)
                {
                    Gemm.Multiply(t, n, t, ds, queries, dqSlot.Tensor.Matrix(bh * t * n, n), dqSlot.Accumulate, parallel: false);
                    return;
                }
                // The gradient of the rotated queries, then turned back by the transposed rotation into Q's.
                T[] dRotated = TensorPool<T>.Rent(t * n);
                int first = TensorPool<T>.AlignedStart(dRotated);
                Gemm.Multiply(t, n, t, ds, queries, new MatrixRef<T>(dRotated, first, n), accumulate: false, parallel: false);
                var block = dqSlot.Tensor.Span.Slice(bh * t * n, t * n);
                Rope.Backward<T>(dRotated.AsSpan(first, t * n), block, rope!, 0,
                    dqSlot.Accumulate && listed is null, reluOutput is null ? default : reluOutput.Span.Slice(bh * t * n, t * n));
                listed?.AddRowsInto(bh * t, t, MemoryMarshal.Cast<T, float>(block)); // at places where Q > 0: the mask keeps them
                TensorPool<T>.Return(dRotated);
                TensorPool<T>.Return(rotated);
            });
            if (listed != null) dqSlot.Tensor.NonZeroRows = null;
        }
        if (dv is { } dvSlot)
        {
            int vHeads = v.Shape[0];
            // One task per block of dV; the heads that share it (V broadcast over heads) are summed in order.
            Parallelism.For(vHeads * b, bv =>
            {
                int batch = bv % b;
                bool add = dvSlot.Accumulate;
                for (int head = vHeads == 1 ? 0 : bv / b; head < (vHeads == 1 ? h : bv / b + 1); head++, add = true)
                {
                    int bh = head * b + batch;
                    Gemm.Multiply(t, d, t, scores.Matrix(bh * t * t, t, true),
                        dOutput.Matrix(bh * t * d, d), dvSlot.Tensor.Matrix(bv * t * d, d), add, parallel: false, Causal.UpperA);
                }
            });
        }
    }

    private static (int H, int B, int T, int N, int D) Dims<T>(Tensor<T> q, Tensor<T> v, RopeTable? rope) where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (q.Rank != 4 || v.Rank != 4 || v.Shape[1] != q.Shape[1] || v.Shape[2] != q.Shape[2] || (v.Shape[0] != 1 && v.Shape[0] != q.Shape[0]))
            throw new ArgumentException($"attention wants Q [H,B,T,N] and V [1|H,B,T,D], got {Tensor<T>.Format(q.Shape)} and {Tensor<T>.Format(v.Shape)}");
        if (rope != null && (rope.Length != q.Shape[2] || rope.N != q.Shape[3]))
            throw new ArgumentException($"rope table is [{rope.Length}, {rope.N}], Q is {Tensor<T>.Format(q.Shape)}");
        return (q.Shape[0], q.Shape[1], q.Shape[2], q.Shape[3], v.Shape[3]);
    }

    /// <summary>
    /// Sequence bh's queries [t, n]: Q's block where it lies, or with a rope table rope(Q)'s, rotated into a rented array
    /// (returned as well: the caller gives it back to the pool).
    /// </summary>
    private static (MatrixRef<T> Queries, T[]? Rotated) Queries<T>(Tensor<T> q, int bh, int t, int n, RopeTable? rope) where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (rope is null) return (q.Matrix(bh * t * n, n), null);
        T[] rotated = TensorPool<T>.Rent(t * n);
        int first = TensorPool<T>.AlignedStart(rotated);
        Rope.Forward<T>(q.Span.Slice(bh * t * n, t * n), rotated.AsSpan(first, t * n), rope);
        return (new MatrixRef<T>(rotated, first, n), rotated);
    }

    /// <summary>Where V of (head, sequence) block hb = head·B + batch starts: the batch's block when V is shared by the heads.</summary>
    private static int VOffset(int hb, int batches, int vHeads, int t, int d) =>
        (vHeads == 1 ? hb % batches : hb) * t * d;

    /// <summary>dS + dSᵀ in place, from dS below the diagonal (what is on and above it is not read).</summary>
    private static void Symmetrize<T>(Span<T> s, int t) where T : unmanaged, IFloatingPointIeee754<T>
    {
        for (int i = 0; i < t; i++)
        {
            s[i * t + i] = T.Zero;
            for (int j = 0; j < i; j++) s[j * t + i] = s[i * t + j];
        }
    }

    /// <summary>
    /// S = tril(A·Bᵀ, −1) for one sequence, A and B [t, k] (Q and Q, or dOut and V): by <see cref="StrictlyLowerProduct{T}"/>
    /// where the operands are small enough to stay in a core's L2 cache while every tile reads them again (the `cpu`
    /// preset's Q block, 64×512: 128 KB), else by the GEMM, which packs and blocks B and computes only its tiles that reach
    /// below the diagonal (the paper config's Q block, 512×8192: 16 MB, which the dot-product tiles read from memory tile
    /// after tile, 2.4× slower than the GEMM).
    /// </summary>
    private static void LowerScores<T>(int t, int k, MatrixRef<T> a, MatrixRef<T> b, MatrixRef<T> s) where T : unmanaged, IFloatingPointIeee754<T>
    {
        if ((long)t * k <= DotProductLimit)
        {
            StrictlyLowerProduct(t, k, a, b, s, Simd.Widest);
            return;
        }
        Gemm.Multiply(t, t, k, a, b with { Transposed = true }, s, false, parallel: false, Causal.LowerOutput);
        for (int i = 0; i < t; i++) s.Array.AsSpan(s.Offset + i * s.Stride + i, t - i).Clear(); // only strictly earlier tokens
    }

    /// <summary>The most elements of A that <see cref="LowerScores{T}"/> multiplies by dot-product tiles: 256 KB of floats.</summary>
    internal const int DotProductLimit = 1 << 16;

    /// <summary>
    /// S = tril(A·Bᵀ, −1) for one sequence: S[i, j] = Σ_p A[i, p]·B[j, p] for j &lt; i, and 0 on and above the diagonal (only
    /// strictly earlier tokens contribute). A and B are [t, k]. Both are read along their rows, so B needs no transposed
    /// copy, and only the 4×4 tiles that reach below the diagonal are computed: 136 of 256 at t = 64, where the GEMM's 8×32
    /// tiles compute 12 of 16. float runs <see cref="DotTile{W, V}"/> at <paramref name="width"/> bits; the rows it leaves
    /// (t mod 4, or all of them in double or without vectors) take a dot product per score.
    /// </summary>
    internal static unsafe void StrictlyLowerProduct<T>(int t, int k, MatrixRef<T> a, MatrixRef<T> b, MatrixRef<T> s, int width)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        for (int i = 0; i < t; i++) s.Array.AsSpan(s.Offset + i * s.Stride, t).Clear();
        int tiled = 0; // rows [0, tiled) done by tiles
        if (typeof(T) == typeof(float))
            fixed (T* aP = a.Array, bP = b.Array, sP = s.Array)
            {
                float* aRows = (float*)aP + a.Offset, bRows = (float*)bP + b.Offset, sRows = (float*)sP + s.Offset;
                tiled = width switch
                {
                    512 => LowerTiles<Float512, Vector512<float>>(t, k, aRows, a.Stride, bRows, b.Stride, sRows, s.Stride),
                    256 => LowerTiles<Float256, Vector256<float>>(t, k, aRows, a.Stride, bRows, b.Stride, sRows, s.Stride),
                    128 => LowerTiles<Float128, Vector128<float>>(t, k, aRows, a.Stride, bRows, b.Stride, sRows, s.Stride),
                    _ => 0,
                };
            }
        for (int i = tiled; i < t; i++)
            for (int j = 0; j < i; j++)
                s.Array[s.Offset + i * s.Stride + j] = TP.Dot<T>(a.Array.AsSpan(a.Offset + i * a.Stride, k), b.Array.AsSpan(b.Offset + j * b.Stride, k));
    }

    /// <summary>StrictlyLowerProduct's rows in whole tiles of 4: tile (i0, j0) for every j0 ≤ i0. Returns how many rows it did.</summary>
    private static unsafe int LowerTiles<W, V>(int t, int k, float* a, int lda, float* b, int ldb, float* s, int lds)
        where W : struct, IFloatVector<V> where V : struct
    {
        float* tile = stackalloc float[16];
        int rows = t & ~3;
        for (int i0 = 0; i0 < rows; i0 += 4)
            for (int j0 = 0; j0 <= i0; j0 += 4)
            {
                DotTile<W, V>(k, a + (long)i0 * lda, lda, b + (long)j0 * ldb, ldb, tile);
                for (int r = 0; r < 4; r++)
                    for (int c = 0; c < 4 && j0 + c < i0 + r; c++) s[(long)(i0 + r) * lds + j0 + c] = tile[4 * r + c];
            }
        return rows;
    }

    /// <summary>
    /// tile[4r + c] = a_r·b_c for four rows of A and four of B (k floats each, a stride apart): each dot product in a vector
    /// of partial sums along p, whose lanes are added up together at the end. As many rows of A at a time as the register
    /// file holds beside their 4·rows accumulators, their rows' vectors of A and one of B: 4 (21 registers) where the JIT
    /// has 32 (<see cref="Simd.VectorRegisters"/>), 2 (11) where it has 16; four rows spilled five accumulators to the
    /// stack and back on every step of AVX2's loop. Per step, rows + 4 loads for 4·rows multiply-adds.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization | MethodImplOptions.NoInlining)]
    private static unsafe void DotTile<W, V>(int k, float* a, nint lda, float* b, nint ldb, float* tile)
        where W : struct, IFloatVector<V> where V : struct
    {
        int rows = Simd.VectorRegisters == 32 ? 4 : 2; // a constant to the JIT: the third and fourth rows compile away at 2
        float* b0 = b, b1 = b0 + ldb, b2 = b1 + ldb, b3 = b2 + ldb;
        for (int r0 = 0; r0 < 4; r0 += rows, a += rows * lda, tile += 4 * rows)
        {
            float* a0 = a, a1 = a0 + lda, a2 = a1 + lda, a3 = a2 + lda;
            V c00 = default, c01 = default, c02 = default, c03 = default, c10 = default, c11 = default, c12 = default, c13 = default,
                c20 = default, c21 = default, c22 = default, c23 = default, c30 = default, c31 = default, c32 = default, c33 = default;
            int p = 0;
            for (; p <= k - W.Count; p += W.Count)
            {
                V x0 = W.Load(a0 + p), x1 = W.Load(a1 + p), x2 = rows == 4 ? W.Load(a2 + p) : default, x3 = rows == 4 ? W.Load(a3 + p) : default;
                V y = W.Load(b0 + p); c00 = W.MultiplyAdd(x0, y, c00); c10 = W.MultiplyAdd(x1, y, c10);
                if (rows == 4) { c20 = W.MultiplyAdd(x2, y, c20); c30 = W.MultiplyAdd(x3, y, c30); }
                y = W.Load(b1 + p); c01 = W.MultiplyAdd(x0, y, c01); c11 = W.MultiplyAdd(x1, y, c11);
                if (rows == 4) { c21 = W.MultiplyAdd(x2, y, c21); c31 = W.MultiplyAdd(x3, y, c31); }
                y = W.Load(b2 + p); c02 = W.MultiplyAdd(x0, y, c02); c12 = W.MultiplyAdd(x1, y, c12);
                if (rows == 4) { c22 = W.MultiplyAdd(x2, y, c22); c32 = W.MultiplyAdd(x3, y, c32); }
                y = W.Load(b3 + p); c03 = W.MultiplyAdd(x0, y, c03); c13 = W.MultiplyAdd(x1, y, c13);
                if (rows == 4) { c23 = W.MultiplyAdd(x2, y, c23); c33 = W.MultiplyAdd(x3, y, c33); }
            }
            W.StoreSums(c00, c01, c02, c03, c10, c11, c12, c13, tile);
            if (rows == 4) W.StoreSums(c20, c21, c22, c23, c30, c31, c32, c33, tile + 8);
            for (; p < k; p++) // the columns past the last full vector
                for (int r = 0; r < rows; r++)
                    for (int c = 0; c < 4; c++) tile[4 * r + c] = MathF.FusedMultiplyAdd(a[r * lda + p], b[c * ldb + p], tile[4 * r + c]);
        }
    }
}
