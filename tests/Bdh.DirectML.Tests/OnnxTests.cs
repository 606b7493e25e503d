using System.Text.Json;
using Bdh.DirectML.Onnx;
using Bdh.Autograd;
using Bdh.Model;
using Bdh.Model.Tests;
using Microsoft.ML.OnnxRuntime;

namespace Bdh.DirectML.Tests;

/// <summary>
/// The exported graphs run by ONNX Runtime, against the managed model: on the CPU provider, or on the
/// device BDH_ONNX_DEVICE names (the Windows workflow sets dml). Tests that read ../shared carry the
/// trait Category=Fixtures, so a clone without it can leave them out.
/// </summary>
public class OnnxTests
{
    private static string Trained => Path.Combine(Shared.Fixtures, "bdh-trained-cpu-tiny-500.safetensors");

    private static readonly OnnxDevice Device =
        Enum.TryParse<OnnxDevice>(Environment.GetEnvironmentVariable("BDH_ONNX_DEVICE"), ignoreCase: true, out var d) ? d : OnnxDevice.Cpu;

    private static BdhModel<float> Random(int layers, int embd, int heads, int mult, ulong seed) =>
        BdhModel<float>.Create(new BdhConfig { NLayer = layers, NEmbd = embd, NHead = heads, MlpInternalDimMultiplier = mult, Dropout = 0 }, seed, std: 0.1);

    private static float[] ManagedLogits(BdhModel<float> model, int[] tokens)
    {
        using var _ = NoGrad.Scope();
        var (logits, _) = model.Forward(tokens, 1, tokens.Length);
        var result = logits.Value.Span.ToArray();
        logits.ReleaseGraph();
        return result;
    }

    /// <summary>max |ours − theirs| / max |theirs|, the relative error of the parity checks.</summary>
    private static double RelativeError(ReadOnlySpan<float> ours, ReadOnlySpan<float> reference)
    {
        double diff = 0, scale = 0;
        for (int i = 0; i < reference.Length; i++)
        {
            diff = Math.Max(diff, Math.Abs(ours[i] - reference[i]));
            scale = Math.Max(scale, Math.Abs(reference[i]));
        }
        return diff / scale;
    }

    private static int[] Tokens(int count, ulong seed)
    {
        var rng = new Bdh.Tensors.Rng(seed);
        return Enumerable.Range(0, count).Select(_ => (int)(rng.NextDouble() * 256)).ToArray();
    }

    private static OnnxBdh Export(BdhModel<float> model, TempDir dir, int maxPositions = 64, long externalDataAbove = OnnxExport.ExternalDataAbove)
    {
        OnnxExport.Export(model, dir.Path, maxPositions, externalDataAbove);
        return OnnxBdh.Load(dir.Path, Device);
    }

    [Theory]
    [InlineData(1, 8, 1, 2, 1)]    // one layer, one head, one token
    [InlineData(2, 16, 2, 4, 17)]
    [InlineData(3, 12, 3, 3, 33)]  // odd head count, N = 12
    [InlineData(2, 32, 4, 8, 64)]  // the whole RoPE table
    public void PrefillLogitsMatchTheManagedForward(int layers, int embd, int heads, int mult, int length)
    {
        using var dir = new TempDir();
        var model = Random(layers, embd, heads, mult, seed: (ulong)(layers * 100 + length));
        using var onnx = Export(model, dir);
        int[] tokens = Tokens(length, (ulong)length);
        Assert.True(RelativeError(onnx.Logits(tokens), ManagedLogits(model, tokens)) <= 1e-4);
    }

    [Fact]
    public void AMergedModelWithSilentNeuronsGivesTheFirstModelsLogitsThroughOnnx()
    {
        // The export's RoPE tables come from the merged model's own frequencies (A's, then B's), not get_freqs(N).
        using var dir = new TempDir();
        var a = Random(2, 16, 2, 4, seed: 21);
        using var onnx = Export(MergeTests.WithSilentNeurons(a), dir);
        int[] prompt = Tokens(6, 5);
        var seen = new List<float[]>();
        int[] all = onnx.Generate(prompt, 12, new SamplingOptions(Seed: 2), onLogits: l => seen.Add(l.ToArray()));
        float[] reference = ManagedLogits(a, all);
        Assert.True(RelativeError(onnx.Logits(all), reference) <= 1e-4);
        for (int i = 0; i < seen.Count; i++)
            Assert.True(RelativeError(seen[i], reference.AsSpan((prompt.Length - 1 + i) * 256, 256)) <= 1e-4, $"step {i}");
    }

    [Fact, Trait("Category", "Fixtures")]
    public void PrefillLogitsMatchOnTheTrainedModel()
    {
        using var dir = new TempDir();
        var model = Checkpoint.Load(Trained);
        using var onnx = Export(model, dir, maxPositions: 256);
        int[] tokens = Tokens(200, 3);
        Assert.True(RelativeError(onnx.Logits(tokens), ManagedLogits(model, tokens)) <= 1e-4);
    }

