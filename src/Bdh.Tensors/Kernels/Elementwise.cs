using System.Runtime.Intrinsics;

namespace Bdh.Tensors.Kernels;

/// <summary>ReLU, dropout and embedding gather: the small kernels, each with its backward.</summary>
public static class Elementwise
{
    public static void Relu<T>(ReadOnlySpan<T> x, Span<T> y) where T : unmanaged, IFloatingPointIeee754<T> =>
        TP.Max(x, T.Zero, y);

    /// <summary>
    /// dx (+)= dy where y &gt; 0. Using the output keeps ReLU's backward free of its input. Vectorized as
    /// a masked add: the signs of trained activations are close to random, so a branch per element
    /// would mispredict half the time.
    /// </summary>
    public static void ReluBackward<T>(ReadOnlySpan<T> y, ReadOnlySpan<T> dy, Span<T> dx) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int i = 0;
        if (Vector512.IsHardwareAccelerated)
            for (; i <= y.Length - Vector512<T>.Count; i += Vector512<T>.Count)
            {
                var positive = Vector512.GreaterThan(Vector512.Create(y.Slice(i)), Vector512<T>.Zero);
                var sum = Vector512.Create(dx.Slice(i)) + (Vector512.Create(dy.Slice(i)) & positive);
                sum.CopyTo(dx.Slice(i));
            }
        else if (Vector256.IsHardwareAccelerated)
            for (; i <= y.Length - Vector256<T>.Count; i += Vector256<T>.Count)
            {
                var positive = Vector256.GreaterThan(Vector256.Create(y.Slice(i)), Vector256<T>.Zero);
                var sum = Vector256.Create(dx.Slice(i)) + (Vector256.Create(dy.Slice(i)) & positive);
                sum.CopyTo(dx.Slice(i));
            }
        for (; i < y.Length; i++)
            if (y[i] > T.Zero) dx[i] += dy[i];
    }

    /// <summary>
    /// Inverted dropout mask: 0 with probability p, else 1/(1 − p), drawn from <paramref name="rng"/>.
    /// Each 64-bit draw decides two elements by comparing 32-bit halves with p·2³².
    /// </summary>
    public static void DropoutMask<T>(Rng rng, double p, Span<T> mask) where T : unmanaged, IFloatingPointIeee754<T>
    {
        T keep = T.CreateTruncating(1.0 / (1.0 - p));
        ulong threshold = (ulong)Math.Round(p * 4294967296.0);
        for (int i = 0; i < mask.Length; i += 2)
        {
            ulong bits = rng.NextUInt64();
            mask[i] = (bits & 0xFFFFFFFF) < threshold ? T.Zero : keep;
            if (i + 1 < mask.Length) mask[i + 1] = (bits >> 32) < threshold ? T.Zero : keep;
        }
    }

    /// <summary>y[i, :] = weight[ids[i], :] for weight [V, D].</summary>
    public static void EmbeddingForward<T>(ReadOnlySpan<T> weight, ReadOnlySpan<int> ids, Span<T> y, int d)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        int vocab = weight.Length / d;
        for (int i = 0; i < ids.Length; i++)
        {
            if ((uint)ids[i] >= (uint)vocab) throw new ArgumentOutOfRangeException(nameof(ids), $"token {ids[i]} outside vocabulary of {vocab}");
            weight.Slice(ids[i] * d, d).CopyTo(y.Slice(i * d, d));
        }
    }

    /// <summary>dweight[ids[i], :] += dy[i, :], in token order (deterministic).</summary>
    public static void EmbeddingBackward<T>(ReadOnlySpan<T> dy, ReadOnlySpan<int> ids, Span<T> dWeight, int d)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        for (int i = 0; i < ids.Length; i++)
        {
            Span<T> row = dWeight.Slice(ids[i] * d, d);
            TP.Add(row, dy.Slice(i * d, d), row);
        }
    }
}
