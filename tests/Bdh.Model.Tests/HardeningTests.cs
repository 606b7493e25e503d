using System.Buffers.Binary;
using System.Text.Json.Nodes;

namespace Bdh.Model.Tests;

/// <summary>Bad files and settings found by an adversarial run: each is one clear <see cref="InputException"/>, never garbage.</summary>
public class HardeningTests
{
    private static readonly BdhConfig Tiny = new() { NLayer = 2, NEmbd = 8, NHead = 2, MlpInternalDimMultiplier = 4, Dropout = 0.1 };
    private static readonly string Small = Path.Combine(Shared.Fixtures, "bdh-reference-small.safetensors");

    [Theory]
    [InlineData("idx-2^40", "outside the range of int")]
    [InlineData("idx-rank-1", "not [B, T]")]
    [InlineData("idx-out-of-vocabulary", "outside the vocabulary")]
    [InlineData("no-trace", "no trace.* tensors")]
    [InlineData("lr-abc", "metadata 'lr' is 'abc'")]
    [InlineData("greedy-out-shorter-than-prompt", "'greedy.out'")]
    public void AMalformedFixtureIsAClearError(string corruption, string message)
    {
        using var dir = new TempDir();
        var edit = SafetensorsEdit.Of(Small);
        switch (corruption)
        {
            case "idx-2^40": BinaryPrimitives.WriteInt64LittleEndian(edit.Bytes("idx"), 1L << 40); break;
            case "idx-rank-1": edit.Header["idx"]!["shape"] = new JsonArray(edit.Bytes("idx").Length / 8); break;
            case "idx-out-of-vocabulary": BinaryPrimitives.WriteInt64LittleEndian(edit.Bytes("idx"), 256); break;
            case "no-trace":
                foreach (var name in edit.Header.Select(p => p.Key).Where(k => k.StartsWith("trace.")).ToList()) edit.Header.Remove(name);
                break;
            case "lr-abc": edit.Metadata["lr"] = "abc"; break;
            case "greedy-out-shorter-than-prompt":
                var prompt = edit.Header["greedy.prompt"]!.AsObject();
                var output = edit.Header["greedy.out"]!.AsObject();
                long begin = output["data_offsets"]![0]!.GetValue<long>();
                output["shape"] = new JsonArray(1);
                output["data_offsets"] = new JsonArray(begin, begin + 8);
                break;
        }
        var e = Assert.Throws<SafetensorsException>(() => ReferenceCheck.Run(edit.Save(Path.Combine(dir.Path, "f.safetensors")), Shared.Trig));
        Assert.Contains(message, e.Message);
    }

    [Theory]
    [InlineData("n_layer", 2000, "n_layer: must be <= 1024")]
    [InlineData("n_embd", 1_000_000_000, "n_head*n_embd*N = 1.6E+19 values")]
    [InlineData("n_embd", 100_000, "more than a tensor holds")]
    public void AConfigThatClaimsMoreThanItsFileHoldsIsRefusedBeforeAllocating(string field, int value, string message)
    {
        using var dir = new TempDir();
        string path = Path.Combine(dir.Path, "m.safetensors");
        Checkpoint.Save(BdhModel<float>.Create(Tiny with { NLayer = 1 }, 5), path);
        var edit = SafetensorsEdit.Of(path);
        var config = JsonNode.Parse(edit.Metadata["config"]!.GetValue<string>())!.AsObject();
        config[field] = value;
        config["mlp_internal_dim_multiplier"] = 16;
        edit.Metadata["config"] = config.ToJsonString();
        edit.Header.Remove("attn.freqs");
        long before = GC.GetAllocatedBytesForCurrentThread();
        var e = Assert.Throws<SafetensorsException>(() => Checkpoint.Load(edit.Save(path)));
        Assert.Contains(message, e.Message);
        Assert.True(GC.GetAllocatedBytesForCurrentThread() - before < 16 * new FileInfo(path).Length + (1 << 20));
    }

    [Fact]
    public void ABigConfigThatTheFileDoesNotHoldIsRefusedFromItsHeader()
    {
        using var dir = new TempDir();
        string path = Path.Combine(dir.Path, "m.safetensors");
        Checkpoint.Save(BdhModel<float>.Create(Tiny, 5), path);
        var edit = SafetensorsEdit.Of(path);
        edit.Metadata["config"] = (Tiny with { MlpInternalDimMultiplier = 1 << 24 }).ToJson(); // N = 2^26: 256 MB of frequencies alone
        edit.Header.Remove("attn.freqs");
        long before = GC.GetAllocatedBytesForCurrentThread();
        var e = Assert.Throws<SafetensorsException>(() => Checkpoint.Load(edit.Save(path)));
        Assert.Contains("the config needs", e.Message);
        Assert.True(GC.GetAllocatedBytesForCurrentThread() - before < 1 << 20);
    }

