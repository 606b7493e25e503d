namespace Bdh.Tensors;

/// <summary>NumPy broadcasting: shapes align on the right, and a dimension of 1 stretches to match.</summary>
public static class Broadcast
{
    public static int[] Shape(int[] a, int[] b)
    {
        int rank = Math.Max(a.Length, b.Length);
        var result = new int[rank];
        for (int i = 1; i <= rank; i++)
        {
            int da = i <= a.Length ? a[^i] : 1, db = i <= b.Length ? b[^i] : 1;
            if (da != db && da != 1 && db != 1)
                throw new ArgumentException($"shapes {Tensor<float>.Format(a)} and {Tensor<float>.Format(b)} do not broadcast");
            result[^i] = da == 1 ? db : da;
        }
        return result;
    }

    /// <summary>
    /// For each block of the <paramref name="trailingDims"/> trailing dimensions of <paramref name="outShape"/>
    /// (in row-major order), the offset of the matching block in an operand of
    /// <paramref name="operandShape"/> broadcast to it. The operand's trailing elements must match.
    /// </summary>
    internal static int[] BlockOffsets(int[] outShape, int[] operandShape, int trailingDims)
    {
        int outer = outShape.Length - trailingDims;
        int blocks = Tensor<float>.ShapeLength(outShape.AsSpan(0, outer));
        int operandBlock = Tensor<float>.ShapeLength(operandShape.AsSpan(Math.Max(0, operandShape.Length - trailingDims)));
        // Stride of each outer output dimension in the operand, 0 where the operand broadcasts.
        var strides = new int[outer];
        int stride = operandBlock;
        for (int i = 1; i <= outer; i++)
        {
            int operandDim = trailingDims + i <= operandShape.Length ? operandShape[^(trailingDims + i)] : 1;
            strides[^i] = operandDim == 1 ? 0 : stride;
            stride *= operandDim;
        }
        var offsets = new int[blocks];
        var index = new int[outer];
        for (int blk = 0, offset = 0; blk < blocks; blk++)
        {
            offsets[blk] = offset;
            for (int d = outer - 1; d >= 0; d--) // odometer increment
            {
                offset += strides[d];
                if (++index[d] < outShape[d]) break;
                offset -= strides[d] * outShape[d];
                index[d] = 0;
            }
        }
        return offsets;
    }
}

/// <summary>Element-wise add and multiply with broadcasting, and the reductions their backward needs.</summary>
public static class BroadcastOps
{
    public static Tensor<T> Add<T>(Tensor<T> a, Tensor<T> b) where T : unmanaged, IFloatingPointIeee754<T> => Apply(a, b, multiply: false);
    public static Tensor<T> Multiply<T>(Tensor<T> a, Tensor<T> b) where T : unmanaged, IFloatingPointIeee754<T> => Apply(a, b, multiply: true);

