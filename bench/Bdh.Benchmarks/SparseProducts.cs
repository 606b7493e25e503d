using Bdh.Tensors;

namespace Bdh.Benchmarks;

/// <summary>
/// `sparse [threads]`: the per-head products of a `cpu` step whose mostly-zero operand is xy = dropout(xs⊙ys) or a
/// ReLU's masked gradient dC, each at densities from 2% to 30%, by the sparse kernel and by the packed dense one,
/// alternately (21 pairs, medians), and how long <c>Gemm</c>'s density test takes; then the sparse kernel again with the
/// operand's non-zeros listed beforehand (<c>RowLists</c>, as the model's xy and dys come; dC has none). Where the sparse
/// (or, for a listed operand, the listed) column is the smaller, <c>SparseGemm.MaxDensityFor</c> should let the product go sparse. Then the masked products (<c>Gemm.MultiplyWhere</c>:
/// only the places a mask marks, by dots) against the whole product, by the mask's density: where the masked column is
/// the smaller, <c>Gemm.MaskedMaxDensity</c> should let it run.
/// </summary>
public static unsafe class SparseProducts
{
    /// <summary>Which operand is mostly zeros.</summary>
    private enum Sparse { A, B }

    private sealed record Product(string Name, int M, int N, int K, Sparse Operand, bool TransA, bool TransB);

    private static readonly Product[] Products =
    [
        new("xy·decoder_h     [1024x512]·[512x128]", 1024, 128, 512, Sparse.A, TransA: false, TransB: false),
        new("dDecoder = xyᵀ·dY [512x1024]ᵀ·[1024x128]", 512, 128, 1024, Sparse.A, TransA: true, TransB: false),
        new("dX = dC·Wᵀ        [1024x512]·[128x512]ᵀ", 1024, 128, 512, Sparse.A, TransA: false, TransB: true),
        new("dW = Xᵀ·dC        [128x1024]ᵀ·[1024x512]", 128, 512, 1024, Sparse.B, TransA: true, TransB: false),
    ];

    private sealed record MaskedProduct(string Name, int M, int N, int K);

    private static readonly MaskedProduct[] MaskedProducts =
    [
        new("ys_h where xs fires [1024x128]·[128x512]", 1024, 512, 128), // relu(ln(a)·encoder_v_h); the decoder's dxy has the same shape
    ];

