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
/// Once trained, xy's lists also carry xs's and ys's values at its places (<see cref="FactorValues"/>), and the gradients
/// of xy, xs and ys from xy's backward are lists at the same places that are those tensors' only copy
/// (<see cref="AtSamePlaces"/>, <see cref="IsOnlyCopy"/>): three tensors of 8 MB a layer never written whole. So are ys
/// and xy themselves: ys's masked product lists xs's places as it computes ys there (<see cref="AtNonZerosOf"/>; such
/// lists hold the product's zeros at those places too), and xy is made from those lists.
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
    /// <summary>
    /// For a product's lists, its factors' values at each entry (FactorValues[f][e]), taken as each block of rows is listed
    /// while the factors' rows are still in the caches (<see cref="TakeFactorValues"/>): what the product's backward reads
    /// at those places (BDH's xs and ys at xy's non-zeros), which a late gather from the whole tensors would wait on memory
    /// for. Empty for other lists, and for a product with more entries than their room.
    /// </summary>
    public float[][] FactorValues { get; private set; } = [];

    /// <summary>While listing: where each row's factors' values begin in <see cref="FactorValues"/>' room, and how much of it is taken.</summary>
    private readonly int[]? _factorStart;
    private long _factorsTaken;

    /// <summary>
    /// Whether these lists are the only copy of their tensor's values: its storage was never written, and every element
    /// not listed is 0 (<see cref="AtSamePlaces"/>: a gradient needed only at another tensor's listed places). Readers
    /// take the lists or <see cref="Tensor{T}.WriteListedValues"/> first.
    /// </summary>
    public bool IsOnlyCopy { get; set; }

    /// <summary>
    /// For the lists of a masked product (<see cref="AtNonZerosOf"/>), its mask: the places are the mask's non-zeros, and
    /// <see cref="FactorValues"/>[0] holds the mask's values there (BDH's ys, computed where xs fires, with xs's values
    /// beside it: what xy = dropout(xs ⊙ ys) is made from). Null for other lists.
    /// </summary>
    public object? PlacesOf { get; private init; }

    /// <summary>Whether Start, Count and Index are this object's (false: another's, which outlives it).</summary>
    private readonly bool _ownsPlaces = true;

    /// <summary>
    /// Lists to fill with <see cref="ListRows"/>, then <see cref="Seal"/>: room for every place while they are listed, and
    /// with <paramref name="factors"/> (0, or 2 for a product of two) room for <paramref name="factorRoom"/> entries of
    /// their values (<see cref="TakeFactorValues"/>).
    /// </summary>
    public RowLists(int rows, int cols, int factors = 0, int factorRoom = 0)
    {
        (Rows, Cols) = (rows, cols);
        Start = TensorPool<int>.Rent(rows);
        Count = TensorPool<int>.Rent(rows);
        Index = TensorPool<int>.Rent(rows * cols + 16); // + 16: the non-zero scan's last whole-register store
        Value = TensorPool<float>.Rent(rows * cols);
        if (factors == 0) return;
        FactorValues = [.. Enumerable.Range(0, factors).Select(_ => TensorPool<float>.Rent(factorRoom))];
        _factorStart = TensorPool<int>.Rent(rows);
    }

    private RowLists(RowLists places, float[] values)
    {
        (Rows, Cols, Start, Count, Index, Value) = (places.Rows, places.Cols, places.Start, places.Count, places.Index, values);
        _ownsPlaces = false;
        IsOnlyCopy = true;
    }

    /// <summary>
    /// Lists of other values at these lists' places (sealed): the only copy of a tensor that is non-zero at most there, such
    /// as the gradient of BDH's xy, needed only where xy is non-zero, and the gradients xy's backward passes to xs and ys
    /// (<see cref="IsOnlyCopy"/>). The values are to be written; the places stay these lists', which must outlive them.
    /// </summary>
    public RowLists AtSamePlaces() => new(this, TensorPool<float>.Rent(Math.Max(1, (int)NonZeros(0, Rows))));

    /// <summary>
    /// Room for a masked product's values at the non-zeros of its mask [rows, cols], which <see cref="ListMaskRow"/> lists
    /// row by row with the mask's values: the product's only copy (<see cref="PlacesOf"/>). Each caller's rows are listed
    /// one after another from its first row's room, for <see cref="Seal"/> to move a run of them at a time.
    /// </summary>
    public static RowLists AtNonZerosOf(object mask, int rows, int cols) =>
        new(rows, cols, factors: 1, factorRoom: rows * cols) { PlacesOf = mask, IsOnlyCopy = true };

    /// <summary>
    /// Lists row <paramref name="r"/> of the mask from entry <paramref name="at"/> (<see cref="AtNonZerosOf"/>): its
    /// non-zeros' columns, and their values into FactorValues[0]; the caller writes the product's values at the same
    /// entries. Returns how many. The scan writes within the row's room (Cols entries from <paramref name="at"/>).
    /// </summary>
    public int ListMaskRow<W, V>(int r, int at, float* maskRow) where W : struct, IFloatVector<V> where V : struct
    {
        fixed (int* index = Index)
        fixed (float* maskValues = FactorValues[0])
        {
            int count = SparseGemm.NonZeroTerms<W, V>(maskRow, Cols, index + at, maskValues + at);
            ListedRow(r, at, count);
            return count;
        }
    }

    /// <summary>Records row <paramref name="r"/>'s entries, and its factors' values where these lists have room for them, as entries [at, at + count).</summary>
    public void ListedRow(int r, int at, int count)
    {
        (Start[r], Count[r]) = (at, count);
        if (_factorStart is not null) _factorStart[r] = at;
    }

    /// <summary>Whether <paramref name="other"/> lists the same places (shares them, <see cref="AtSamePlaces"/>).</summary>
    public bool HasPlacesOf(RowLists other) => Index == other.Index && Start == other.Start;

    /// <summary>Writes the values into the rows they list, of a matrix [Rows, Cols] stored row-major from array[offset], zeroed first.</summary>
    public void WriteInto(float[] array, int offset)
    {
        var lists = this;
        Parallelism.ForSlices(Rows * Cols, Cols, (s, n) =>
        {
            array.AsSpan(offset + s, n).Clear();
            for (int r = s / Cols; r < (s + n) / Cols; r++)
                for (int e = lists.Start[r]; e < lists.Start[r] + lists.Count[r]; e++) array[offset + r * Cols + lists.Index[e]] = lists.Value[e];
        });
    }

    /// <summary>Adds the values of rows [first, first + count) into those rows of a matrix stored row-major from <paramref name="rows"/>.</summary>
    public void AddRowsInto(int first, int count, Span<float> rows)
    {
        for (int r = 0; r < count; r++)
            for (int e = Start[first + r], end = e + Count[first + r]; e < end; e++) rows[r * Cols + Index[e]] += Value[e];
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
    /// Takes the factors' values at the entries of rows [first, first + count), just listed, from the factors' rows
    /// <paramref name="factor0"/> and <paramref name="factor1"/> (laid out as the matrix, their row <paramref name="first"/>
    /// given) into the next part of the room; false, taking nothing, where the room has not enough left. Rows of different
    /// calls may be taken in parallel.
    /// </summary>
    public bool TakeFactorValues(int first, int count, float* factor0, float* factor1)
    {
        if (FactorValues.Length != 2 || _factorStart is null) throw new InvalidOperationException("these lists have no room for two factors' values");
        long entries = NonZeros(first, count), at = Interlocked.Add(ref _factorsTaken, entries) - entries;
        if (at + entries > FactorValues[0].Length) return false;
        fixed (int* index = Index)
        fixed (float* values0 = FactorValues[0], values1 = FactorValues[1])
            for (int r = first; r < first + count; r++, factor0 += Cols, factor1 += Cols)
            {
                _factorStart[r] = (int)at;
                for (int e = Start[r]; e < Start[r] + Count[r]; e++, at++)
                    (values0[at], values1[at]) = (factor0[index[e]], factor1[index[e]]);
            }
        return true;
    }

    /// <summary>
    /// Moves the entries, row after row, into arrays as long as they are and gives the room for every place back to the
    /// pool: lists kept for a backward pass then hold memory for their entries only (a layer's xy and dys in the `paper`
    /// config have room for 16 M entries each, and its 6 layers' lists made a micro-batch's peak RSS 2.87 GB against 2.30).
    /// Rows listed one after another in the room (with their factors' values likewise) move as one run: a copy per row
    /// costs more than its 20 entries (0.4 ms for xy's 4,096 rows at the `cpu` preset).
    /// </summary>
    public void Seal()
    {
        int total = (int)NonZeros(0, Rows);
        int[] index = TensorPool<int>.Rent(total);
        float[] value = TensorPool<float>.Rent(total);
        float[][] factorValues = [.. FactorValues.Select(_ => TensorPool<float>.Rent(total))];
        int at = 0;
        bool factors = FactorValues.Length > 0;
        for (int r = 0, next; r < Rows; r = next)
        {
            int from = Start[r], factorsFrom = factors ? _factorStart![r] : 0, length = Count[r];
            for (next = r + 1; next < Rows && Start[next] == from + length && (!factors || _factorStart![next] == factorsFrom + length); next++)
                length += Count[next];
            Array.Copy(Index, from, index, at, length);
            Array.Copy(Value, from, value, at, length);
            for (int f = 0; f < FactorValues.Length; f++) Array.Copy(FactorValues[f], factorsFrom, factorValues[f], at, length);
            for (; r < next; r++) // the factors' values now lie beside the entries, as ListedRow records
            {
                ListedRow(r, at, Count[r]);
                at += Count[r];
            }
        }
        TensorPool<int>.Return(Index);
        TensorPool<float>.Return(Value);
        DropFactorValues();
        (Index, Value, FactorValues) = (index, value, factorValues);
    }

    /// <summary>Gives the factors' values back to the pool where no backward will read them.</summary>
    public void DropFactorValues()
    {
        foreach (var values in FactorValues) TensorPool<float>.Return(values);
        FactorValues = [];
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
        if (_ownsPlaces)
        {
            TensorPool<int>.Return(Start);
            TensorPool<int>.Return(Count);
            TensorPool<int>.Return(Index);
            if (_factorStart is not null) TensorPool<int>.Return(_factorStart);
        }
        TensorPool<float>.Return(Value);
        DropFactorValues();
    }
}
