namespace Bdh.Tensors.Kernels;

/// <summary>ReLU, dropout and embedding gather: the small kernels, each with its backward.</summary>
public static class Elementwise
{
    public static void Relu<T>(ReadOnlySpan<T> x, Span<T> y) where T : unmanaged, IFloatingPointIeee754<T> =>
        TP.Max(x, T.Zero, y);

    /// <summary>dx (+)= dy where y &gt; 0. Using the output keeps ReLU's backward free of its input.</summary>
    public static void ReluBackward<T>(ReadOnlySpan<T> y, ReadOnlySpan<T> dy, Span<T> dx) where T : unmanaged, IFloatingPointIeee754<T>
    {
        for (int i = 0; i < y.Length; i++)
            if (y[i] > T.Zero) dx[i] += dy[i];
    }

    /// <summary>Inverted dropout mask: 0 with probability p, else 1/(1 − p), drawn from <paramref name="rng"/>.</summary>
    public static void DropoutMask<T>(Rng rng, double p, Span<T> mask) where T : unmanaged, IFloatingPointIeee754<T>
    {
        T keep = T.CreateTruncating(1.0 / (1.0 - p));
        for (int i = 0; i < mask.Length; i++) mask[i] = rng.NextDouble() < p ? T.Zero : keep;
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
