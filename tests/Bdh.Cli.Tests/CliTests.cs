using System.Diagnostics;
using Bdh.Model;
using Bdh.Model.Tests;
using Bdh.Tensors.Kernels;

namespace Bdh.Cli.Tests;

/// <summary>The bdh command run as a user runs it: a separate process, exit codes, stdout and stderr.</summary>
public class CliTests
{
    internal static readonly string Bdh = Path.Combine(AppContext.BaseDirectory, "bdh.dll");
    internal static readonly string Trained = Path.Combine(Shared.Fixtures, "bdh-trained-cpu-tiny-500.safetensors");
    internal static readonly string Small = Path.Combine(Shared.Fixtures, "bdh-reference-small.safetensors");

    internal static Process Start(params string[] args) => StartWith(null, args);

    /// <summary>bdh with <paramref name="args"/>; <paramref name="environment"/> is one NAME=VALUE setting for it, or null.</summary>
    internal static Process StartWith(string? environment, params string[] args)
    {
        var info = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        info.ArgumentList.Add(Bdh);
        foreach (var a in args) info.ArgumentList.Add(a);
        info.Environment["BDH_CACHE_DIR"] = Path.Combine(Path.GetTempPath(), "bdh-test-empty-cache"); // never download in tests
        if (environment?.Split('=') is [var name, var value]) info.Environment[name] = value;
        return Process.Start(info)!;
    }

    internal static (int Code, string Out, string Err) Run(params string[] args) => RunWith(null, args);

    internal static (int Code, string Out, string Err) RunWith(string? environment, params string[] args)
    {
        using var p = StartWith(environment, args);
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        p.WaitForExit();
        return (p.ExitCode, stdout.Result, stderr.Result);
    }

