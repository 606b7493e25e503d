using Bdh.Tensors;

namespace Bdh.Benchmarks;

/// <summary>
/// `transposed [threads]`: the products of training whose A is read transposed (the weight gradients op(A)ᵀ·dY and
/// attention's Sᵀ·dOut), each timed from its transposed A and from the same A stored plain, alternately; the ratio
/// (plain time / transposed time, 1 when reading A transposed costs nothing) is the median of the pairs.
/// </summary>
public static class TransposedA
{
    private static readonly (string Name, int M, int N, int K)[] Shapes =
    [
        ("paper xyᵀ·dy (A's stride 8192)", 8192, 256, 512),
        ("paper xᵀ·dC (A's stride 256)", 256, 8192, 512),
        ("cpu xyᵀ·dy (A's stride 512)", 512, 128, 1024),
        ("cpu dW = xᵀ·dY (A's stride 128)", 128, 2048, 1024),
        ("Sᵀ·dOut at T = 1024 (A's stride 1024)", 1024, 256, 1024),
    ];

    public static void Run(int threads)
    {
        Parallelism.Threads = threads;
        Console.WriteLine($"A read transposed against the same A stored plain, {threads} thread(s), {Simd.Widest}-bit vectors");
        foreach (var (name, m, n, k) in Shapes)
        {
            var rng = new Rng(7);
            var (stored, b, plain) = (Tensor<float>.Uniform(rng, -1, 1, k * m), Tensor<float>.Uniform(rng, -1, 1, k * n), Tensor<float>.Empty(m, k));
            for (int i = 0; i < m; i++) // op(A) [m, k] row by row
                for (int p = 0; p < k; p++) plain.Span[i * k + p] = stored.Span[p * m + i];
            var (bRef, cRef) = (b.Matrix(0, n), Tensor<float>.Empty(m, n).Matrix(0, n));
            double Time(MatrixRef<float> a) => Timing.Seconds(() => Gemm.Multiply(m, n, k, a, bRef, cRef, accumulate: false));
            var (transposedA, plainA) = (stored.Matrix(0, m, transposed: true), plain.Matrix(0, k));
            Time(transposedA); Time(plainA);
            var pairs = Enumerable.Range(0, 21).Select(_ => (Transposed: Time(transposedA), Plain: Time(plainA))).ToArray();
            double flops = 2.0 * m * n * k;
            Console.WriteLine($"{name,-40} transposed {flops / pairs.Select(p => p.Transposed).Median() / 1e9,6:0.0} GFLOP/s, " +
                $"plain {flops / pairs.Select(p => p.Plain).Median() / 1e9,6:0.0}, ratio {pairs.Select(p => p.Plain / p.Transposed).Median():0.00}");
        }
    }
}
