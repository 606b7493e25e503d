using Bdh.Model.Inference;
using FsCheck.Xunit;

namespace Bdh.Model.Tests;

public class InferenceTests
{
    /// <summary>Logits [T, V] of the parallel forward pass: the reference's semantics.</summary>
    public static T[] FullLogits<T>(BdhModel<T> model, int[] tokens) where T : unmanaged, System.Numerics.IFloatingPointIeee754<T>
    {
        using var _ = NoGrad.Scope();
        var (logits, _) = model.Forward(tokens, 1, tokens.Length);
        var result = logits.Value.Span.ToArray();
        logits.ReleaseGraph();
        return result;
    }

    private static double RelativeError<T>(T[] ours, T[] reference) where T : unmanaged, System.Numerics.IFloatingPointIeee754<T>
    {
        double worst = 0, scale = 0;
        for (int i = 0; i < ours.Length; i++)
        {
            worst = Math.Max(worst, Math.Abs(double.CreateTruncating(ours[i] - reference[i])));
            scale = Math.Max(scale, Math.Abs(double.CreateTruncating(reference[i])));
        }
        return scale == 0 ? worst : worst / scale; // D = 1: LayerNorm makes every logit exactly 0
    }

    /// <summary>
    /// The plain stepper gives the full pass's logits at every position, and so does the full-pass stepper; the fast
    /// stepper, with the synaptic state or the cache, stepping or after a parallel prefill, gives the plain stepper's
    /// logits, and its ρ is the plain stepper's. In double, so the test checks the algebra (to 1e-10) rather than
    /// float rounding in tiny LayerNorms.
    /// </summary>
    [Property(MaxTest = 40)]
    public void FullPlainAndFastSteppersGiveTheSameLogitsAtEveryPosition(byte layersRaw, byte headsRaw, byte dRaw, byte multRaw, byte tRaw, byte prefillRaw, int seed)
    {
        int heads = 1 + headsRaw % 3, d = heads * (1 + dRaw % 6), mult = 2 * (1 + multRaw % 3), t = 1 + tRaw % 24, prefill = 1 + prefillRaw % t;
        var config = new BdhConfig { NLayer = 1 + layersRaw % 3, NEmbd = d, NHead = heads, MlpInternalDimMultiplier = mult, Dropout = 0, VocabSize = 17 };
        var model = BdhModel<double>.Create(config, (ulong)seed, std: 0.3);
        var rng = new Rng((ulong)seed + 1);
        int[] tokens = Enumerable.Range(0, t).Select(_ => rng.NextInt(17)).ToArray();
        string label = $"layers={config.NLayer} heads={heads} D={d} N={config.N} T={t} prefill={prefill}";
        double[] Stepped(IBdhStepper<double> stepper) => tokens.SelectMany(token => stepper.Step(token).ToArray()).ToArray();

        double[] full = FullLogits(model, tokens);
        var plainStepper = new PlainStepper<double>(model);
        double[] plain = Stepped(plainStepper);
        Assert.True(RelativeError(plain, full) <= 1e-10, $"plain, {label}: {RelativeError(plain, full):e2}");
        double[] fullPass = Stepped(new FullPassStepper<double>(model));
        Assert.True(RelativeError(fullPass, full) <= 1e-10, $"full pass, {label}: {RelativeError(fullPass, full):e2}");

        var state = new SynapticState<double>(config.NLayer, heads, config.N, d);
        foreach (var memory in new IAttentionMemory<double>[] { state, new AttentionCache<double>(config.NLayer, heads, config.N, d) })
        {
            double[] fast = Stepped(new FastStepper<double>(model, memory));
            Assert.True(RelativeError(fast, plain) <= 1e-10, $"fast, {memory.GetType().Name}, {label}: {RelativeError(fast, plain):e2}");
        }
        for (int layer = 0; layer < config.NLayer; layer++)
            Assert.True(RelativeError(state.Rho[layer], plainStepper.Rho[layer]) <= 1e-10, $"layer {layer}'s rho, {label}");

        var continued = new FastStepper<double>(model, new SynapticState<double>(config.NLayer, heads, config.N, d));
        var logits = continued.Prefill(tokens[..prefill]).ToArray().Concat(tokens[prefill..].SelectMany(token => continued.Step(token).ToArray())).ToArray();
        var expected = plain.AsSpan((prefill - 1) * 17).ToArray();
        Assert.True(RelativeError(logits, expected) <= 1e-10, $"fast, prefill then steps, {label}: {RelativeError(logits, expected):e2}");
    }

