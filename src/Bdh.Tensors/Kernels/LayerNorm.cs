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
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        T invD = T.One / T.CreateTruncating(d);
        for (int r = 0; r < rstd.Length; r++)
        {
            ReadOnlySpan<T> dyr = dy.Slice(r * d, d), yr = y.Slice(r * d, d);
            Span<T> dxr = dx.Slice(r * d, d);
            T meanDy = TP.Sum(dyr) * invD;
            T meanDyY = TP.Dot(dyr, yr) * invD;
            for (int i = 0; i < d; i++)
                dxr[i] = (accumulate ? dxr[i] : T.Zero) + rstd[r] * (dyr[i] - meanDy - yr[i] * meanDyY);
        }
    }
}
