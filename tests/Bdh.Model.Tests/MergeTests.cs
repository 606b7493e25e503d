using Bdh.Model.Experiments;
using Bdh.Model.Inference;
using Bdh.Tensors.Kernels;

namespace Bdh.Model.Tests;

public class MergeTests
{
    private static readonly BdhConfig Small = new() { NLayer = 2, NEmbd = 16, NHead = 2, MlpInternalDimMultiplier = 4, Dropout = 0 };

    /// <summary>
    /// A merged with a model B whose neurons never fire (encoder zero: xs = relu(0) = 0, so xs⊙ys = 0 and B's
    /// queries add nothing to attention) and whose embedding and head are A's: M computes what A computes.
    /// B has a different N (multiplier 6 against 4), so B's frequencies are not a tail of get_freqs(N_A + N_B).
    /// </summary>
    public static BdhModel<float> WithSilentNeurons(BdhModel<float> a, int multiplierB = 6, ulong seed = 9)
    {
        var b = BdhModel<float>.Create(a.Config with { MlpInternalDimMultiplier = multiplierB }, seed, std: 0.1);
        b.Encoder.Value.Span.Clear();
        a.Embed.Value.Span.CopyTo(b.Embed.Value.Span);
        a.LmHead.Value.Span.CopyTo(b.LmHead.Value.Span);
        return ModelMerge.Merge(a, b);
    }

    private static float[] FullLogits(BdhModel<float> model, int[] tokens) => InferenceTests.FullLogits(model, tokens);

    private static float[] SteppedLogits(BdhModel<float> model, GenerationMode mode, int[] tokens)
    {
        var stepper = IBdhStepper<float>.Start(model, mode);
        return tokens.SelectMany(token => stepper.Step(token).ToArray()).ToArray();
    }

    private static double RelativeError(float[] ours, float[] reference) =>
        ours.Zip(reference, (x, y) => Math.Abs(x - y)).Max() / reference.Max(Math.Abs);

    private static int[] Text(int length) => File.ReadAllBytes(Shared.Corpus)[..length].Select(b => (int)b).ToArray();

    [Fact]
    public void MergingWithSilentNeuronsKeepsTheLogitsInEveryMode()
    {
        var a = BdhModel<float>.Create(Small, 3, std: 0.1);
        var merged = WithSilentNeurons(a);
        Assert.Equal(32 + 48, merged.Config.N);
        Assert.Equal(10, merged.Config.MlpInternalDimMultiplier);
        int[] tokens = Text(48);
        var expected = FullLogits(a, tokens);

        Assert.True(RelativeError(FullLogits(merged, tokens), expected) <= 1e-5);
        foreach (var mode in new[] { GenerationMode.Cached, GenerationMode.Recurrent })
            Assert.True(RelativeError(SteppedLogits(merged, mode, tokens), expected) <= 1e-5, $"{mode}");
        // A prompt prefilled in parallel, then steps: the recurrent path's other route into ρ.
        var stepper = FastStepper<float>.Recurrent(merged);
        var prefilled = stepper.Prefill(tokens[..30]).ToArray().Concat(tokens[30..].SelectMany(t => stepper.Step(t).ToArray())).ToArray();
        Assert.True(RelativeError(prefilled, expected.AsSpan(29 * 256).ToArray()) <= 1e-5);
        Assert.Equal(Sampler.Generate(a, tokens[..8], 30, new SamplingOptions(TopK: 1)), Sampler.Generate(merged, tokens[..8], 30, new SamplingOptions(TopK: 1)));
    }

    [Fact]
    public void TheMergedFrequenciesAreKeptThroughACheckpointAndMatter()
    {
        var a = BdhModel<float>.Create(Small, 4, std: 0.1);
        var merged = WithSilentNeurons(a);
        Assert.Equal([.. a.Freqs, .. Rope.Frequencies(48)], merged.Freqs);
        using var dir = new TempDir();
        string path = Path.Combine(dir.Path, "merged.safetensors");
        Checkpoint.Save(merged, path);
        var loaded = Checkpoint.Load(path);
        Assert.Equal(merged.Freqs, loaded.Freqs);
        int[] tokens = Text(40);
        Assert.Equal(FullLogits(merged, tokens), FullLogits(loaded, tokens));
        // get_freqs(N_A + N_B) would rotate A's neurons differently: the test above would see it.
        loaded.LoadFreqs(Rope.Frequencies(loaded.Config.N));
        Assert.True(RelativeError(FullLogits(loaded, tokens), FullLogits(a, tokens)) > 1e-3);
    }

