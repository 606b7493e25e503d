using BenchmarkDotNet.Attributes;
using Bdh.Tensors;

namespace Bdh.Benchmarks;

[MemoryDiagnoser]
public class GemmBenchmarks
{
    private MatrixRef<float> _a, _b, _c;

    [ParamsSource(nameof(Shapes))]
    public GemmShape Shape { get; set; } = GemmShape.Bdh[0];

    [Params(1, 2)]
    public int Threads { get; set; }

    public static IEnumerable<GemmShape> Shapes => GemmShape.Bdh;

    [GlobalSetup]
    public void Setup()
    {
        Parallelism.Threads = Threads;
        (_a, _b, _c) = Shape.Operands();
    }

    [Benchmark]
    public void Sgemm() => Gemm.Multiply(Shape.M, Shape.N, Shape.K, _a, _b, _c, accumulate: false);
}