    [Theory]
    [InlineData(float.NaN)]
    [InlineData(float.PositiveInfinity)]
    public void ACheckpointWithANonFiniteWeightIsRefused(float value)
    {
        using var dir = new TempDir();
        string path = Path.Combine(dir.Path, "m.safetensors");
        Checkpoint.Save(BdhModel<float>.Create(Tiny, 5), path);
        var edit = SafetensorsEdit.Of(path);
        BitConverter.TryWriteBytes(edit.Bytes("encoder")[12..], value);
        var e = Assert.Throws<SafetensorsException>(() => Checkpoint.Load(edit.Save(path)));
        Assert.Contains($"tensor 'encoder' holds {value} at element 3", e.Message);
    }

    /// <summary>
    /// The library's entry points refuse at once what would fail hours into a run (a validation split too short, no
    /// validation windows) or compute nonsense (a negative temperature favours the least likely tokens; top-p 0 weighs
    /// every token NaN; a pass of 0 windows never ends).
    /// </summary>
    [Fact]
    public void LibraryEntryPointsRefuseWhatWouldFailLaterOrComputeNonsense()
    {
        Assert.StartsWith("EvalWindows: must be >= 1", Assert.Throws<ArgumentException>(() => new TrainOptions { EvalWindows = 0 }.Validate()).Message);
        Assert.StartsWith("ClipNorm: ", Assert.Throws<ArgumentException>(() => new TrainOptions { ClipNorm = double.NaN }.Validate()).Message);
        Assert.StartsWith("WarmupSteps: ", Assert.Throws<ArgumentException>(() => new TrainOptions { WarmupSteps = -1 }.Validate()).Message);
        var model = BdhModel<float>.Create(new BdhConfig { NLayer = 1, NEmbd = 8, NHead = 1, MlpInternalDimMultiplier = 2, Dropout = 0 }, 1);
        var data = new TextData(new byte[200]); // 180 bytes to train on, 20 to validate on
        Assert.Equal("data", Assert.Throws<ArgumentException>(() => new Trainer(model, data, new TrainOptions { Block = 64 })).ParamName);
        _ = new Trainer(model, data, new TrainOptions { Block = 64, EvalEvery = 0 }); // no validation: the training split suffices
        Assert.Equal("batch", Assert.Throws<ArgumentOutOfRangeException>(() => Evaluation.MeanLoss(model, new byte[100], 8, batch: 0)).ParamName);
        Assert.Equal("windows", Assert.Throws<ArgumentOutOfRangeException>(() => Evaluation.MeanLoss(model, new byte[100], 8, windows: -5)).ParamName);
        var logits = new float[256];
        Assert.Equal("Temperature", Assert.Throws<ArgumentOutOfRangeException>(() => Sampler.Draw(logits, new SamplingOptions(Temperature: -1), new Rng(1))).ParamName);
        Assert.Equal("TopP", Assert.Throws<ArgumentOutOfRangeException>(() => Sampler.Draw(logits, new SamplingOptions(TopP: 0), new Rng(1))).ParamName);
        var stepper = Inference.IBdhStepper<float>.Start(model, GenerationMode.Recurrent);
        Assert.Equal("input", Assert.Throws<ArgumentException>(() => Sampler.Continue(stepper, [], 1, new SamplingOptions())).ParamName);
        Assert.Throws<ArgumentOutOfRangeException>(() => Sampler.Continue(stepper, [1], -1, new SamplingOptions()));
    }

    [Fact]
    public void TinyTemperaturesDrawTheGreedyToken()
    {
        var rng = new Random(3);
        for (int i = 0; i < 50; i++)
        {
            var logits = Enumerable.Range(0, 256).Select(_ => (float)(rng.NextDouble() * 40 - 20)).ToArray();
            int greedy = Sampler.Draw(logits, new SamplingOptions(TopK: 1), new Rng(1));
            foreach (double t in new[] { 1e-20, 1e-50, double.Epsilon })
                Assert.Equal(greedy, Sampler.Draw(logits, new SamplingOptions(Temperature: t, Seed: (ulong)i), new Rng((ulong)i)));
        }
    }

