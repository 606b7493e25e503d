using System.Runtime.Intrinsics;

namespace Bdh.Tensors;

/// <summary>
/// The non-zeros of each row of a mostly-zero float matrix [Rows, Cols] stored row-major (compressed sparse rows): row
/// r's are entries Start[r] to Start[r] + Count[r] of <see cref="Index"/> (their columns, in order) and
/// <see cref="Value"/>. The op that writes such a matrix lists its rows as it writes them (BDH's xy = dropout(xs ⊙ ys),
/// 3% non-zero once trained, and its gradient dys: Elementwise.Dropout and DropoutOfProductBackward), and the products
/// that read it (xy·decoder, the masked dxy = dY·decoderᵀ, dDecoder = xyᵀ·dY; dys·encoder_vᵀ, encoder_vᵀ's gradient dysᵀ·ln(a))
/// take the lists where each would otherwise scan the 8 MB tensor again (<see cref="Tensor{T}.NonZeroRows"/>, <see cref="MatrixRef{T}.Lists"/>). The lists describe the
/// values as they were written: a tensor that has them is not written again. Each thread lists its rows into room for
/// every place (<see cref="ListRows"/>); <see cref="Seal"/> then moves the entries into arrays as long as they are.
/// </summary>
internal sealed unsafe class RowLists : IDisposable
{
    public int Rows { get; }
    public int Cols { get; }
    /// <summary>Where each row's entries begin.</summary>
    public int[] Start { get; }
    public int[] Count { get; }
    public int[] Index { get; private set; }
    public float[] Value { get; private set; }

    /// <summary>Lists to fill with <see cref="ListRows"/>, then <see cref="Seal"/>: room for every place while they are listed.</summary>
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

    /// <summary>
    /// Moves the entries, row after row, into arrays as long as they are and gives the room for every place back to the
    /// pool: lists kept for a backward pass then hold memory for their entries only (a layer's xy and dys in the `paper`
    /// config have room for 16 M entries each, and its 6 layers' lists made a micro-batch's peak RSS 2.87 GB against 2.30).
    /// </summary>
    public void Seal()
    {
        int total = (int)NonZeros(0, Rows);
        int[] index = TensorPool<int>.Rent(total);
        float[] value = TensorPool<float>.Rent(total);
        int at = 0;
        for (int r = 0; r < Rows; r++)
        {
            Array.Copy(Index, Start[r], index, at, Count[r]);
            Array.Copy(Value, Start[r], value, at, Count[r]);
            Start[r] = at;
            at += Count[r];
        }
        TensorPool<int>.Return(Index);
        TensorPool<float>.Return(Value);
        (Index, Value) = (index, value);
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
