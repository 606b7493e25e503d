using System.Buffers.Binary;
using System.Text;

namespace Bdh.Model.Tests;

public sealed class TempDir : IDisposable
{
    public string Path { get; } = Directory.CreateTempSubdirectory("bdh-test-").FullName;
    public void Dispose() => Directory.Delete(Path, recursive: true);
}

public class CheckpointTests
{
    private static readonly BdhConfig Tiny = new() { NLayer = 2, NEmbd = 8, NHead = 2, MlpInternalDimMultiplier = 4, Dropout = 0.1 };

    [Fact]
    public void SavedModelsLoadBackIdentically()
    {
        using var dir = new TempDir();
        var model = BdhModel<float>.Create(Tiny, 5);
        string path = Path.Combine(dir.Path, "m.safetensors");
        Checkpoint.Save(model, path);
        var loaded = Checkpoint.Load(path);
        Assert.Equal(model.Config, loaded.Config);
        Assert.Equal(model.Freqs, loaded.Freqs);
        Assert.Equal(model.Parameters.Select(p => p.Name), loaded.Parameters.Select(p => p.Name));
        foreach (var ((name, a), (_, b)) in model.Parameters.Zip(loaded.Parameters))
            Assert.True(a.Value.Span.SequenceEqual(b.Value.Span), name);
        Assert.Empty(Directory.GetFiles(dir.Path, "*.tmp"));
    }

