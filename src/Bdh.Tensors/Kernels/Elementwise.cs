using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace Bdh.Tensors.Kernels;

/// <summary>
/// ReLU, dropout and embedding gather: the small kernels, each with its backward. The entry points that take
/// tensors split the work over the cores; the span forms beneath them do one slice.
/// </summary>
public static class Elementwise
{
    /// <summary>y = max(x, 0); y may be x itself.</summary>
    public static void Relu<T>(Tensor<T> x, Tensor<T> y) where T : unmanaged, IFloatingPointIeee754<T> =>
        Parallelism.ForSlices(y.Length, 1, (s, n) => Relu<T>(x.Span.Slice(s, n), y.Span.Slice(s, n)));

    public static void Relu<T>(ReadOnlySpan<T> x, Span<T> y) where T : unmanaged, IFloatingPointIeee754<T> =>
        TP.Max(x, T.Zero, y);

    /// <summary>dx (+)= dy where y &gt; 0, y = relu(x); a slot that writes may hold dy itself (in place).</summary>
    public static void ReluBackward<T>(Tensor<T> y, Tensor<T> dy, GradSlot<T> dx) where T : unmanaged, IFloatingPointIeee754<T> =>
        Parallelism.ForSlices(y.Length, 1, (s, n) => ReluBackward<T>(y.Span.Slice(s, n), dy.Span.Slice(s, n), dx.Tensor.Span.Slice(s, n), dx.Accumulate));

