using BenchmarkDotNet.Attributes;
using Bdh.Model;

namespace Bdh.Benchmarks;

/// <summary>128 tokens generated after a 16-token prompt, per generation path, on a `cpu`-preset model.</summary>
[SimpleJob(launchCount: 1, warmupCount: 2, iterationCount: 5)]
public class GenerationBenchmarks
{
    private BdhModel<float> _model = null!;
    private readonly int[] _prompt = "ROMEO: But soft,"u8.ToArray().Select(b => (int)b).ToArray();

    [Params(GenerationMode.Full, GenerationMode.Cached, GenerationMode.Recurrent)]
    public GenerationMode Mode { get; set; }

    [GlobalSetup]
    public void Setup() =>
        _model = BdhModel<float>.Create(new BdhConfig { NLayer = 4, NEmbd = 128, NHead = 4, MlpInternalDimMultiplier = 16, Dropout = 0 }, 1);

    [Benchmark(OperationsPerInvoke = 128)] // reported per token
    public int[] Generate128() => Sampler.Generate(_model, _prompt, 128, new SamplingOptions(TopK: 1), mode: Mode);
}