    /// <summary>
    /// On a trained float model, where the fast stepper's float-only paths run (the int8 screen of the encoder product,
    /// encoder_v read only where xs fires, ρ's deferred writes), it follows the plain stepper token by token.
    /// </summary>
    [Fact]
    public void InFloatTheFastStepperFollowsThePlainOneOnTheTrainedModel()
    {
        var model = Checkpoint.Load(Path.Combine(Shared.Fixtures, "bdh-trained-cpu-tiny-500.safetensors"));
        var text = File.ReadAllBytes(Shared.Corpus)[..24].Select(b => (int)b).ToArray();
        var (plain, fast) = (new PlainStepper<float>(model), FastStepper<float>.Recurrent(model));
        foreach (int token in text)
        {
            float[] expected = plain.Step(token).ToArray(), ours = fast.Step(token).ToArray();
            Assert.True(RelativeError(ours, expected) <= 1e-5, $"position {fast.Position - 1}: {RelativeError(ours, expected):e2}");
        }
        var rho = ((SynapticState<float>)fast.Memory).Rho;
        for (int layer = 0; layer < rho.Length; layer++)
            Assert.True(RelativeError(rho[layer], plain.Rho[layer]) <= 1e-5, $"layer {layer}'s rho: {RelativeError(rho[layer], plain.Rho[layer]):e2}");
    }

    [Theory]
    [InlineData(GenerationMode.Cached)]
    [InlineData(GenerationMode.Recurrent)]
    public void InFloatTheTrainedModelsLogitsAgreeAtEveryPosition(GenerationMode mode)
    {
        var model = Checkpoint.Load(Path.Combine(Shared.Fixtures, "bdh-trained-cpu-tiny-500.safetensors"));
        var text = File.ReadAllBytes(Shared.Corpus)[..128].Select(b => (int)b).ToArray();
        var full = FullLogits(model, text);
        var stepper = IBdhStepper<float>.Start(model, mode);
        var stepped = text.SelectMany(token => stepper.Step(token).ToArray()).ToArray();
        Assert.True(RelativeError(stepped, full) <= 1e-5, $"{mode}: {RelativeError(stepped, full):e2}");
    }

    [Fact]
    public void RecurrentStepsAreTheSameBitsForAnyThreadCount()
    {
        // Heads are shared out over the threads and summed in head order; rho's deferred writes flush per head.
        var model = Checkpoint.Load(Path.Combine(Shared.Fixtures, "bdh-trained-cpu-tiny-500.safetensors"));
        var text = File.ReadAllBytes(Shared.Corpus)[..40].Select(b => (int)b).ToArray();
        float[] Run(int threads) => Threads.On(threads, () =>
        {
            var stepper = FastStepper<float>.Recurrent(model);
            return text.SelectMany(token => stepper.Step(token).ToArray()).ToArray();
        });
        var one = Run(1);
        Assert.Equal(one, Run(2));
        Assert.Equal(one, Run(3));
    }

    [Fact]
    public void ASnapshotContinuesExactlyAsTheOriginal()
    {
        var config = new BdhConfig { NLayer = 2, NEmbd = 16, NHead = 2, MlpInternalDimMultiplier = 4, Dropout = 0 };
        var model = BdhModel<float>.Create(config, 8, std: 0.1);
        int[] prompt = [.. "The synaptic state"u8.ToArray().Select(b => (int)b)];
        var original = new FastStepper<float>(model, new SynapticState<float>(2, 2, config.N, 16));
        var generated = Sampler.Continue(original, prompt, 10, new SamplingOptions(TopK: 5, Seed: 3));

        using var dir = new TempDir();
        string path = Path.Combine(dir.Path, "state.safetensors");
        var snapshot = StateSnapshot.Capture(original, pendingToken: generated[^1]);
        snapshot.Save(path, config);
        var restored = StateSnapshot.Load(path, config);
        Assert.Equal(snapshot.Position, restored.Position);
        Assert.Equal(generated[^1], restored.PendingToken);

        // The original, the restored copy and an in-memory fork all continue identically.
        var fork = snapshot.Fork();
        var a = Sampler.Continue(original, [generated[^1]], 20, new SamplingOptions(TopK: 5, Seed: 4));
        var b = Sampler.Continue(restored.Resume(model), [restored.PendingToken], 20, new SamplingOptions(TopK: 5, Seed: 4));
        var c = Sampler.Continue(fork.Resume(model), [fork.PendingToken], 20, new SamplingOptions(TopK: 5, Seed: 4));
        Assert.Equal(a, b);
        Assert.Equal(a, c);
    }