    [Theory]
    [InlineData("step", "abc", "its step 'abc'")]
    [InlineData("step", "7", "its step '7' is not the 3")]
    [InlineData("batch_rng", null, "no 'batch_rng'")]
    [InlineData("dropout_rng", "1.5,2,3,4", "'dropout_rng' must be 4 comma-separated integers")]
    [InlineData("batch_rng", "0,0,0,0", "not all zero")]
    [InlineData("m.encoder", null, "'m.encoder' has 32 values")]
    public void ACorruptOptimizerFileIsAClearErrorAndChangesNothing(string key, string? value, string message)
    {
        using var dir = new TempDir();
        var data = TextData.Load(Shared.Corpus);
        var options = new TrainOptions { Batch = 2, Block = 8, Steps = 3, EvalEvery = 0, CheckpointEvery = 3 };
        new Trainer(BdhModel<float>.Create(Tiny, 1), data, options).Run(dir.Path, _ => { });
        string optim = Path.Combine(dir.Path, "checkpoints", "step-000003.optim.safetensors");
        var edit = SafetensorsEdit.Of(optim);
        if (key.StartsWith("m.")) // half its values: shape and offsets shrunk together
        {
            var entry = edit.Header[key]!.AsObject();
            long begin = entry["data_offsets"]![0]!.GetValue<long>();
            entry["shape"] = new JsonArray(32);
            entry["data_offsets"] = new JsonArray(begin, begin + 128);
        }
        else if (value is null) edit.Metadata.Remove(key);
        else edit.Metadata[key] = value;
        edit.Save(optim);

        var model = BdhModel<float>.Create(Tiny, 9);
        var before = model.Parameters.Select(p => p.Value.Value.Span.ToArray()).ToArray();
        var trainer = new Trainer(model, data, options with { Steps = 6 });
        var e = Assert.Throws<SafetensorsException>(() => trainer.Resume(dir.Path));
        Assert.Contains(message, e.Message);
        Assert.StartsWith(optim, e.Message);
        Assert.Equal(0, trainer.Step);
        for (int i = 0; i < before.Length; i++) Assert.Equal(before[i], model.Parameters[i].Value.Value.Span.ToArray());
    }

    [Fact]
    public void DivergedTrainingStopsAndKeepsTheLastFiniteCheckpoint()
    {
        using var dir = new TempDir();
        var options = new TrainOptions { Batch = 2, Block = 8, Steps = 20, EvalEvery = 0, CheckpointEvery = 1, LearningRate = 1e-3 };
        var trainer = new Trainer(BdhModel<float>.Create(Tiny, 1), TextData.Load(Shared.Corpus), options);
        trainer.Run(dir.Path, _ => { }, new CancellationTokenSource().Token);
        // Then a learning rate that blows the weights up at once: the run stops, no later checkpoint appears.
        var wild = new Trainer(BdhModel<float>.Create(Tiny, 1), TextData.Load(Shared.Corpus), options with { Steps = 40, LearningRate = 1e30 });
        wild.Resume(dir.Path);
        var e = Assert.Throws<TrainingDivergedException>(() => wild.Run(dir.Path, _ => { }));
        var kept = System.Text.RegularExpressions.Regex.Match(e.Message, @"is not finite: training diverged and stopped; the checkpoint of step (\d+) is the last one kept");
        Assert.True(kept.Success, e.Message);
        Assert.Equal(Path.Combine(dir.Path, "checkpoints", $"step-{int.Parse(kept.Groups[1].Value):D6}.safetensors"), new CheckpointStore(dir.Path).Latest);
        Checkpoint.Load(new CheckpointStore(dir.Path).Latest!); // finite
    }

    [Fact]
    public void UnfinishedCheckpointWritesAreRemoved()
    {
        using var dir = new TempDir();
        string checkpoints = Path.Combine(dir.Path, "checkpoints");
        Directory.CreateDirectory(checkpoints);
        File.WriteAllBytes(Path.Combine(checkpoints, ".step-000004.safetensors.123.tmp"), [1]);
        File.WriteAllBytes(Path.Combine(checkpoints, ".step-000004.optim.safetensors.123.tmp"), [1]);
        File.WriteAllBytes(Path.Combine(checkpoints, "notes.txt"), [1]);
        Assert.Equal(2, new CheckpointStore(dir.Path).RemoveUnfinished());
        Assert.Equal(["notes.txt"], Directory.GetFiles(checkpoints).Select(Path.GetFileName));
    }
}
