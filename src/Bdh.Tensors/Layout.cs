using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Bdh.Tensors;

/// <summary>Copies that change how a tensor lies in memory, not its values.</summary>
public static class Layout
{
    /// <summary>dst (+)= src with dimensions d0 and d1 swapped; dst has the swapped shape.</summary>
    public static void SwapAxes<T>(Tensor<T> src, int d0, int d1, Tensor<T> dst, bool accumulate) where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (d0 > d1) (d0, d1) = (d1, d0);
        int[] s = src.Shape;
        // View src as [outer, A, mid, B, inner] with A = s[d0], B = s[d1]; dst is [outer, B, mid, A, inner].
        int outer = Tensor<T>.ShapeLength(s.AsSpan(0, d0)), A = s[d0];
        int mid = Tensor<T>.ShapeLength(s.AsSpan(d0 + 1, d1 - d0 - 1)), B = s[d1];
        int inner = Tensor<T>.ShapeLength(s.AsSpan(d1 + 1));
        int srcStep = mid * B * inner, dstStep = mid * A * inner; // from (a, b) to (a + 1, b) in src, (b, a) to (b + 1, a) in dst
        for (int o = 0; o < outer; o++)
            for (int m = 0; m < mid; m++)
                Transpose<T>(A, B, inner, src.Span, (o * A * mid + m) * B * inner, srcStep, dst.Span, (o * B * mid + m) * A * inner, dstStep, accumulate);
    }

    /// <summary>
    /// dst[b, a] (+)= src[a, b] for a rows × cols matrix whose elements are runs of <paramref name="inner"/> values: src's
    /// element (a, b) starts at srcOffset + a·srcStride + b·inner, dst's (b, a) at dstOffset + b·dstStride + a·inner.
    /// </summary>
    internal static void Transpose<T>(int rows, int cols, int inner, ReadOnlySpan<T> src, int srcOffset, int srcStride,
        Span<T> dst, int dstOffset, int dstStride, bool accumulate) where T : unmanaged, IFloatingPointIeee754<T>
    {
        // (a, b) in 32×32 tiles: src is read along b and dst written along a, and a tile's lines of both stay in
        // cache; row by row, every element written to a tall dst (256×8192 → 8192×256) would miss it.
        const int Tile = 32;
        if (rows == 0 || cols == 0) return;
        // The last element of each side inside its span, checked once: the loops below index without checks (one element
        // at a time, the span indexer's checks took most of the time of a 128×512 transpose).
        _ = src[srcOffset + (rows - 1) * srcStride + (cols - 1) * inner + inner - 1];
        _ = dst[dstOffset + (cols - 1) * dstStride + (rows - 1) * inner + inner - 1];
        ref T from = ref MemoryMarshal.GetReference(src), to = ref MemoryMarshal.GetReference(dst);
        for (int a0 = 0; a0 < rows; a0 += Tile)
            for (int b0 = 0; b0 < cols; b0 += Tile)
                for (int a = a0, bEnd = Math.Min(b0 + Tile, cols); a < Math.Min(a0 + Tile, rows); a++)
                {
                    int x = srcOffset + a * srcStride + b0 * inner, y = dstOffset + b0 * dstStride + a * inner;
                    if (inner > 1)
                        for (int b = b0; b < bEnd; b++, x += inner, y += dstStride)
                            if (accumulate) TP.Add(dst.Slice(y, inner), src.Slice(x, inner), dst.Slice(y, inner));
                            else src.Slice(x, inner).CopyTo(dst.Slice(y, inner));
                    else if (accumulate)
                        for (int b = b0; b < bEnd; b++, x++, y += dstStride) Unsafe.Add(ref to, y) += Unsafe.Add(ref from, x);
                    else
                        for (int b = b0; b < bEnd; b++, x++, y += dstStride) Unsafe.Add(ref to, y) = Unsafe.Add(ref from, x);
                }
    }
}