    /// <summary>
    /// dx (+)= dy where y &gt; 0. Using the output keeps ReLU's backward free of its input. Vectorized as
    /// a masked add: the signs of trained activations are close to random, so a branch per element
    /// would mispredict half the time. Without <paramref name="accumulate"/>, dx may be dy itself (in place).
    /// </summary>
    internal static void ReluBackward<T>(ReadOnlySpan<T> y, ReadOnlySpan<T> dy, Span<T> dx, bool accumulate = true) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int i = 0;
        if (Vector512.IsHardwareAccelerated)
            for (; i <= y.Length - Vector512<T>.Count; i += Vector512<T>.Count)
            {
                var passed = Vector512.Create(dy.Slice(i)) & Vector512.GreaterThan(Vector512.Create(y.Slice(i)), Vector512<T>.Zero);
                (accumulate ? Vector512.Create(dx.Slice(i)) + passed : passed).CopyTo(dx.Slice(i));
            }
        else if (Vector256.IsHardwareAccelerated)
            for (; i <= y.Length - Vector256<T>.Count; i += Vector256<T>.Count)
            {
                var passed = Vector256.Create(dy.Slice(i)) & Vector256.GreaterThan(Vector256.Create(y.Slice(i)), Vector256<T>.Zero);
                (accumulate ? Vector256.Create(dx.Slice(i)) + passed : passed).CopyTo(dx.Slice(i));
            }
        for (; i < y.Length; i++)
        {
            T passed = y[i] > T.Zero ? dy[i] : T.Zero;
            dx[i] = accumulate ? dx[i] + passed : passed;
        }
    }

    /// <summary>How many elements of x are not zero (16 compared at a time).</summary>
    public static int CountNonZeros<T>(ReadOnlySpan<T> x) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int nonZero = 0, i = 0;
        if (Vector512.IsHardwareAccelerated)
            for (; i <= x.Length - Vector512<T>.Count; i += Vector512<T>.Count)
                nonZero += Vector512<T>.Count - BitOperations.PopCount(Vector512.Equals(Vector512.Create(x.Slice(i)), Vector512<T>.Zero).ExtractMostSignificantBits());
        for (; i < x.Length; i++) if (x[i] != T.Zero) nonZero++;
        return nonZero;
    }

    /// <summary>y = dropout(x): x ⊙ a mask drawn from <paramref name="seed"/> (see the span form).</summary>
    public static void Dropout<T>(ulong seed, double p, Tensor<T> x, Tensor<T> y) where T : unmanaged, IFloatingPointIeee754<T> =>
        Parallelism.ForSlices(y.Length, 1, (s, n) => Dropout<T>(seed, p, x.Span.Slice(s, n), y.Span.Slice(s, n), s, accumulate: false));

    /// <summary>dx (+)= dy ⊙ mask, the forward's mask drawn again from the same seed.</summary>
    public static void DropoutBackward<T>(ulong seed, double p, Tensor<T> dy, GradSlot<T> dx) where T : unmanaged, IFloatingPointIeee754<T> =>
        Parallelism.ForSlices(dy.Length, 1, (s, n) => Dropout<T>(seed, p, dy.Span.Slice(s, n), dx.Tensor.Span.Slice(s, n), s, dx.Accumulate));

    /// <summary>
    /// Inverted dropout: y (+)= x ⊙ mask, where the mask is 0 with probability p and 1/(1 − p) otherwise.
    /// Element i of the whole tensor is kept when a hash of (seed, i) reaches p·2³²; x and y are elements
    /// [start, start + length). So the mask is never stored — the backward draws it again from the seed —
    /// any slice is drawn on its own (the same for any thread count), and 16 elements are decided at once.
    /// The hash is a 32-bit integer mixer (lowbias32) applied twice, keyed by the two halves of the seed.
    /// </summary>
    internal static void Dropout<T>(ulong seed, double p, ReadOnlySpan<T> x, Span<T> y, int start, bool accumulate)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        uint threshold = (uint)Math.Min(Math.Round(p * 4294967296.0), uint.MaxValue);
        uint low = (uint)seed, high = (uint)(seed >> 32);
        T scale = T.CreateTruncating(1.0 / (1.0 - p));
        int i = 0;
        if (typeof(T) == typeof(float) && Vector512.IsHardwareAccelerated)
        {
            ReadOnlySpan<float> xf = MemoryMarshal.Cast<T, float>(x);
            Span<float> yf = MemoryMarshal.Cast<T, float>(y);
            var index = Vector512.Create((uint)start) + Vector512<uint>.Indices;
            var scaleAll = Vector512.Create(float.CreateTruncating(scale));
            for (; i <= xf.Length - 16; i += 16, index += Vector512.Create(16u))
            {
                var kept = Vector512.GreaterThanOrEqual(Mix(Mix(index + Vector512.Create(low)) ^ Vector512.Create(high)), Vector512.Create(threshold));
                var dropped = (Vector512.Create(xf.Slice(i)) * scaleAll) & kept.AsSingle();
                (accumulate ? Vector512.Create(yf.Slice(i)) + dropped : dropped).CopyTo(yf.Slice(i));
            }
        }
        for (; i < x.Length; i++)
        {
            T value = Mix(Mix((uint)(start + i) + low) ^ high) >= threshold ? x[i] * scale : T.Zero;
            y[i] = accumulate ? y[i] + value : value;
        }
    }

    private static uint Mix(uint x)
    {
        x ^= x >> 16; x *= 0x7feb352d;
        x ^= x >> 15; x *= 0x846ca68b;
        return x ^ (x >> 16);
    }

    private static Vector512<uint> Mix(Vector512<uint> x)
    {
        x ^= x >> 16; x *= 0x7feb352d;
        x ^= x >> 15; x *= 0x846ca68b;
        return x ^ (x >> 16);
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

    /// <summary>
    /// dweight[ids[i], :] += dy[i, :] for weight [V, D], in token order (deterministic); a slot that writes is
    /// zeroed first, as a row no token picked has a zero gradient and a row picked twice sums two.
    /// </summary>
    public static void EmbeddingBackward<T>(Tensor<T> dy, int[] ids, GradSlot<T> dWeight) where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (!dWeight.Accumulate) dWeight.Tensor.Span.Clear();
        EmbeddingBackward<T>(dy.Span, ids, dWeight.Tensor.Span, dWeight.Tensor.Shape[^1]);
    }

    internal static void EmbeddingBackward<T>(ReadOnlySpan<T> dy, ReadOnlySpan<int> ids, Span<T> dWeight, int d)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        for (int i = 0; i < ids.Length; i++)
        {
            Span<T> row = dWeight.Slice(ids[i] * d, d);
            TP.Add(row, dy.Slice(i * d, d), row);
        }
    }
}