    [Fact]
    public void InspectionDensitiesAreConsistentAndRhoHoldsThePrompt()
    {
        var model = Checkpoint.Load(Path.Combine(Shared.Fixtures, "bdh-trained-cpu-tiny-500.safetensors"));
        int[] prompt = [.. "ROMEO: But soft, what light"u8.ToArray().Select(b => (int)b)];
        var report = InspectionReport.Run(model, prompt, top: 5);
        for (int l = 0; l < model.Config.NLayer; l++)
        {
            Assert.InRange(report.DensityXs[l], 0.01, 0.99);
            // xs⊙ys is non-zero only where both are.
            Assert.True(report.DensityXy[l] <= Math.Min(report.DensityXs[l], report.DensityYs[l]));
        }
        Assert.Equal(5, report.TopNeurons.Length);
        Assert.True(report.TopNeurons.Zip(report.TopNeurons.Skip(1)).All(p => p.First.Total >= p.Second.Total));
        // The state after reading equals stepping the prompt token by token.
        var stepped = new SynapticState<float>(model.Config.NLayer, model.Config.NHead, model.Config.N, model.Config.NEmbd);
        var stepper = new FastStepper<float>(model, stepped);
        foreach (int token in prompt) stepper.Step(token);
        float maxRho = stepped.Rho.Max(r => r.Max(Math.Abs));
        for (int l = 0; l < model.Config.NLayer; l++)
            for (int i = 0; i < stepped.Rho[l].Length; i++)
                Assert.True(Math.Abs(stepped.Rho[l][i] - report.State.Rho[l][i]) <= 1e-5 * maxRho);
        // The strongest synapses are a full sort's first five, of all layers' ρ.
        var sorted = Enumerable.Range(0, model.Config.NLayer)
            .SelectMany(l => report.State.Rho[l].Select((w, i) => (Layer: l, Index: i, Weight: w)))
            .OrderByDescending(s => Math.Abs(s.Weight)).Take(5)
            .Select(s => (s.Layer, s.Index / (model.Config.N * model.Config.NEmbd), s.Index / model.Config.NEmbd % model.Config.N, s.Index % model.Config.NEmbd, s.Weight));
        Assert.Equal(sorted, report.StrongestSynapses.Select(s => (s.Layer, s.Head, s.Neuron, s.Dim, s.Weight)));
    }

    [Fact]
    public void RhoTakesAPromptAbsorbedRightAfterTheStateIsMade()
    {
        // ρ's zeros are written on a pool thread when the state is made, layer by layer; a long prompt
        // absorbed at once into the last layer (one product straight into ρ) must not be overwritten by
        // them. 4 layers of 8 MB: the product is done before the clearing reaches the last (a fresh page's
        // first touch costs ~10 µs here, 32 MB ~0.1–0.2 s).
        const int layers = 4, n = 8192, d = 256, t = SynapticState<float>.Pending + 3;
        var rng = new Rng(5);
        var q = Tensor<float>.From(Enumerable.Range(0, t * n).Select(_ => rng.NextDouble() < 0.002 ? (float)rng.NextDouble() : 0f).ToArray(), 1, t, n);
        var x = Tensor<float>.From(Enumerable.Range(0, t * d).Select(_ => (float)rng.NextDouble()).ToArray(), t, d);
        new SynapticState<float>(1, 1, n, d).Absorb(0, q, x); // compile the product first, so that it is fast below
        var state = new SynapticState<float>(layers, 1, n, d);
        state.Absorb(layers - 1, q, x);
        Thread.Sleep(1000); // an unawaited clearing would pass the last layer meanwhile
        var expected = new float[n * d]; // Σ_s q_s ⊗ x_s
        for (int s = 0; s < t; s++)
            for (int i = 0; i < n; i++)
                if (q.Span[s * n + i] != 0)
                    for (int j = 0; j < d; j++) expected[i * d + j] += q.Span[s * n + i] * x.Span[s * d + j];
        var rho = state.Rho[layers - 1];
        for (int i = 0; i < expected.Length; i++)
            Assert.True(Math.Abs(rho[i] - expected[i]) <= 1e-5 * (1 + Math.Abs(expected[i])), $"element {i}: {rho[i]} vs {expected[i]}");
    }

    [Fact]
    public void SnapshotsOfAnotherModelShapeAreRefused()
    {
        var config = new BdhConfig { NLayer = 1, NEmbd = 8, NHead = 2, MlpInternalDimMultiplier = 4, Dropout = 0 };
        var model = BdhModel<float>.Create(config, 8);
        var stepper = new FastStepper<float>(model, new SynapticState<float>(1, 2, config.N, 8));
        stepper.Step(3);
        using var dir = new TempDir();
        string path = Path.Combine(dir.Path, "state.safetensors");
        StateSnapshot.Capture(stepper, 4).Save(path, config);
        var e = Assert.Throws<SafetensorsException>(() => StateSnapshot.Load(path, config with { NEmbd = 16 }));
        Assert.Contains("config", e.Message);
    }
}