    [Theory]
    [InlineData(1, 8, 2, 2)]
    [InlineData(2, 16, 4, 4)]
    public void EveryStepMatchesTheManagedForwardAtItsPosition(int layers, int embd, int heads, int mult)
    {
        using var dir = new TempDir();
        var model = Random(layers, embd, heads, mult, seed: 11);
        using var onnx = Export(model, dir);
        int[] prompt = Tokens(5, 7);
        var seen = new List<float[]>();
        int[] all = onnx.Generate(prompt, 20, new SamplingOptions(Seed: 3), onLogits: l => seen.Add(l.ToArray()));

        // Token i of the continuation was drawn from the logits at position prompt.Length − 1 + i of the whole text.
        float[] reference = ManagedLogits(model, all);
        int vocab = model.Config.VocabSize;
        Assert.Equal(20, seen.Count);
        for (int i = 0; i < seen.Count; i++)
            Assert.True(RelativeError(seen[i], reference.AsSpan((prompt.Length - 1 + i) * vocab, vocab)) <= 1e-4, $"token {i}");
    }

    [Fact, Trait("Category", "Fixtures")]
    public void GreedyTextEqualsTheReferenceAndTheManagedEngine()
    {
        using var dir = new TempDir();
        var model = Checkpoint.Load(Trained);
        using var onnx = Export(model, dir, maxPositions: 256);
        string reference = JsonDocument.Parse(File.ReadAllText(Path.ChangeExtension(Trained, ".json"))).RootElement.GetProperty("greedy_200").GetString()!;
        int[] prompt = "ROMEO:"u8.ToArray().Select(b => (int)b).ToArray();
        var greedy = new SamplingOptions(TopK: 1);
        int[] ours = onnx.Generate(prompt, 200, greedy);
        Assert.Equal(reference, new string(ours.Select(t => (char)t).ToArray()));

        // Seeded sampling draws the same text as the managed engine too: same draw, same seed.
        var sampled = new SamplingOptions(Temperature: 0.8, TopK: 20, Seed: 5);
        Assert.Equal(Sampler.Generate(model, prompt, 100, sampled), onnx.Generate(prompt, 100, sampled));
    }

    [Fact]
    public void ExternalDataGivesTheSameLogitsAsInlineWeights()
    {
        using var inline = new TempDir();
        using var external = new TempDir();
        var model = Random(2, 16, 2, 4, seed: 5);
        int[] tokens = Tokens(40, 9);
        using var a = Export(model, inline);
        using var b = Export(model, external, externalDataAbove: 0);
        Assert.False(File.Exists(Path.Combine(inline.Path, OnnxExport.PrefillFile + ".data")));
        Assert.True(File.Exists(Path.Combine(external.Path, OnnxExport.PrefillFile + ".data")));
        long Size(TempDir d) => new FileInfo(Path.Combine(d.Path, OnnxExport.StepFile)).Length;
        Assert.True(Size(external) * 4 < Size(inline)); // the graph and small constants only
        Assert.Equal(a.Logits(tokens), b.Logits(tokens));
    }

    [Fact]
    public void GraphsUseOnlyOperatorsDirectMLRunsAndNoShapeNodes()
    {
        var model = Random(2, 16, 2, 4, seed: 1);
        string[] allowed = ["Gather", "LayerNormalization", "MatMul", "Relu", "Reshape", "Transpose", "Mul", "Add", "Trilu", "CumSum"];
        foreach (var graph in new[] { OnnxExport.Prefill(model, 16), OnnxExport.Step(model, 16) })
            Assert.All(graph.OpTypes, op => Assert.Contains(op, allowed));
    }

    [Fact]
    public void OnnxRuntimeSeesNamedAndFixedShapes()
    {
        using var dir = new TempDir();
        var model = Random(2, 16, 2, 4, seed: 1);
        OnnxExport.Export(model, dir.Path, 16);
        using var prefill = new InferenceSession(Path.Combine(dir.Path, OnnxExport.PrefillFile));
        Assert.Equal(["tokens"], prefill.InputMetadata.Keys);
        Assert.Equal(["", "T"], prefill.InputMetadata["tokens"].SymbolicDimensions);
        Assert.Equal(["logits", "rho0", "rho1"], prefill.OutputMetadata.Keys);
        Assert.Equal([2, 32, 16], prefill.OutputMetadata["rho1"].Dimensions); // [nh, N, D]
        using var step = new InferenceSession(Path.Combine(dir.Path, OnnxExport.StepFile));
        Assert.Equal(["token", "position", "rho0", "rho1"], step.InputMetadata.Keys);
        Assert.Equal(["logits", "rho0.next", "rho1.next"], step.OutputMetadata.Keys);
        Assert.Equal([1, 1, 256], step.OutputMetadata["logits"].Dimensions);
    }

