namespace Bdh.Tensors;

/// <summary>
/// Batched matrix multiply over tensors of rank ≥ 2: the last two dimensions are matrices, the
/// leading ones broadcast (BDH: [1,B,T,D]·[nh,1,D,N] → [nh,B,T,N]). Either operand may be read
/// transposed without a copy.
/// </summary>
public static class MatMul
{
    public static (int M, int K, int N) Dims(int[] a, bool transA, int[] b, bool transB)
    {
        if (a.Length < 2 || b.Length < 2) throw new ArgumentException("matmul needs operands of rank >= 2");
        int m = transA ? a[^1] : a[^2], k = transA ? a[^2] : a[^1];
        int kb = transB ? b[^1] : b[^2], n = transB ? b[^2] : b[^1];
        if (k != kb)
            throw new ArgumentException($"matmul inner dimensions differ: {Tensor<float>.Format(a)}{(transA ? "ᵀ" : "")} · {Tensor<float>.Format(b)}{(transB ? "ᵀ" : "")}");
        return (m, k, n);
    }

    public static int[] OutputShape(int[] a, bool transA, int[] b, bool transB)
    {
        var (m, _, n) = Dims(a, transA, b, transB);
        return [.. Broadcast.Shape(a[..^2], b[..^2]), m, n];
    }

    /// <summary>
    /// c[i] (+)= op(a[i])·op(b[i]) for every index i of the broadcast batch of a, b and c. When c's
    /// batch is smaller (the gradient of a broadcast operand), the products that land on one block of c
    /// are summed in batch order, so the result does not depend on the thread count. With <paramref name="relu"/>, c = max(c, 0)
    /// after (in the GEMM's stores, not a second pass). With <paramref name="where"/> (c's shape; b transposed, a not),
    /// only the elements of c where it is not zero are computed, the others set to 0 (<see cref="Gemm.MultiplyWhere{T}"/>).
    /// </summary>
    public static void Multiply<T>(Tensor<T> a, bool transA, Tensor<T> b, bool transB, Tensor<T> c, bool accumulate, bool relu = false,
        Tensor<T>? where = null) where T : unmanaged, IFloatingPointIeee754<T> => Multiply(a, transA, b, transB, c, accumulate, relu, where, listAtWhere: false);

    /// <summary>
    /// <see cref="Multiply{T}(Tensor{T}, bool, Tensor{T}, bool, Tensor{T}, bool, bool, Tensor{T}?)"/>; with
    /// <paramref name="listAtWhere"/>, where every product is computed by dots at the mask's places (float, and each block
    /// of the mask sparse enough: <see cref="Gemm.MultipliesByDots{T}"/>), c's values there become lists that are its only
    /// copy, with the mask's values beside them (<see cref="RowLists.AtNonZerosOf"/>: BDH's ys, for xy = dropout(xs ⊙ ys)).
    /// </summary>
    internal static void Multiply<T>(Tensor<T> a, bool transA, Tensor<T> b, bool transB, Tensor<T> c, bool accumulate, bool relu,
        Tensor<T>? where, bool listAtWhere) where T : unmanaged, IFloatingPointIeee754<T>
    {
        var (m, _, n) = Dims(a.Shape, transA, b.Shape, transB);
        if (c.Rank < 2 || c.Shape[^2] != m || c.Shape[^1] != n)
            throw new ArgumentException($"output {Tensor<T>.Format(c.Shape)} is not [.., {m}, {n}]");
        if (where is not null && (!where.Shape.AsSpan().SequenceEqual(c.Shape) || transA || !transB || accumulate))
            throw new ArgumentException($"a masked product writes c (no accumulate) from a·bᵀ where a mask of c's shape {Tensor<T>.Format(c.Shape)} says");
        int[] batch = Broadcast.Shape(Broadcast.Shape(a.Shape[..^2], b.Shape[..^2]), c.Shape[..^2]);
        if (where is not null && Tensor<T>.ShapeLength(batch) != Tensor<T>.ShapeLength(c.Shape.AsSpan(0, c.Rank - 2)))
            throw new ArgumentException($"a masked product writes each product into its own block of c: {Tensor<T>.Format(c.Shape)} sums them");
        int[] aShape = Padded(a.Shape, batch.Length), bShape = Padded(b.Shape, batch.Length), cShape = Padded(c.Shape, batch.Length);
        Fold(ref aShape, transA, ref bShape, transB, ref cShape);
        MultiplyBlocks(a, aShape, transA, b, bShape, transB, c, cShape, accumulate, relu, where, listAtWhere);
    }

