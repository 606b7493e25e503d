namespace Bdh.Tensors.Kernels;

/// <summary>
/// BDH's attention: <c>out = tril(Q Qᵀ, −1) · V</c> per head and sequence — no softmax, keys equal
/// queries, and the diagonal excluded (a token does not attend to itself). Heads lead, as the model lays
/// them out: Q: [H, B, T, N] (already rotated), V: [1 or H, B, T, D], scores S: [H, B, T, T], out: [H, B, T, D].
/// </summary>
public static class CausalLinearAttention
{
    public static void Forward<T>(Tensor<T> q, Tensor<T> v, Tensor<T> scores, Tensor<T> output)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        var (h, b, t, n, d) = Dims(q, v);
        Parallelism.For(h * b, bh =>
        {
            int vOff = VOffset(bh, b, v.Shape[0], t, d);
            var s = scores.Matrix(bh * t * t, t);
            Gemm.Multiply(t, t, n, q.Matrix(bh * t * n, n), q.Matrix(bh * t * n, n, true), s, false, parallel: false, Causal.LowerOutput);
            MaskUpperAndDiagonal(scores.Span.Slice(bh * t * t, t * t), t);
            Gemm.Multiply(t, d, t, s, v.Matrix(vOff, d), output.Matrix(bh * t * d, d), false, parallel: false, Causal.LowerA);
        });
    }

    /// <summary>
    /// From dOut: dS = tril(dOut·Vᵀ, −1); dQ (+)= (dS + dSᵀ)·Q; dV (+)= Σ_heads Sᵀ·dOut, for the slots given (null:
    /// that input needs no gradient). <paramref name="scores"/> are the forward's S.
    /// </summary>
    public static void Backward<T>(Tensor<T> q, Tensor<T> v, Tensor<T> scores, Tensor<T> dOutput, GradSlot<T>? dq, GradSlot<T>? dv)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        var (h, b, t, n, d) = Dims(q, v);
        if (dq is { } dqSlot)
        {
            using var dScores = Tensor<T>.Empty(scores.Shape);
            Parallelism.For(h * b, bh =>
            {
                var ds = dScores.Matrix(bh * t * t, t);
                Gemm.Multiply(t, t, d, dOutput.Matrix(bh * t * d, d), v.Matrix(VOffset(bh, b, v.Shape[0], t, d), d, true), ds, false, parallel: false, Causal.LowerOutput);
                Symmetrize(dScores.Span.Slice(bh * t * t, t * t), t); // dS + dSᵀ: one product reads Q once
                Gemm.Multiply(t, n, t, ds, q.Matrix(bh * t * n, n), dqSlot.Tensor.Matrix(bh * t * n, n),
                    dqSlot.Accumulate, parallel: false);
            });
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

    private static (int H, int B, int T, int N, int D) Dims<T>(Tensor<T> q, Tensor<T> v) where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (q.Rank != 4 || v.Rank != 4 || v.Shape[1] != q.Shape[1] || v.Shape[2] != q.Shape[2] || (v.Shape[0] != 1 && v.Shape[0] != q.Shape[0]))
            throw new ArgumentException($"attention wants Q [H,B,T,N] and V [1|H,B,T,D], got {Tensor<T>.Format(q.Shape)} and {Tensor<T>.Format(v.Shape)}");
        return (q.Shape[0], q.Shape[1], q.Shape[2], q.Shape[3], v.Shape[3]);
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

    /// <summary>Zeroes S[i, j] for j ≥ i: only strictly earlier tokens contribute.</summary>
    private static void MaskUpperAndDiagonal<T>(Span<T> s, int t) where T : unmanaged, IFloatingPointIeee754<T>
    {
        for (int i = 0; i < t; i++) s.Slice(i * t + i, t - i).Clear();
    }
}