    [Fact]
    public void DirectMLIsRequiredOnlyWhenAskedFor()
    {
        using var dir = new TempDir();
        OnnxExport.Export(Random(1, 8, 1, 2, seed: 1), dir.Path, 8);
        var notices = new List<string>();
        using var auto = OnnxBdh.Load(dir.Path, OnnxDevice.Auto, notices.Add);
        if (ExecutionProviders.HasDirectML) return; // a Windows build: the windows workflow runs these on DirectML
        Assert.Equal(ExecutionProviders.Cpu, auto.Provider);
        Assert.Contains("running on the CPU provider", Assert.Single(notices));
        var e = Assert.Throws<DirectMLUnavailableException>(() => OnnxBdh.Load(dir.Path, OnnxDevice.Dml));
        Assert.StartsWith("DirectML unavailable: this build has no DirectML", e.Message);
        Assert.Equal(notices[0], $"{e.Message}; running on the CPU provider");
    }

    [Fact]
    public void BadFoldersAndLengthsAreClearErrors()
    {
        using var dir = new TempDir();
        Assert.Contains("no prefill.onnx", Assert.Throws<OnnxBdhException>(() => OnnxBdh.Load(dir.Path, OnnxDevice.Cpu)).Message);
        OnnxExport.Export(Random(1, 8, 1, 2, seed: 1), dir.Path, 8);
        using (var onnx = OnnxBdh.Load(dir.Path, OnnxDevice.Cpu))
        {
            Assert.Contains("RoPE tables for 8", Assert.Throws<OnnxBdhException>(() => onnx.Generate([1, 2, 3], 7, new SamplingOptions())).Message);
            Assert.Equal(9, onnx.Generate([1, 2, 3], 6, new SamplingOptions()).Length); // the last draw needs no step
            // Tokens the graphs' Gather would read from the wrong row, or that the device leaves undefined, are the caller's error.
            Assert.Throws<ArgumentOutOfRangeException>(() => onnx.Logits([1, -1]));
            Assert.Throws<ArgumentOutOfRangeException>(() => onnx.Generate([256], 1, new SamplingOptions()));
            Assert.Throws<ArgumentException>(() => onnx.Logits([]));
            Assert.Throws<ArgumentOutOfRangeException>(() => onnx.Generate([1], 1, new SamplingOptions(Temperature: -1)));
        }
        using (var other = new TempDir())
        {
            Assert.Throws<ArgumentOutOfRangeException>(() => OnnxExport.Export(Random(1, 8, 1, 2, seed: 1), other.Path, 0));
            // N = 2048 here: 2^20 positions make cos and sin tables of 4 GiB each, more than one array holds.
            Assert.Contains("bytes each", Assert.Throws<ArgumentOutOfRangeException>(() => OnnxExport.Export(Random(1, 8, 1, 256, seed: 1), other.Path, 1 << 20)).Message);
            Assert.Empty(Directory.GetFileSystemEntries(other.Path));
            // A re-export stopped between its two graphs leaves a prefill and a step of two exports, here of one model:
            // same config and length, and still refused.
            OnnxExport.Export(Random(1, 8, 1, 2, seed: 1), other.Path, 8);
            File.Copy(Path.Combine(dir.Path, OnnxExport.PrefillFile), Path.Combine(other.Path, OnnxExport.PrefillFile), overwrite: true);
            Assert.Contains("bdh.export_id differ", Assert.Throws<OnnxBdhException>(() => OnnxBdh.Load(other.Path, OnnxDevice.Cpu)).Message);
        }
        File.WriteAllBytes(Path.Combine(dir.Path, OnnxExport.StepFile), [1, 2, 3, 4]);
        Assert.Contains("step.onnx: ONNX Runtime rejects it", Assert.Throws<OnnxBdhException>(() => OnnxBdh.Load(dir.Path, OnnxDevice.Cpu)).Message);
    }

    [Fact]
    public void VarintsAndFieldsFollowTheProtobufEncoding()
    {
        // The protobuf documentation's examples: field 1 = 150 is 08 96 01; 300 is AC 02; −1 as int64 takes ten bytes.
        Assert.Equal([0x08, 0x96, 0x01], Bytes(new ProtoMessage().Int(1, 150)));
        Assert.Equal([0x10, 0xAC, 0x02], Bytes(new ProtoMessage().Int(2, 300)));
        Assert.Equal([0x08, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01], Bytes(new ProtoMessage().Int(1, -1)));
        // field 2 = "testing" is 12 07 74 65 73 74 69 6e 67; a nested message is length-delimited the same way.
        Assert.Equal([0x12, 0x07, .. "testing"u8.ToArray()], Bytes(new ProtoMessage().String(2, "testing")));
        Assert.Equal([0x1A, 0x03, 0x08, 0x96, 0x01], Bytes(new ProtoMessage().Message(3, new ProtoMessage().Int(1, 150))));
        Assert.Equal([0x15, 0x00, 0x00, 0x80, 0x3F], Bytes(new ProtoMessage().Float(2, 1f)));
    }

    private static byte[] Bytes(ProtoMessage message)
    {
        using var stream = new MemoryStream();
        message.WriteTo(stream);
        Assert.Equal(stream.Length, message.Length);
        return stream.ToArray();
    }
}