    /// <summary>A valid two-tensor file, then one corruption at a time.</summary>
    private static byte[] Build(string header, int dataBytes)
    {
        var json = Encoding.UTF8.GetBytes(header);
        var bytes = new byte[8 + json.Length + dataBytes];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, (ulong)json.Length);
        json.CopyTo(bytes, 8);
        return bytes;
    }

    [Theory]
    [InlineData("truncated", "truncated")]
    [InlineData("huge-header", "exceeds")]
    [InlineData("header-past-end", "past the end")]
    [InlineData("bad-json", "not JSON")]
    [InlineData("unknown-dtype", "unsupported dtype 'Q7'")]
    [InlineData("offset-out-of-range", "past the")]
    [InlineData("overlap", "overlap")]
    [InlineData("size-mismatch", "need")]
    [InlineData("negative-dim", "invalid dimension")]
    public void MalformedFilesAreClearErrors(string corruption, string message)
    {
        const string ok = """{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}""";
        byte[] bytes = corruption switch
        {
            "truncated" => [1, 2, 3],
            "huge-header" => Huge(),
            "header-past-end" => Build(ok, 16)[..30],
            "bad-json" => Build("{\"a\": [", 16),
            "unknown-dtype" => Build(ok.Replace("\"F32\",\"shape\":[2],\"data_offsets\":[8", "\"Q7\",\"shape\":[2],\"data_offsets\":[8"), 16),
            "offset-out-of-range" => Build(ok.Replace("[8,16]", "[8,1000000008]").Replace("\"shape\":[2],\"data_offsets\":[8", "\"shape\":[250000000],\"data_offsets\":[8"), 16),
            "overlap" => Build(ok.Replace("[8,16]", "[4,12]"), 16),
            "size-mismatch" => Build(ok.Replace("[8,16]", "[8,12]"), 16),
            "negative-dim" => Build(ok.Replace("\"shape\":[2],\"data_offsets\":[8", "\"shape\":[-2],\"data_offsets\":[8"), 16),
            _ => throw new ArgumentException(corruption),
        };
        var e = Assert.Throws<SafetensorsException>(() => SafetensorsFile.Parse("x.safetensors", bytes));
        Assert.Contains(message, e.Message);
        Assert.StartsWith("x.safetensors:", e.Message);

        static byte[] Huge()
        {
            var b = new byte[16];
            BinaryPrimitives.WriteUInt64LittleEndian(b, ulong.MaxValue / 2); // claims exabytes: must not allocate
            return b;
        }
    }

    [Fact]
    public void ShapesThatDisagreeWithTheConfigAreClearErrors()
    {
        using var dir = new TempDir();
        string path = Path.Combine(dir.Path, "m.safetensors");
        Checkpoint.Save(BdhModel<float>.Create(Tiny, 5), path);
        var file = SafetensorsFile.Read(path);
        var e = Assert.Throws<SafetensorsException>(() => Checkpoint.LoadModel<float>(file, Tiny with { NEmbd = 16 }));
        Assert.Contains("the config needs", e.Message);
    }

    private static TrainOptions Options(int steps) => new()
    {
        Batch = 4, Block = 16, Steps = steps, EvalEvery = 0, CheckpointEvery = 3, Seed = 21,
    };

    [Fact]
    public void ResumeIsBitIdenticalToAnUninterruptedRun()
    {
        var data = TextData.Load(Shared.Corpus);
        using var a = new TempDir();
        using var b = new TempDir();
        var straight = new Trainer(BdhModel<float>.Create(Tiny, 1), data, Options(6));
        straight.Run(a.Path, _ => { });

        new Trainer(BdhModel<float>.Create(Tiny, 1), data, Options(3)).Run(b.Path, _ => { });
        var resumed = new Trainer(BdhModel<float>.Create(Tiny, 99), data, Options(6)); // different init: all state must come from the checkpoint
        resumed.Resume(b.Path);
        Assert.Equal(3, resumed.Step);
        resumed.Run(b.Path, _ => { });

        foreach (var ((name, x), (_, y)) in straight.Model.Parameters.Zip(resumed.Model.Parameters))
            Assert.True(x.Value.Span.SequenceEqual(y.Value.Span), $"{name} differs after resume");
        // Dropout is on (0.1) and batches are random: both RNG states had to round-trip.
        Assert.Equal(Path.Combine(b.Path, "checkpoints", "step-000006.safetensors"), new CheckpointStore(b.Path).Latest);
    }

    [Fact]
    public void TheStoreKeepsOnlyTheNewestCompletePair()
    {
        using var dir = new TempDir();
        new Trainer(BdhModel<float>.Create(Tiny, 1), TextData.Load(Shared.Corpus), Options(3) with { CheckpointEvery = 1 }).Run(dir.Path, _ => { });
        var store = new CheckpointStore(dir.Path);
        Assert.Equal(Path.Combine(dir.Path, "checkpoints"), store.Folder);
        Assert.Equal(["step-000003.optim.safetensors", "step-000003.safetensors"], Directory.GetFiles(store.Folder).Select(Path.GetFileName).Order());
        Assert.Equal(Path.Combine(store.Folder, "step-000003.safetensors"), store.Latest);
        Assert.Equal("3", SafetensorsFile.Read(store.Latest!).Metadata["step"]);
        Assert.Null(new CheckpointStore(Path.Combine(dir.Path, "no-run-here")).Latest);
    }

    [Fact]
    public void ATrainerRefusesAnotherRunsFolderAndASaveRemovesWhatAKillLeftOfAnOlderPair()
    {
        using var dir = new TempDir();
        var data = TextData.Load(Shared.Corpus);
        new Trainer(BdhModel<float>.Create(Tiny, 1), data, Options(3)).Run(dir.Path, _ => { });
        // A fresh trainer saving beside step 3 would leave it the latest once its own step 2 is written.
        var fresh = new Trainer(BdhModel<float>.Create(Tiny, 2), data, Options(2));
        Assert.Equal("outDir", Assert.Throws<ArgumentException>(() => fresh.Run(dir.Path, _ => { })).ParamName);
        Assert.Equal(0, fresh.Step);
        // Its own checkpoints are not another run's: a trainer stopped past its last save runs on into the same folder.
        using (var own = new TempDir())
        {
            var stopped = new Trainer(BdhModel<float>.Create(Tiny, 1), data, Options(5));
            using var cancel = new CancellationTokenSource();
            stopped.Run(own.Path, report => { if (report.Step == 4) cancel.Cancel(); }, cancel.Token); // saved at 3, stopped at 4
            Assert.Equal(4, stopped.Step);
            stopped.Run(own.Path, _ => { });
            Assert.Equal(5, new CheckpointStore(own.Path).LatestStep);
        }
        // One file of an older pair, as a kill between the pair's two deletions leaves it: the next save removes it.
        string ckpt = Path.Combine(dir.Path, "checkpoints");
        File.Copy(Path.Combine(ckpt, "step-000003.optim.safetensors"), Path.Combine(ckpt, "step-000001.optim.safetensors"));
        var resumed = new Trainer(BdhModel<float>.Create(Tiny, 1), data, Options(4));
        resumed.Resume(dir.Path);
        resumed.Run(dir.Path, _ => { });
        Assert.Equal(["step-000004.optim.safetensors", "step-000004.safetensors"], Directory.GetFiles(ckpt).Select(Path.GetFileName).Order());
    }

    [Fact]
    public void AnIncompleteCheckpointPairIsIgnored()
    {
        using var dir = new TempDir();
        var data = TextData.Load(Shared.Corpus);
        var trainer = new Trainer(BdhModel<float>.Create(Tiny, 1), data, Options(3));
        trainer.Run(dir.Path, _ => { });
        string ckpt = Path.Combine(dir.Path, "checkpoints");
        // What a kill leaves mid-save: the next optimizer file written, its model file not yet, and a temp file.
        File.Copy(Path.Combine(ckpt, "step-000003.optim.safetensors"), Path.Combine(ckpt, "step-000006.optim.safetensors"));
        File.WriteAllBytes(Path.Combine(ckpt, ".step-000006.safetensors.123.tmp"), [1, 2, 3]);
        Assert.Equal(Path.Combine(ckpt, "step-000003.safetensors"), new CheckpointStore(dir.Path).Latest);
        Checkpoint.Load(new CheckpointStore(dir.Path).Latest!);
    }
}
