namespace Bdh.Model.Tests;

public class TrainerTests
{
    private static readonly BdhConfig Tiny = new() { NLayer = 1, NEmbd = 8, NHead = 2, MlpInternalDimMultiplier = 4, Dropout = 0 };

    [Fact]
    public void GradientAccumulationEqualsOneLargeBatch()
    {
        // Two micro-batches of 2 draw the same sequences as one batch of 4 and average the same gradients. The
        // parameters alone cannot show it: AdamW's step does not change when every gradient is scaled (its first is
        // lr·sign(g)), so a sum left unaveraged would pass. Its first moment after one step is (1 - β1)·g, and the
        // checkpoint holds it (m.NAME). No clipping: it would scale both gradients to the same norm.
        var data = TextData.Load(Shared.Corpus);
        using var dir = new TempDir();
        (double Loss, SafetensorsFile Optimizer) StepAndSave(int gradAccum, string name)
        {
            var trainer = new Trainer(BdhModel<float>.Create(Tiny, 2), data, new TrainOptions { Batch = 4, Block = 16, Steps = 1, GradAccum = gradAccum, EvalEvery = 0, ClipNorm = 0 });
            double loss = trainer.TrainStep();
            string folder = Path.Combine(dir.Path, name);
            trainer.SaveCheckpoint(folder);
            return (loss, new CheckpointStore(folder).ReadLatest()!.Value.Optimizer);
        }
        var (lossWhole, whole) = StepAndSave(1, "whole");
        var (lossAccumulated, accumulated) = StepAndSave(2, "accumulated");
        Assert.Equal(lossWhole, lossAccumulated, 1e-5);
        string[] moments = [.. whole.Entries.Keys.Where(n => n.StartsWith("m.", StringComparison.Ordinal))];
        Assert.Equal(BdhModel<float>.Create(Tiny, 2).Parameters.Count(), moments.Length);
        foreach (string name in moments)
        {
            var (a, b) = (whole.ReadTensor<float>(name).Span.ToArray(), accumulated.ReadTensor<float>(name).Span.ToArray());
            float scale = a.Max(MathF.Abs);
            Assert.True(scale > 0, $"{name}: no gradient reached it");
            for (int i = 0; i < a.Length; i++)
                Assert.True(MathF.Abs(a[i] - b[i]) <= 1e-5f * scale, $"{name}[{i}]: {a[i]} vs {b[i]} (largest {scale})");
        }
    }

    [Fact]
    public void TrainingIsBitIdenticalForAnyThreadCount()
    {
        // Large enough that every kernel splits its work (GEMM blocks, element-wise slices, attention
        // blocks, cross-entropy rows), dropout on: three steps on 1, 2 and 3 threads end in the same bits.
        var config = new BdhConfig { NLayer = 2, NEmbd = 32, NHead = 2, MlpInternalDimMultiplier = 4, Dropout = 0.1 };
        var data = TextData.Load(Shared.Corpus);
        float[][] Train(int threads) => Threads.On(threads, () =>
        {
            var trainer = new Trainer(BdhModel<float>.Create(config, 3), data, new TrainOptions { Batch = 8, Block = 32, Steps = 3 });
            for (int i = 0; i < 3; i++) trainer.TrainStep();
            return trainer.Model.Parameters.Select(p => p.Value.Value.Span.ToArray()).ToArray();
        });
        var one = Train(1);
        Assert.Equal(one, Train(2));
        Assert.Equal(one, Train(3));
    }

    [Fact]
    public void LearningRateIsConstantByDefaultAndWarmsUpThenDecaysWhenAsked()
    {
        var constant = new TrainOptions { LearningRate = 1e-3, Steps = 100 };
        Assert.All(new[] { 1, 50, 100 }, s => Assert.Equal(1e-3, constant.LearningRateAt(s)));
        var scheduled = constant with { WarmupSteps = 10, Cosine = true };
        Assert.Equal(1e-4, scheduled.LearningRateAt(1), 12);
        Assert.Equal(1e-3, scheduled.LearningRateAt(10), 12);
        Assert.Equal(1e-4, scheduled.LearningRateAt(100), 12); // cosine ends at 10%
        Assert.True(scheduled.LearningRateAt(40) > scheduled.LearningRateAt(70));
    }

    [Fact]
    public void ClippingBoundsTheGlobalGradientNorm()
    {
        var model = BdhModel<float>.Create(Tiny, 2);
        var adam = new AdamW(model.Parameters.Select(p => p.Value));
        foreach (var (_, p) in model.Parameters) p.Grad!.Span.Fill(1f);
        int count = model.Parameters.Sum(p => p.Value.Value.Length);
        Assert.Equal(Math.Sqrt(count), adam.ClipGradNorm(1.0), 3);
        double after = Math.Sqrt(model.Parameters.Sum(p => System.Numerics.Tensors.TensorPrimitives.SumOfSquares<float>(p.Value.Grad!.Span)));
        Assert.Equal(1.0, after, 4);
    }

    [Fact]
    public void ThePresetsShareTheReferenceDefaults()
    {
        // new BdhConfig() and new TrainOptions() are both the reference's: bdh.py's BDHConfig and train.py's loop.
        Assert.Equal(BdhConfig.Paper, new BdhConfig());
        Assert.Equal((6, 256, 4, 8192, 0.1), (BdhConfig.Paper.NLayer, BdhConfig.Paper.NEmbd, BdhConfig.Paper.NHead, BdhConfig.Paper.N, BdhConfig.Paper.Dropout));
        Assert.Equal(25_296_896, BdhModel<float>.ParameterCount(BdhConfig.Paper)); // the paper's 25M
        var reference = new TrainOptions();
        Assert.Equal((32, 512, 3000, 1e-3, 0.1, 1), (reference.Batch, reference.Block, reference.Steps, reference.LearningRate, reference.WeightDecay, reference.GradAccum));
        // The paper preset is the same step, accumulated one sequence at a time; the cpu preset a smaller model and batch.
        Assert.Equal(reference with { GradAccum = 32, EvalWindows = 32 }, TrainOptions.Paper);
        Assert.Equal(BdhConfig.Paper with { NLayer = 4, NEmbd = 128, MlpInternalDimMultiplier = 16 }, BdhConfig.Cpu);
        Assert.Equal(512, BdhConfig.Cpu.N);
        Assert.Equal(reference with { Batch = 16, Block = 64, Steps = 2000 }, TrainOptions.Cpu);
        Assert.Same(TrainOptions.Cpu, TrainOptions.Cpu.Validate());
        Assert.Same(TrainOptions.Paper, TrainOptions.Paper.Validate());
    }

    [Fact]
    public void OptionsRejectABatchThatAccumulationDoesNotDivide()
    {
        var e = Assert.Throws<ArgumentException>(() => new TrainOptions { Batch = 5, GradAccum = 2 }.Validate());
        Assert.StartsWith("GradAccum: must be >= 1 and divide the batch (5)", e.Message);
    }
}
