using BenchmarkDotNet.Attributes;
using Bdh.Model;

namespace Bdh.Benchmarks;

/// <summary>
/// One optimizer step (forward, backward, AdamW) of each preset on all cores (the text is random letters:
/// the cost does not depend on it):
/// `cpu` as it trains (16 × 64 tokens), `paper` on one 512-token micro-batch (its 32-sequence step is
/// 32 of these accumulated).
/// </summary>
[SimpleJob(launchCount: 1, warmupCount: 3, iterationCount: 10, invocationCount: 1)]
public class TrainingStepBenchmarks
{
    private Trainer _trainer = null!;

    [Params("cpu", "paper")]
    public string Preset { get; set; } = "cpu";

    [GlobalSetup]
    public void Setup()
    {
        var config = Preset == "cpu"
            ? new BdhConfig { NLayer = 4, NEmbd = 128, NHead = 4, MlpInternalDimMultiplier = 16, Dropout = 0.1 }
            : new BdhConfig();
        var options = Preset == "cpu"
            ? new TrainOptions { Batch = 16, Block = 64, Steps = int.MaxValue, EvalEvery = 0 }
            : new TrainOptions { Batch = 1, Block = 512, Steps = int.MaxValue, EvalEvery = 0 };
        var rng = new Bdh.Tensors.Rng(1);
        var text = new TextData(Enumerable.Range(0, 200_000).Select(_ => (byte)('a' + rng.NextInt(26))).ToArray());
        _trainer = new Trainer(BdhModel<float>.Create(config, 1337), text, options);
    }

    [Benchmark]
    public double Step() => _trainer.TrainStep();
}