    public static void Run(int threads)
    {
        static double Time(Action work) => Timing.Seconds(work) * 1000; // ms
        Parallelism.Threads = threads;
        Console.WriteLine($"sparse against dense products, {threads} thread(s), {Simd.Widest}-bit vectors; ms, medians of 21 pairs");
        if (Environment.GetEnvironmentVariable("DOTNET_TieredCompilation") != "0")
            Console.WriteLine("(tiered JIT on: the first repetitions run unoptimized code; `bdh` runs with DOTNET_TieredCompilation=0's setting)");
        Console.WriteLine($"{"product",-42} {"density",8} {"sparse",8} {"dense",8} {"ratio",6} {"test",7} {"listed",8} {"ratio",6}");
        foreach (var p in Products)
            foreach (double density in new[] { 0.02, 0.06, 0.12, 0.20, 0.30 })
            {
                var rng = new Rng(3);
                var (a, b) = (Tensor<float>.Uniform(rng, -1, 1, p.M * p.K), Tensor<float>.Uniform(rng, -1, 1, p.K * p.N));
                var sparse = (p.Operand == Sparse.A ? a : b).Span;
                for (int i = 0; i < sparse.Length; i++) if (rng.NextDouble() >= density) sparse[i] = 0;
                var (aRef, bRef) = (a.Matrix(0, p.TransA ? p.M : p.K, p.TransA), b.Matrix(0, p.TransB ? p.K : p.N, p.TransB));
                var cRef = Tensor<float>.Empty(p.M * p.N).Matrix(0, p.N);
                Action sparseProduct = p.Operand == Sparse.A
                    ? () => SparseGemm.Multiply(p.M, p.N, p.K, aRef, bRef, cRef, accumulate: false, parallel: threads > 1)
                    : () => SparseGemm.MultiplyBySparseB(p.M, p.N, p.K, aRef, bRef, cRef, accumulate: false, parallel: threads > 1);
                Action denseProduct = () => PackedGemm.Multiply(p.M, p.N, p.K, aRef, bRef, cRef, accumulate: false, relu: false, threads > 1, Causal.None);
                Action test = p.Operand == Sparse.A
                    ? () => SparseGemm.IsSparse(p.M, p.N, p.K, aRef)
                    : () => SparseGemm.IsSparseB(p.M, p.N, p.K, bRef);
                var sparseTensor = p.Operand == Sparse.A ? a : b;
                int listedCols = p.Operand == Sparse.A ? (p.TransA ? p.M : p.K) : p.N; // the length of the sparse operand's stored rows
                var lists = new RowLists(sparseTensor.Length / listedCols, listedCols);
                fixed (float* rows = sparseTensor.Span) lists.ListRows(0, lists.Rows, rows);
                lists.Seal();
                var listed = sparseTensor.Reshape(lists.Rows, listedCols);
                listed.NonZeroRows = lists;
                var listedRef = listed.Matrix(0, listedCols, p.Operand == Sparse.A ? p.TransA : p.TransB);
                Action listedProduct = p.Operand == Sparse.A
                    ? () => SparseGemm.Multiply(p.M, p.N, p.K, listedRef, bRef, cRef, accumulate: false, parallel: threads > 1)
                    : () => SparseGemm.MultiplyBySparseB(p.M, p.N, p.K, aRef, listedRef, cRef, accumulate: false, parallel: threads > 1);
                sparseProduct(); denseProduct(); test(); listedProduct();
                var pairs = Enumerable.Range(0, 21).Select(_ => (Sparse: Time(sparseProduct), Dense: Time(denseProduct), Test: Time(test), Listed: Time(listedProduct))).ToArray();
                Console.WriteLine($"{p.Name,-42} {density,8:P0} {pairs.Select(x => x.Sparse).Median(),8:0.000} {pairs.Select(x => x.Dense).Median(),8:0.000} " +
                    $"{pairs.Select(x => x.Sparse / x.Dense).Median(),6:0.00} {pairs.Select(x => x.Test).Median(),7:0.000} " +
                    $"{pairs.Select(x => x.Listed).Median(),8:0.000} {pairs.Select(x => x.Listed / x.Dense).Median(),6:0.00}");
            }
        Console.WriteLine($"{"masked product",-42} {"density",8} {"masked",8} {"whole",8} {"ratio",6}");
        foreach (var p in MaskedProducts)
            foreach (double density in new[] { 0.035, 0.10, 0.20, 0.30, 0.50 })
            {
                var rng = new Rng(3);
                var (a, rowsOfB) = (Tensor<float>.Uniform(rng, -1, 1, p.M * p.K), Tensor<float>.Uniform(rng, -1, 1, p.N * p.K));
                var mask = Tensor<float>.Uniform(rng, 0, 1, p.M * p.N);
                foreach (ref float v in mask.Span) v = v < density ? 1 : 0;
                var (aRef, bRef, maskRef) = (a.Matrix(0, p.K), rowsOfB.Matrix(0, p.K, transposed: true), mask.Matrix(0, p.N));
                var cRef = Tensor<float>.Empty(p.M * p.N).Matrix(0, p.N);
                Action masked = () => Gemm.MultiplyByDots(p.M, p.N, p.K, aRef, bRef, maskRef, cRef, parallel: threads > 1, relu: true);
                Action whole = () => PackedGemm.Multiply(p.M, p.N, p.K, aRef, bRef, cRef, accumulate: false, relu: true, threads > 1, Causal.None);
                masked(); whole();
                var pairs = Enumerable.Range(0, 21).Select(_ => (Masked: Time(masked), Whole: Time(whole))).ToArray();
                Console.WriteLine($"{p.Name,-42} {density,8:P1} {pairs.Select(x => x.Masked).Median(),8:0.000} {pairs.Select(x => x.Whole).Median(),8:0.000} " +
                    $"{pairs.Select(x => x.Masked / x.Whole).Median(),6:0.00}");
            }
    }
}
