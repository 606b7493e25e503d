namespace Bdh.Tensors;

/// <summary>
/// Batched matrix multiply over tensors of rank ≥ 2: the last two dimensions are matrices, the
/// leading ones broadcast (BDH: [B,1,T,D]·[nh,D,N] → [B,nh,T,N]). Either operand may be read
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
    /// are summed in batch order, so the result does not depend on the thread count.
    /// </summary>
    public static void Multiply<T>(Tensor<T> a, bool transA, Tensor<T> b, bool transB, Tensor<T> c, bool accumulate)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        var (m, k, n) = Dims(a.Shape, transA, b.Shape, transB);
        if (c.Rank < 2 || c.Shape[^2] != m || c.Shape[^1] != n)
            throw new ArgumentException($"output {Tensor<T>.Format(c.Shape)} is not [.., {m}, {n}]");
        int[] batch = Broadcast.Shape(Broadcast.Shape(a.Shape[..^2], b.Shape[..^2]), c.Shape[..^2]);
        int[] full = [.. batch, 1, 1];
        int[] aOff = Broadcast.BlockOffsets(full, a.Shape, 2), bOff = Broadcast.BlockOffsets(full, b.Shape, 2);
        int[] cOff = Broadcast.BlockOffsets(full, c.Shape, 2);

        // Group the products by the block of c they write; groups are independent.
        var groups = new Dictionary<int, List<int>>();
        for (int i = 0; i < cOff.Length; i++)
        {
            if (!groups.TryGetValue(cOff[i], out var list)) groups[cOff[i]] = list = [];
            list.Add(i);
        }
        var groupList = groups.Values.ToArray();
        bool parallelGroups = groupList.Length >= Parallelism.Threads && groupList.Length > 1;
        int lda = a.Shape[^1], ldb = b.Shape[^1];
        Parallelism.For(parallelGroups ? groupList.Length : 1, g0 =>
        {
            for (int g = g0; g < (parallelGroups ? g0 + 1 : groupList.Length); g++)
            {
                bool add = accumulate;
                foreach (int i in groupList[g])
                {
                    Gemm.Multiply(m, n, k,
                        new MatrixRef<T>(a.Array, aOff[i], lda, transA), new MatrixRef<T>(b.Array, bOff[i], ldb, transB),
                        new MatrixRef<T>(c.Array, cOff[i], n), add, parallel: !parallelGroups);
                    add = true;
                }
            }
        });
    }
}