    private static Tensor<T> Apply<T>(Tensor<T> a, Tensor<T> b, bool multiply) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int[] shape = Broadcast.Shape(a.Shape, b.Shape);
        var y = Tensor<T>.Empty(shape);
        if (a.Shape.AsSpan().SequenceEqual(b.Shape))
        {
            Parallelism.ForSlices(y.Length, 1, (s, n) =>
            {
                if (multiply) TP.Multiply<T>(a.Span.Slice(s, n), b.Span.Slice(s, n), y.Span.Slice(s, n));
                else TP.Add<T>(a.Span.Slice(s, n), b.Span.Slice(s, n), y.Span.Slice(s, n));
            });
            return y;
        }
        int n = shape[^1];
        int[] aOff = Broadcast.BlockOffsets(shape, a.Shape, 1), bOff = Broadcast.BlockOffsets(shape, b.Shape, 1);
        bool aFull = a.Shape[^1] == n, bFull = b.Shape[^1] == n;
        for (int r = 0; r < aOff.Length; r++)
        {
            Span<T> yr = y.Span.Slice(r * n, n);
            ReadOnlySpan<T> ar = a.Span.Slice(aOff[r], aFull ? n : 1), br = b.Span.Slice(bOff[r], bFull ? n : 1);
            if (aFull && bFull)
            {
                if (multiply) TP.Multiply(ar, br, yr); else TP.Add(ar, br, yr);
            }
            else if (aFull)
            {
                if (multiply) TP.Multiply(ar, br[0], yr); else TP.Add(ar, br[0], yr);
            }
            else
            {
                if (multiply) TP.Multiply(br, ar[0], yr); else TP.Add(br, ar[0], yr);
            }
        }
        return y;
    }

    /// <summary>
    /// dst (+)= src summed over the dimensions where dst's shape broadcasts to src's; without
    /// <paramref name="accumulate"/>, dst is overwritten (it need not be zeroed first).
    /// </summary>
    public static void SumInto<T>(Tensor<T> src, Tensor<T> dst, bool accumulate) where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (src.Shape.AsSpan().SequenceEqual(dst.Shape))
        {
            Parallelism.ForSlices(dst.Length, 1, (s, n) =>
            {
                if (accumulate) TP.Add<T>(dst.Span.Slice(s, n), src.Span.Slice(s, n), dst.Span.Slice(s, n));
                else src.Span.Slice(s, n).CopyTo(dst.Span.Slice(s, n));
            });
            return;
        }
        if (!accumulate) dst.Span.Clear(); // several rows of src land on each row of dst
        int n = src.Shape[^1];
        bool full = dst.Shape[^1] == n;
        int[] dOff = Broadcast.BlockOffsets(src.Shape, dst.Shape, 1);
        for (int r = 0; r < dOff.Length; r++)
        {
            ReadOnlySpan<T> sr = src.Span.Slice(r * n, n);
            if (full)
            {
                Span<T> dr = dst.Span.Slice(dOff[r], n);
                TP.Add(dr, sr, dr);
            }
            else dst.Span[dOff[r]] += TP.Sum(sr);
        }
    }

    /// <summary>
    /// dst (+)= Σ dy ⊙ other over the dimensions where dst's shape broadcasts to dy's: the gradient of one
    /// factor of a product. Without broadcasting (xs ⊙ ys) it is one fused pass per slice.
    /// </summary>
    public static void MultiplySumInto<T>(Tensor<T> dy, Tensor<T> other, Tensor<T> dst, bool accumulate) where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (dy.Shape.AsSpan().SequenceEqual(other.Shape) && dy.Shape.AsSpan().SequenceEqual(dst.Shape))
        {
            Parallelism.ForSlices(dst.Length, 1, (s, n) =>
            {
                if (accumulate) TP.MultiplyAdd<T>(dy.Span.Slice(s, n), other.Span.Slice(s, n), dst.Span.Slice(s, n), dst.Span.Slice(s, n));
                else TP.Multiply<T>(dy.Span.Slice(s, n), other.Span.Slice(s, n), dst.Span.Slice(s, n));
            });
            return;
        }
        using var product = Multiply(dy, other);
        SumInto(product, dst, accumulate);
    }

    /// <summary>
    /// dst (+)= src broadcast to dst's shape (the backward of <see cref="SumInto"/>); without
    /// <paramref name="accumulate"/>, dst is overwritten (it need not be zeroed first). Rows are independent.
    /// </summary>
    public static void BroadcastInto<T>(Tensor<T> src, Tensor<T> dst, bool accumulate = true) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int n = dst.Shape[^1];
        bool full = src.Shape[^1] == n;
        int[] sOff = Broadcast.BlockOffsets(dst.Shape, src.Shape, 1);
        Parallelism.ForSlices(dst.Length, n, (start, length) =>
        {
            for (int r = start / n; r < (start + length) / n; r++)
            {
                Span<T> dr = dst.Span.Slice(r * n, n);
                if (full && accumulate) TP.Add(dr, src.Span.Slice(sOff[r], n), dr);
                else if (full) src.Span.Slice(sOff[r], n).CopyTo(dr);
                else if (accumulate) TP.Add(dr, src.Span[sOff[r]], dr);
                else dr.Fill(src.Span[sOff[r]]);
            }
        });
    }
}
