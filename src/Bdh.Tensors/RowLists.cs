using System.Runtime.Intrinsics;

namespace Bdh.Tensors;

/// <summary>
/// The non-zeros of each row of a mostly-zero float matrix [Rows, Cols] stored row-major (compressed sparse rows): row
/// r's are entries Start[r] to Start[r] + Count[r] of <see cref="Index"/> (their columns, in order) and
/// <see cref="Value"/>. The op that writes such a matrix lists its rows as it writes them (BDH's xy = dropout(xs ⊙ ys),
/// 3% non-zero once trained, and its gradient dys: Elementwise.Dropout and DropoutOfProductBackward), and the products
/// that read it (xy·decoder, the masked dxy = dY·decoderᵀ, dDecoder = xyᵀ·dY; dys·encoder_vᵀ, dEncoder_v = ln(a)ᵀ·dys)
/// take the lists where each would otherwise scan the 8 MB tensor again (<see cref="Tensor{T}.NonZeroRows"/>, <see cref="MatrixRef{T}.Lists"/>). The lists describe the
/// values as they were written: a tensor that has them is not written again.
/// </summary>
internal sealed unsafe class RowLists : IDisposable
{
    public int Rows { get; }
    public int Cols { get; }
    /// <summary>Where each row's entries begin: a range of rows listed by one thread takes the places from its first row's Start[r] = r·Cols on.</summary>
    public int[] Start { get; }
    public int[] Count { get; }
    public int[] Index { get; }
    public float[] Value { get; }

    public RowLists(int rows, int cols)
    {
        (Rows, Cols) = (rows, cols);
        Start = TensorPool<int>.Rent(rows);
        Count = TensorPool<int>.Rent(rows);
        Index = TensorPool<int>.Rent(rows * cols + 16); // + 16: the non-zero scan's last whole-register store
        Value = TensorPool<float>.Rent(rows * cols);
    }

    /// <summary>
    /// Lists rows [first, first + count) of the matrix, whose row <paramref name="first"/> starts at <paramref name="row"/>:
    /// their entries one after another from Start[first] = first·Cols. Rows of different calls may be listed in parallel.
    /// </summary>
    public void ListRows(int first, int count, float* row)
    {
        switch (Simd.Widest)
        {
            case 512: ListRows<Float512, Vector512<float>>(first, count, row); break;
            case 256: ListRows<Float256, Vector256<float>>(first, count, row); break;
            default: ListRows<Float128, Vector128<float>>(first, count, row); break;
        }
    }

    private void ListRows<W, V>(int first, int count, float* row) where W : struct, IFloatVector<V> where V : struct
    {
        int at = first * Cols;
        fixed (int* index = Index, starts = Start, counts = Count)
        fixed (float* value = Value)
            for (int r = first; r < first + count; r++, row += Cols)
            {
                starts[r] = at;
                at += counts[r] = SparseGemm.NonZeroTerms<W, V>(row, Cols, index + at, value + at);
            }
    }

    /// <summary>How many non-zeros rows [first, first + count) hold.</summary>
    public long NonZeros(int first, int count)
    {
        long total = 0;
        for (int r = first; r < first + count; r++) total += Count[r];
        return total;
    }

    public void Dispose()
    {
        TensorPool<int>.Return(Start);
        TensorPool<int>.Return(Count);
        TensorPool<int>.Return(Index);
        TensorPool<float>.Return(Value);
    }
}