    [Fact]
    public void SampleWritesOnlyThePromptAndContinuationToStdout()
    {
        var (code, stdout, stderr) = Run("sample", "--checkpoint", Trained, "--prompt", "ROMEO:", "--tokens", "30", "--top-k", "1");
        Assert.Equal(0, code);
        string reference = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(Shared.Fixtures, "bdh-trained-cpu-tiny-500.json")))
            .RootElement.GetProperty("greedy_200").GetString()!;
        Assert.Equal(reference[..("ROMEO:".Length + 30)] + "\n", stdout); // the prompt, then the reference's greedy tokens
        Assert.Matches(@"30 tokens in [\d.]+ s, [\d.]+ tokens/s", stderr);
    }

    [Theory]
    [InlineData("full")]
    [InlineData("cached")]
    [InlineData("recurrent")]
    public void EveryModeGivesTheReferenceGreedyText(string mode)
    {
        var (code, stdout, stderr) = Run("sample", "-c", Trained, "--tokens", "40", "--top-k", "1", "--mode", mode);
        Assert.Equal(0, code);
        string reference = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(Shared.Fixtures, "bdh-trained-cpu-tiny-500.json")))
            .RootElement.GetProperty("greedy_200").GetString()!;
        Assert.Equal(reference[..("ROMEO:".Length + 40)] + "\n", stdout);
        Assert.EndsWith($"tokens/s ({mode})", stderr.Trim());
    }

    [Fact]
    public void ASavedStateContinuesLikeOneLongRun()
    {
        using var dir = new TempDir();
        string state = Path.Combine(dir.Path, "romeo.safetensors");
        // 20 greedy tokens, saved; 20 more from the file = the first 40 greedy tokens of one run.
        var first = Run("sample", "-c", Trained, "--tokens", "20", "--top-k", "1", "--save-state", state);
        var second = Run("sample", "-c", Trained, "--tokens", "20", "--top-k", "1", "--load-state", state);
        var whole = Run("sample", "-c", Trained, "--tokens", "40", "--top-k", "1");
        Assert.Equal(0, first.Code + second.Code + whole.Code);
        Assert.Equal(whole.Out, first.Out.TrimEnd('\n') + second.Out);
        var wrongMode = Run("sample", "-c", Trained, "--load-state", state, "--mode", "full");
        Assert.Equal(2, wrongMode.Code);
    }

    [Fact]
    public void InspectSummarisesSparsityAndWritesPictures()
    {
        using var dir = new TempDir();
        var (code, stdout, _) = Run("inspect", "-c", Trained, "--prompt", "ROMEO: But soft", "--out", dir.Path, "--top", "3");
        Assert.Equal(0, code);
        Assert.Contains("15 tokens read", stdout);
        Assert.Contains("strongest synapses of rho", stdout);
        // Every picture names itself and its axes, has ticks or labels, and a heatmap its colour scale and embedded cells.
        string xs = File.ReadAllText(Path.Combine(dir.Path, "xs-layer3.svg"));
        foreach (var label in new[] { "Layer 3: neuron activations xs", ">neuron (4 heads of N = 512, side by side)<", ">token<", ">head 3<", ">R<", ">␣<", "data:image/png;base64,iVBORw0KGgo" })
            Assert.Contains(label, xs);
        Assert.Equal(3, System.Text.RegularExpressions.Regex.Matches(xs, "stroke=\"#00a0ff\"").Count); // head boundaries
        string rho = File.ReadAllText(Path.Combine(dir.Path, "rho-layer0-head0.svg"));
        foreach (var label in new[] { "Layer 0, head 0: synaptic state rho", ">embedding dimension<", ">neuron<", ">0<", ">112<" })
            Assert.Contains(label, rho);
        Assert.Matches(">-[0-9.e+-]+</text>", rho); // the colour scale runs from -max to max
        string density = File.ReadAllText(Path.Combine(dir.Path, "density.svg"));
        foreach (var label in new[] { "Activation density per layer (15 tokens)", ">layer<", ">fraction of neurons &gt; 0<", ">xs*ys<", ">3<" })
            Assert.Contains(label, density);
    }

    [Theory]
    [InlineData(null, 512)]                           // the widest this machine has
    [InlineData("DOTNET_EnableAVX512=0", 256)]        // AVX2's width
    [InlineData("DOTNET_EnableAVX2=0", 128)]          // ARM64's width
    [InlineData("DOTNET_EnableHWIntrinsic=0", 0)]     // scalar code
    [InlineData("DOTNET_MaxVectorTBitWidth=512", 512)] // and Vector<float>, which rope's sin/cos runs on, at 512 bits too
    public void CheckReferencePrintsOneLinePerGroupAndPassesAtEveryVectorWidth(string? environment, int widest)
    {
        var (code, stdout, _) = RunWith(environment, "check-reference", "--fixture", Small);
        Assert.Equal(0, code);
        // The knob took: the kernels ran at the width it holds the JIT to (or this machine's widest, if narrower), and
        // Vector<float> has the lanes it gives (.NET keeps it at 256 bits unless told otherwise; unaccelerated, 128 bits of software).
        int width = Math.Min(widest, global::Bdh.Tensors.Simd.Widest), lanes = width == 0 ? 4 : Math.Min(environment is null ? 256 : widest, width) / 32;
        Assert.Contains(width > 0 ? $"\nkernels at {width}-bit vectors (" : "\nkernels at scalar code (", stdout);
        Assert.Contains($"; rope's sin/cos {lanes} lanes at a time)\n", stdout);
        Assert.Contains("ok   f32 logits", stdout);
        Assert.Contains("ok   greedy tokens, recurrent (33)", stdout);
        Assert.Matches(@"ok   f64 ref-trig logits +max rel err \S+ \(tol 1e-12\)", stdout);
        // Our cos and sin have the reference's bits, on the fixture's rope table and on every angle of the trig file.
        Assert.Contains("  our rope cos/sin against torch-float32-trig.safetensors, 3072 values: cos differs on 0 (max 0 ulp), sin on 0 (max 0 ulp)\n", stdout);
        int angles = Shared.Trig.Angles.Length;
        Assert.Contains($"\nour rope cos/sin against torch-float32-trig.safetensors, {angles} values: cos differs on 0 (max 0 ulp), sin on 0 (max 0 ulp)\n", stdout);
        Assert.Contains("all groups match the reference", stdout);
    }

    [Fact]
    public void CheckReferenceNeedsTheReferenceTrigOfEveryPhase()
    {
        using var dir = new TempDir();
        string fixture = Path.Combine(dir.Path, "bdh-reference-small.safetensors");
        File.Copy(Small, fixture);
        var alone = Run("check-reference", "--fixture", fixture);
        Assert.Equal((2, "", $"bdh: --fixture: no torch-float32-trig.safetensors beside '{fixture}' (pass --trig FILE)"), (alone.Code, alone.Out, alone.Err.Trim()));

        var model = Checkpoint.LoadModel<float>(SafetensorsFile.Read(Small));
        float missing = Rope.Angle(23, model.Freqs[^1]); // the last position's last neuron
        string trig = Path.Combine(dir.Path, "trig.safetensors");
        Shared.WriteTrigWithoutAngle(Shared.Trig, missing, trig);
        var (code, stdout, stderr) = Run("check-reference", "--fixture", fixture, "--trig", trig);
        Assert.Equal((2, ""), (code, stdout));
        Assert.Single(stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.StartsWith($"bdh: {trig}: no rope phase {missing:R} (bits 0x", stderr);
    }

    [Fact]
    public void GraphReportsEveryHeadWithLabelledPicturesAndKeepsAnEarlierReport()
    {
        using var dir = new TempDir();
        var (code, stdout, _) = Run("graph", "-c", Trained, "--out", dir.Path, "--sweep", "1,2", "--seeds", "2");
        Assert.Equal(0, code);
        Assert.Equal(1 + 4, stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Length); // a header, one line per head
        using var json = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(dir.Path, "graph.json")));
        var heads = json.RootElement.GetProperty("heads");
        Assert.Equal(4, heads.GetArrayLength());
        foreach (var head in heads.EnumerateArray())
        {
            // Trained heads are more modular than the same entries shuffled, and their partition covers all 512 neurons.
            Assert.True(head.GetProperty("modularity").GetDouble() > head.GetProperty("shuffled_modularity").GetDouble());
            Assert.True(head.GetProperty("edges").GetInt32() > 0);
        }
        Assert.Equal(4 * 2, json.RootElement.GetProperty("sweep").GetArrayLength());
        string degrees = File.ReadAllText(Path.Combine(dir.Path, "degrees-head0.svg"));
        foreach (var label in new[] { "Head 0: degree distributions of G &gt;= 1.2 sigma", ">degree k<", ">neurons with degree k<", ">10<", ">in-degree<", ">out-degree<" })
            Assert.Contains(label, degrees);
        string modularity = File.ReadAllText(Path.Combine(dir.Path, "modularity.svg"));
        foreach (var label in new[] { "Louvain modularity", ">beta (threshold in standard deviations of G_h)<", ">modularity Q<", ">head 3<", ">head 3, entries shuffled<" })
            Assert.Contains(label, modularity);
        string communities = File.ReadAllText(Path.Combine(dir.Path, "communities-head1.svg"));
        foreach (var label in new[] { "Head 1: edges among the", ">writing neuron i<", ">reading neuron j (grouped by community)<", ">c0<", ">c1<", "data:image/png;base64," })
            Assert.Contains(label, communities);

        var before = File.ReadAllBytes(Path.Combine(dir.Path, "graph.json"));
        var again = Run("graph", "-c", Trained, "--out", dir.Path);
        Assert.Equal((2, ""), (again.Code, again.Out));
        Assert.Contains("--force", again.Err);
        Assert.Equal(before, File.ReadAllBytes(Path.Combine(dir.Path, "graph.json")));
    }

    [Fact]
    public void SynapsesFindsTheNameOfACharacterAndLabelsItsPictures()
    {
        using var dir = new TempDir();
        string with = Path.Combine(dir.Path, "with.txt"), without = Path.Combine(dir.Path, "without.txt"), output = Path.Combine(dir.Path, "out");
        // 12 texts of each kind from the corpus: lines that mention Romeo and lines that mention no one of his play.
        var corpus = File.ReadAllLines(Shared.Corpus).Where(l => l.Length is >= 30 and <= 80 && !l.EndsWith(':')).ToList();
        File.WriteAllLines(with, corpus.Where(l => l.Contains("Romeo")).Take(12));
        File.WriteAllLines(without, corpus.Where(l => !l.Contains("Romeo") && !l.Contains("Juliet")).Take(12));
        var (code, stdout, _) = Run("synapses", "-c", Trained, "--with", with, "--without", without, "--out", output, "--top", "2");
        Assert.Equal(0, code);
        Assert.Contains("12 texts with, 12 without; 3,145,728 synapses tested", stdout);
        using var json = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(output, "synapses.json")));
        var synapses = json.RootElement.GetProperty("synapses").EnumerateArray().ToList();
        Assert.Equal(3 * 2, synapses.Count);                 // layers 1..3, two each
        foreach (var s in synapses)
        {
            Assert.True(s.GetProperty("rank_biserial").GetDouble() > 0.9);
            Assert.True(s.GetProperty("mean_with").GetDouble() > s.GetProperty("mean_without").GetDouble());
        }
        // The name itself strengthens the best synapse of each layer most.
        Assert.All(synapses.Where((_, i) => i % 2 == 0), s => Assert.StartsWith("Romeo", s.GetProperty("words")[0].GetProperty("word").GetString()));
        string picture = File.ReadAllText(Path.Combine(output, "synapse-layer1.svg"));
        foreach (var label in new[] { "Synapse layer 1, head", ">token of the text<", ">synapse value sigma after the token<", ">R<", ">m<", ">with the concept (labelled below)<" })
            Assert.Contains(label, picture);
        var again = Run("synapses", "-c", Trained, "--with", with, "--without", without, "--out", output);
        Assert.Equal((2, ""), (again.Code, again.Out));
    }

    [Fact]
    public void AModelMergedWithItselfGreedyDecodesAsItAndFineTunes()
    {
        // Each neuron twice: attention and the decoder's sum double, and the LayerNorms after both undo it.
        using var dir = new TempDir();
        string merged = Path.Combine(dir.Path, "merged.safetensors");
        var (code, stdout, _) = Run("merge", Trained, Trained, "--out", merged);
        Assert.Equal(0, code);
        Assert.Contains("N = 512 + 512 = 1024 neurons per head", stdout);
        var sample = Run("sample", "-c", merged, "--tokens", "40", "--top-k", "1");
        string reference = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(Shared.Fixtures, "bdh-trained-cpu-tiny-500.json")))
            .RootElement.GetProperty("greedy_200").GetString()!;
        Assert.Equal((0, reference[..("ROMEO:".Length + 40)] + "\n"), (sample.Code, sample.Out));
        var again = Run("merge", Trained, Trained, "--out", merged, "--embed", "a", "--force");
        Assert.Equal(0, again.Code);

        string run = Path.Combine(dir.Path, "tune");
        var train = Run("train", "--init", merged, "--data", Shared.Corpus, "--steps", "2", "--batch", "2", "--block", "16",
            "--eval-every", "0", "--out", run);
        Assert.Equal(0, train.Code);
        var tuned = Checkpoint.Load(new CheckpointStore(run).Latest!);
        Assert.Equal(Checkpoint.Load(merged).Freqs, tuned.Freqs);
        Assert.Equal(32, tuned.Config.MlpInternalDimMultiplier);
        // The fine-tune resumed as a stopped run says to: its own command line, with --resume and more steps.
        var resumed = Run("train", "--init", merged, "--data", Shared.Corpus, "--steps", "3", "--batch", "2", "--block", "16",
            "--eval-every", "0", "--out", run, "--resume");
        Assert.True(resumed.Code == 0, resumed.Err);
        Assert.EndsWith("step-000003.safetensors", new CheckpointStore(run).Latest);
    }

    [Fact]
    public void AnOnnxExportSamplesTheManagedGreedyTextAndIsNeverOverwritten()
    {
        using var dir = new TempDir();
        var export = Run("export-onnx", "-c", Trained, "--out", dir.Path, "--max-positions", "128");
        Assert.Equal(0, export.Code);
        Assert.Contains("opset 17, IR 8", export.Out);

        var (code, stdout, stderr) = Run("sample", "--backend", "onnx", "--onnx", dir.Path, "--device", "cpu", "--tokens", "60", "--top-k", "1");
        Assert.Equal(0, code);
        var managed = Run("sample", "-c", Trained, "--tokens", "60", "--top-k", "1");
        Assert.Equal(managed.Out, stdout);
        Assert.EndsWith("tokens/s (onnx, CPUExecutionProvider)", stderr.Trim());

        var before = Directory.GetFiles(dir.Path).ToDictionary(f => f, File.ReadAllBytes);
        var again = Run("export-onnx", "-c", Trained, "--out", dir.Path);
        Assert.Equal(2, again.Code);
        Assert.Contains("--force", again.Err);
        foreach (var (file, bytes) in before) Assert.Equal(bytes, File.ReadAllBytes(file));

        var tooLong = Run("sample", "--backend", "onnx", "--onnx", dir.Path, "--tokens", "200");
        Assert.Equal((2, ""), (tooLong.Code, tooLong.Out));
        Assert.EndsWith("bdh: 205 positions: this export holds RoPE tables for 128 (export again with a larger --max-positions)\n", tooLong.Err); // "ROMEO:" and 199 steps
        if (!OperatingSystem.IsWindows())
        {
            var dml = Run("sample", "--backend", "onnx", "--onnx", dir.Path, "--device", "dml");
            Assert.Equal((2, ""), (dml.Code, dml.Out));
            Assert.Equal("bdh: --device dml: this build has no DirectML (Windows builds only)\n", dml.Err);
        }
    }

    [Fact]
    public void TrainRefusesToOverwriteAnExistingRun()
    {
        using var dir = new TempDir();
        string[] tiny = ["train", "--data", Shared.Corpus, "--layers", "1", "--embd", "8", "--heads", "2", "--mult", "4",
            "--batch", "2", "--block", "8", "--steps", "2", "--eval-every", "1", "--out", dir.Path];
        var first = Run(tiny);
        Assert.Equal(0, first.Code);
        Assert.Contains("done: 2 steps", first.Out);
        string curve = File.ReadAllText(Path.Combine(dir.Path, "loss.svg"));
        foreach (var label in new[] { "Training loss, steps 1-2", ">optimizer step<", ">loss (cross-entropy, nats per byte)<", ">train loss<", ">val loss<", ">1<", ">2<" })
            Assert.Contains(label, curve);
        Assert.Equal(3, File.ReadAllLines(Path.Combine(dir.Path, "loss.csv")).Length);
        var before = Directory.GetFiles(dir.Path, "*", SearchOption.AllDirectories).ToDictionary(f => f, File.ReadAllBytes);

        var again = Run(tiny);
        Assert.Equal(2, again.Code);
        Assert.Contains("--resume", again.Err);
        foreach (var (file, bytes) in before) Assert.Equal(bytes, File.ReadAllBytes(file));
    }

    [Fact]
    public void KillingTrainingMidCheckpointLeavesALoadableCheckpointThatResumes()
    {
        using var dir = new TempDir();
        // A tiny model checkpointing every step: the process is almost always inside a checkpoint write.
        string[] Args(int steps) => ["train", "--data", Shared.Corpus, "--layers", "1", "--embd", "16", "--heads", "2", "--mult", "8",
            "--batch", "2", "--block", "16", "--steps", steps.ToString(), "--eval-every", "0", "--checkpoint-every", "1", "--out", dir.Path];
        var args = Args(1_000_000);
        var rng = new Random(5);
        for (int kill = 0; kill < 3; kill++)
        {
            using var p = Start(kill == 0 ? args : [.. args, "--resume"]);
            var watch = Stopwatch.StartNew();
            int startStep = StepOf(new CheckpointStore(dir.Path).Latest);
            while (StepOf(new CheckpointStore(dir.Path).Latest) < startStep + 3 && watch.Elapsed < TimeSpan.FromSeconds(60)) Thread.Sleep(5);
            Thread.Sleep(rng.Next(0, 40));
            p.Kill(entireProcessTree: true);
            p.WaitForExit();

            string latest = new CheckpointStore(dir.Path).Latest!;
            Assert.NotNull(latest);
            Checkpoint.Load(latest); // the model file is whole
            Assert.Equal(StepOf(latest).ToString(), SafetensorsFile.Read(Path.ChangeExtension(latest, ".optim.safetensors")).Metadata["step"]);
        }
        int last = StepOf(new CheckpointStore(dir.Path).Latest);
        var resumed = Run([.. Args(last + 2), "--resume"]);
        Assert.Equal(0, resumed.Code);
        Assert.Contains($"done: {last + 2} steps", resumed.Out);
    }

    internal static int StepOf(string? checkpoint) =>
        checkpoint is null ? 0 : int.Parse(Path.GetFileName(checkpoint)["step-".Length..^".safetensors".Length]);
}