    /// <summary>
    /// Turns batches into bigger products where the memory layout allows, innermost batch dimension first:
    /// [.., B, m, k]·[.., 1, k, n] → [.., B·m, k]·[.., k, n] (x @ encoder: one GEMM of B·T rows per head,
    /// not B GEMMs of T rows that each re-pack the weight), and [.., B, k, m]ᵀ·[.., B, k, n] summed into
    /// [.., 1, m, n] → one product with B·k terms (a weight gradient summed over the batch).
    /// </summary>
    private static void Fold(ref int[] a, bool transA, ref int[] b, bool transB, ref int[] c)
    {
        while (c.Length > 2)
        {
            int i = c.Length - 3;
            if (a[i] == 1 && b[i] == 1 && c[i] == 1) { a = Without(a, i); b = Without(b, i); c = Without(c, i); }
            else if (!transA && b[i] == 1 && a[i] == c[i]) { a = Merged(a, i); b = Without(b, i); c = Merged(c, i); }
            else if (transA && !transB && c[i] == 1 && a[i] == b[i]) { a = Merged(a, i); b = Merged(b, i); c = Without(c, i); }
            else break;
        }
    }

    private static int[] Padded(int[] shape, int batchRank) => [.. Enumerable.Repeat(1, batchRank + 2 - shape.Length), .. shape];

    private static int[] Without(int[] shape, int i) => [.. shape[..i], .. shape[(i + 1)..]];

    /// <summary>Dimension i folded into the rows of the matrix after it (contiguous memory: a view).</summary>
    private static int[] Merged(int[] shape, int i) => [.. shape[..i], shape[i] * shape[i + 1], .. shape[(i + 2)..]];

    private static void MultiplyBlocks<T>(Tensor<T> a, int[] aShape, bool transA, Tensor<T> b, int[] bShape, bool transB, Tensor<T> c, int[] cShape,
        bool accumulate, bool relu, Tensor<T>? where, bool listAtWhere)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        var (m, k, n) = Dims(aShape, transA, bShape, transB);
        int[] full = [.. cShape[..^2].Select((d, i) => Math.Max(d, Math.Max(aShape[i], bShape[i]))), 1, 1];
        int[] aOff = Broadcast.BlockOffsets(full, aShape, 2), bOff = Broadcast.BlockOffsets(full, bShape, 2);
        int[] cOff = Broadcast.BlockOffsets(full, cShape, 2);
        bool listing = listAtWhere && where is not null && typeof(T) == typeof(float) && n > 0
            && cOff.All(offset => Gemm.MultipliesByDots(m, n, where.Matrix(offset, n)));
        if (listing) c.NonZeroRows = RowLists.AtNonZerosOf(where!, c.Length / n, n);

        // Group the products by the block of c they write; groups are independent.
        var groups = new Dictionary<int, List<int>>();
        for (int i = 0; i < cOff.Length; i++)
        {
            if (!groups.TryGetValue(cOff[i], out var list)) groups[cOff[i]] = list = [];
            list.Add(i);
        }
        var groupList = groups.Values.ToArray();
        bool parallelGroups = groupList.Length >= Parallelism.Threads && groupList.Length > 1;
        int lda = aShape[^1], ldb = bShape[^1];
        Parallelism.For(parallelGroups ? groupList.Length : 1, g0 =>
        {
            for (int g = g0; g < (parallelGroups ? g0 + 1 : groupList.Length); g++)
            {
                bool add = accumulate;
                foreach (int i in groupList[g])
                {
                    if (where is not null) // c's shape is the whole batch's: one product per group
                        Gemm.MultiplyWhere(m, n, k, a.Matrix(aOff[i], lda), b.Matrix(bOff[i], ldb, transB), where.Matrix(cOff[i], n),
                            c.Matrix(cOff[i], n), parallel: !parallelGroups, relu);
                    else Gemm.Multiply(m, n, k,
                        a.Matrix(aOff[i], lda, transA), b.Matrix(bOff[i], ldb, transB), c.Matrix(cOff[i], n), add, parallel: !parallelGroups, relu: relu && i == groupList[g][^1]);
                    add = true;
                }
            }
        });
        if (listing) c.NonZeroRows!.Seal(); // kept until the step ends: as long as the entries, not the room for every place
    }
}