    [Fact]
    public void ResumingAMergedRunRestoresItsFrequencies()
    {
        var merged = WithSilentNeurons(BdhModel<float>.Create(Small, 5, std: 0.1));
        var data = new TextData(File.ReadAllBytes(Shared.Corpus)[..20000]);
        var options = new TrainOptions { Batch = 2, Block = 16, Steps = 2, EvalEvery = 0, CheckpointEvery = 1 };
        using var dir = new TempDir();
        new Trainer(merged, data, options).Run(dir.Path, _ => { });
        // A run resumed with the merged config but get_freqs(N) takes the checkpoint's frequencies.
        var fresh = new Trainer(BdhModel<float>.Create(merged.Config, 1), data, options);
        Assert.NotEqual(merged.Freqs, fresh.Model.Freqs);
        fresh.Resume(dir.Path);
        Assert.Equal(merged.Freqs, fresh.Model.Freqs);
    }

    [Fact]
    public void EmbeddingChoiceAndConcatenatedLayout()
    {
        var a = BdhModel<float>.Create(Small, 6);
        var b = BdhModel<float>.Create(Small with { MlpInternalDimMultiplier = 2 }, 7);
        int nh = 2, d = 16, na = a.Config.N, nb = b.Config.N, n = na + nb;
        var mean = ModelMerge.Merge(a, b);
        Assert.Equal(0.5f * (a.Embed.Value.Span[5] + b.Embed.Value.Span[5]), mean.Embed.Value.Span[5]);
        Assert.Equal(0.5f * (a.LmHead.Value.Span[7] + b.LmHead.Value.Span[7]), mean.LmHead.Value.Span[7]);
        Assert.Equal(b.Embed.Value.Span.ToArray(), ModelMerge.Merge(a, b, MergedEmbedding.B).Embed.Value.Span.ToArray());
        Assert.Equal(a.LmHead.Value.Span.ToArray(), ModelMerge.Merge(a, b, MergedEmbedding.A).LmHead.Value.Span.ToArray());
        // Neuron j of head h: A's j < N_A, then B's j − N_A; the same in the encoders and the decoder.
        for (int h = 0; h < nh; h++)
            for (int j = 0; j < n; j++)
            {
                bool fromA = j < na;
                var source = fromA ? a : b;
                int sn = fromA ? na : nb, sj = fromA ? j : j - na;
                for (int i = 0; i < d; i++)
                {
                    Assert.Equal(source.Encoder.Value.Span[(h * d + i) * sn + sj], mean.Encoder.Value.Span[(h * d + i) * n + j]);
                    Assert.Equal(source.EncoderV.Value.Span[(h * d + i) * sn + sj], mean.EncoderV.Value.Span[(h * d + i) * n + j]);
                    Assert.Equal(source.Decoder.Value.Span[(h * sn + sj) * d + i], mean.Decoder.Value.Span[(h * n + j) * d + i]);
                }
            }
    }

    [Theory]
    [InlineData("n_embd")]
    [InlineData("n_head")]
    [InlineData("n_layer")]
    [InlineData("vocab_size")]
    public void ModelsOfAnotherShapeAreRefusedByName(string field)
    {
        var other = field switch
        {
            "n_embd" => Small with { NEmbd = 32 },
            "n_head" => Small with { NHead = 4 },
            "n_layer" => Small with { NLayer = 3 },
            _ => Small with { VocabSize = 100 },
        };
        var e = Assert.Throws<ArgumentException>(() => ModelMerge.Merge(BdhModel<float>.Create(Small, 1), BdhModel<float>.Create(other, 2)));
        Assert.Contains(field, e.Message);
    }
}
