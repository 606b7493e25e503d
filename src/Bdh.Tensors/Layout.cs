using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Bdh.Tensors;

/// <summary>Copies that change how a tensor lies in memory, not its values.</summary>
public static unsafe class Layout
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
    // Optimized from the first call: the GEMM packs a transposed B with it, and tier 0 made the 4×4 blocks' loads calls
    // (a tiered process, `bench -- gflops`, ran dX = dY·Wᵀ at 0.8× the rate it has with this).
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Transpose<T>(int rows, int cols, int inner, ReadOnlySpan<T> src, int srcOffset, int srcStride,
        Span<T> dst, int dstOffset, int dstStride, bool accumulate) where T : unmanaged, IFloatingPointIeee754<T>
    {
        // (a, b) in 16×16 tiles. A tile's 16 lines of each side stay in L1 where strides are a power of two (a 32-row tile
        // of 2 KB rows, the sparse product's [512, 128] scratch added into its [128, 512] gradient, fell into two of L1's
        // sets: 3.6 ns an element on a Zen 4, 0.25 in 4×4 blocks of 16 tiles). Inside a tile the 4×4 blocks take the lines
        // of the side with the longer stride four at a time, each whole before the next four: 16 lines 4 KB apart (or a
        // multiple) share one of L1's 8-way sets (dX = dY·Wᵀ packs W [128, 2048], rows 8 KB apart: the GEMM ran 1.02–1.03×
        // as fast as with the other side's lines first, on a Zen 4).
        const int Tile = 16;
        bool srcLinesFirst = srcStride >= dstStride;
        if (rows == 0 || cols == 0) return;
        // The last element of each side inside its span, checked once: the loops below index without checks (one element
        // at a time, the span indexer's checks took most of the time of a 128×512 transpose).
        _ = src[srcOffset + (rows - 1) * srcStride + (cols - 1) * inner + inner - 1];
        _ = dst[dstOffset + (cols - 1) * dstStride + (rows - 1) * inner + inner - 1];
        bool inRegisters = inner == 1 && typeof(T) == typeof(float) && Simd.CanTranspose4x4;
        for (int b0 = 0; b0 < cols; b0 += Tile)
            for (int a0 = 0; a0 < rows; a0 += Tile)
            {
                int aEnd = Math.Min(a0 + Tile, rows), bEnd = Math.Min(b0 + Tile, cols);
                if (!inRegisters)
                {
                    CopyElements(a0, aEnd, b0, bEnd, inner, src, srcOffset, srcStride, dst, dstOffset, dstStride, accumulate);
                    continue;
                }
                // 4×4 blocks turned in registers, then the rows and columns past the last whole block one element at a time.
                int aBlocks = a0 + (aEnd - a0 & ~3), bBlocks = b0 + (bEnd - b0 & ~3);
                var (iStart, iEnd, jStart, jEnd) = srcLinesFirst ? (a0, aBlocks, b0, bBlocks) : (b0, bBlocks, a0, aBlocks);
                fixed (T* from = src, to = dst)
                    for (int i = iStart; i < iEnd; i += 4)      // four lines of the side read or written whole
                        for (int j = jStart; j < jEnd; j += 4)  // along them
                        {
                            var (a, b) = srcLinesFirst ? (i, j) : (j, i);
                            Simd.Transpose4x4((float*)from + srcOffset + a * srcStride + b, srcStride,
                                (float*)to + dstOffset + b * dstStride + a, dstStride, accumulate);
                        }
                CopyElements(aBlocks, aEnd, b0, bEnd, 1, src, srcOffset, srcStride, dst, dstOffset, dstStride, accumulate);
                CopyElements(a0, aBlocks, bBlocks, bEnd, 1, src, srcOffset, srcStride, dst, dstOffset, dstStride, accumulate);
            }
    }

    /// <summary><see cref="Transpose{T}"/> of the elements (a, b) in [a0, a1) × [b0, b1), one run of inner at a time.</summary>
    private static void CopyElements<T>(int a0, int a1, int b0, int b1, int inner, ReadOnlySpan<T> src, int srcOffset, int srcStride,
        Span<T> dst, int dstOffset, int dstStride, bool accumulate) where T : unmanaged, IFloatingPointIeee754<T>
    {
        ref T from = ref MemoryMarshal.GetReference(src), to = ref MemoryMarshal.GetReference(dst);
        for (int b = b0; b < b1; b++)
            for (int a = a0, x = srcOffset + a0 * srcStride + b * inner, y = dstOffset + b * dstStride + a0 * inner; a < a1; a++, x += srcStride, y += inner)
                if (inner > 1)
                {
                    if (accumulate) TP.Add(dst.Slice(y, inner), src.Slice(x, inner), dst.Slice(y, inner));
                    else src.Slice(x, inner).CopyTo(dst.Slice(y, inner));
                }
                else if (accumulate) Unsafe.Add(ref to, y) += Unsafe.Add(ref from, x);
                else Unsafe.Add(ref to, y) = Unsafe.Add(ref from, x);
    }
}
