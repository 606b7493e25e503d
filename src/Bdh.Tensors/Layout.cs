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
        Span<T> from = src.Span, to = dst.Span;
        // (a, b) in 32×32 tiles: src is read along b and dst written along a, and a tile's lines of both stay in
        // cache; row by row, every element written to a tall dst (256×8192 → 8192×256) would miss it.
        const int Tile = 32;
        int bStep = mid * A * inner; // from dst[.., b, .., a, ..] to dst[.., b + 1, .., a, ..]
        for (int o = 0; o < outer; o++)
            for (int m = 0; m < mid; m++)
                for (int a0 = 0; a0 < A; a0 += Tile)
                    for (int b0 = 0; b0 < B; b0 += Tile)
                        for (int a = a0, bEnd = Math.Min(b0 + Tile, B); a < Math.Min(a0 + Tile, A); a++)
                        {
                            int x = (((o * A + a) * mid + m) * B + b0) * inner, y = (((o * B + b0) * mid + m) * A + a) * inner;
                            for (int b = b0; b < bEnd; b++, x += inner, y += bStep)
                                if (inner == 1) to[y] = accumulate ? to[y] + from[x] : from[x]; // one element: no span calls
                                else if (accumulate) TP.Add(to.Slice(y, inner), from.Slice(x, inner), to.Slice(y, inner));
                                else from.Slice(x, inner).CopyTo(to.Slice(y, inner));
                        }
    }
}
