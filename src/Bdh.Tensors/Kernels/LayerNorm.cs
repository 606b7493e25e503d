using System.Runtime.Intrinsics;

namespace Bdh.Tensors.Kernels;

/// <summary>
/// LayerNorm over the last dimension, without affine parameters (as BDH uses it):
/// <c>y = (x − mean) · rstd</c>, <c>rstd = 1/√(var + eps)</c>, biased variance as PyTorch.
/// </summary>
public static class LayerNorm
{
    /// <summary>x, y: [..., d], rows split over the cores; rstd: one per row, kept for the backward pass.</summary>
    public static void Forward<T>(Tensor<T> x, Tensor<T> y, Tensor<T> rstd, T eps) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int d = x.Shape[^1];
        Parallelism.ForSlices(y.Length, d, (s, n) => Forward<T>(x.Span.Slice(s, n), y.Span.Slice(s, n), rstd.Span.Slice(s / d, n / d), d, eps));
    }

    /// <summary>dx (+)= the gradient of x [..., d] from dy and the forward's y and rstd, rows split over the cores.</summary>
    public static void Backward<T>(Tensor<T> dy, Tensor<T> y, Tensor<T> rstd, GradSlot<T> dx) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int d = y.Shape[^1];
        Parallelism.ForSlices(y.Length, d, (s, n) =>
            Backward<T>(dy.Span.Slice(s, n), y.Span.Slice(s, n), rstd.Span.Slice(s / d, n / d), dx.Tensor.Span.Slice(s, n), d, dx.Accumulate));
    }

    /// <summary>x, y: [rows, d]; rstd: [rows], kept for the backward pass.</summary>
    public static void Forward<T>(ReadOnlySpan<T> x, Span<T> y, Span<T> rstd, int d, T eps)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        T invD = T.One / T.CreateTruncating(d);
        for (int r = 0; r < rstd.Length; r++)
        {
            ReadOnlySpan<T> xr = x.Slice(r * d, d);
            Span<T> yr = y.Slice(r * d, d);
            T mean = TP.Sum(xr) * invD;
            TP.Subtract(xr, mean, yr);                 // y = x − mean
            T variance = TP.SumOfSquares<T>(yr) * invD;
            rstd[r] = T.One / T.Sqrt(variance + eps);
            TP.Multiply(yr, rstd[r], yr);
        }
    }

    /// <summary>
    /// dx (+)= rstd · (dy − mean(dy) − y · mean(dy ⊙ y)), per row; without <paramref name="accumulate"/>,
    /// dx is overwritten (it need not be zeroed first).
    /// </summary>
    internal static void Backward<T>(ReadOnlySpan<T> dy, ReadOnlySpan<T> y, ReadOnlySpan<T> rstd, Span<T> dx, int d, bool accumulate = true)
        where T : unmanaged, IFloatingPointIeee754<T> => Backward(dy, y, rstd, dx, d, accumulate, Simd.Widest);

    /// <summary>Backward with float32 vectors of <paramref name="width"/> bits (0: the scalar loop alone), the same bits at every width.</summary>
    internal static unsafe void Backward<T>(ReadOnlySpan<T> dy, ReadOnlySpan<T> y, ReadOnlySpan<T> rstd, Span<T> dx, int d, bool accumulate, int width)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        T invD = T.One / T.CreateTruncating(d);
        for (int r = 0; r < rstd.Length; r++)
        {
            ReadOnlySpan<T> dyr = dy.Slice(r * d, d), yr = y.Slice(r * d, d);
            Span<T> dxr = dx.Slice(r * d, d);
            T meanDy = TP.Sum(dyr) * invD;
            T meanDyY = TP.Dot(dyr, yr) * invD;
            int i = 0;
            if (typeof(T) == typeof(float))
                fixed (T* dyP = dyr, yP = yr, dxP = dxr)
                {
                    var row = new RowTerms(float.CreateTruncating(rstd[r]), float.CreateTruncating(meanDy), float.CreateTruncating(meanDyY));
                    i = width switch
                    {
                        512 => BackwardVectors<Float512, Vector512<float>>((float*)dyP, (float*)yP, (float*)dxP, d, row, accumulate),
                        256 => BackwardVectors<Float256, Vector256<float>>((float*)dyP, (float*)yP, (float*)dxP, d, row, accumulate),
                        128 => BackwardVectors<Float128, Vector128<float>>((float*)dyP, (float*)yP, (float*)dxP, d, row, accumulate),
                        _ => 0,
                    };
                }
            for (; i < d; i++)
            {
                T value = rstd[r] * (dyr[i] - meanDy - yr[i] * meanDyY);
                dxr[i] = accumulate ? dxr[i] + value : value;
            }
        }
    }

    /// <summary>What a row's backward scales and subtracts: its rstd, mean(dy) and mean(dy ⊙ y).</summary>
    private readonly record struct RowTerms(float Rstd, float MeanDy, float MeanDyY);

    /// <summary>
    /// Backward's whole vectors of one row; returns how many elements it did. a − b is computed as a + (−b) and y·m
    /// subtracted as y·(−m): the same roundings as the scalar loop's, so the same bits.
    /// </summary>
    private static unsafe int BackwardVectors<W, V>(float* dy, float* y, float* dx, int d, RowTerms row, bool accumulate)
        where W : struct, IFloatVector<V> where V : struct
    {
        V rstd = W.Create(row.Rstd), minusMeanDy = W.Create(-row.MeanDy), minusMeanDyY = W.Create(-row.MeanDyY);
        int i = 0;
        for (; i <= d - W.Count; i += W.Count)
        {
            var value = W.Multiply(rstd, W.Add(W.Add(W.Load(dy + i), minusMeanDy), W.Multiply(W.Load(y + i), minusMeanDyY)));
            W.Store(accumulate ? W.Add(W.Load(dx + i), value) : value, dx + i);
        }
        return i;
    }
}
