namespace Bdh.Model.Tests;

public class ModelTests
{
    private static readonly BdhConfig Tiny = new() { NLayer = 2, NEmbd = 6, NHead = 2, MlpInternalDimMultiplier = 2, Dropout = 0, VocabSize = 13 };

    [Fact]
    public void WholeTinyBdhIsGradientCheckedEndToEndInDouble()
    {
        // Two layers sharing encoder, encoder_v and decoder; two heads; T = 5 (row 0 of attention is zero).
        var model = BdhModel<double>.Create(Tiny, seed: 3, std: 0.5);
        int[] idx = [1, 5, 2, 12, 0, 7, 7, 3, 9, 4], targets = [5, 2, 12, 0, 7, 7, 3, 9, 4, 1];
        double[] errors = GradCheck.Errors(() => model.Forward(idx, 2, 5, targets).Loss!, model.Parameters.Select(p => p.Value).ToList());
        for (int i = 0; i < errors.Length; i++)
            Assert.True(errors[i] <= GradCheck.Tolerance, $"{model.Parameters[i].Name}: gradient error {errors[i]:e2}");
    }

    [Fact]
    public void FreshModelsUseTheReferenceFrequencies()
    {
        var file = SafetensorsFile.Read(Path.Combine(Shared.Fixtures, "bdh-reference-wide.safetensors"));
        using var reference = file.ReadTensor<float>("attn.freqs");
        var config = Checkpoint.ReadConfig(file);
        Assert.Equal(reference.Span.ToArray(), Bdh.Tensors.Kernels.Rope.Frequencies(config.N));
    }

    [Theory]
    [InlineData(0, 4, 4, 16, 0.1, "n_layer")]
    [InlineData(2, 0, 4, 16, 0.1, "n_embd")]
    [InlineData(2, 8, 0, 16, 0.1, "n_head")]
    [InlineData(2, 6, 4, 1, 0.1, "mlp_internal_dim_multiplier")] // N = 1: odd
    [InlineData(2, 8, 4, 16, 1.0, "dropout")]
    public void InvalidConfigsNameTheField(int layers, int embd, int heads, int mult, double dropout, string field)
    {
        var config = new BdhConfig { NLayer = layers, NEmbd = embd, NHead = heads, MlpInternalDimMultiplier = mult, Dropout = dropout };
        var e = Assert.Throws<ArgumentException>(() => config.Validate());
        Assert.StartsWith(field + ":", e.Message);
    }

    [Theory]
    [InlineData(64)]
    [InlineData(256)]
    [InlineData(512)]
    [InlineData(2048)]
    public void ValidationReadsAsManyWindowsAPassAsFitItsMemory(int block)
    {
        foreach (var config in new[] { BdhConfig.Paper, BdhConfig.Cpu })
        {
            int windows = Evaluation.WindowsPerPass(config, block);
            double Bytes(int count) => config.StepBytes(count, block, training: false);
            Assert.InRange(windows, 1, Evaluation.Batch);
            Assert.True(windows == 1 || Bytes(windows) <= Evaluation.PassBytes, $"{windows} windows of {block}: {Bytes(windows):e3} bytes");
            Assert.True(windows == Evaluation.Batch || Bytes(windows + 1) > Evaluation.PassBytes, $"{windows + 1} windows of {block} would fit");
        }
        // The paper preset validates on windows of 512: ~0.55 GB each, where 32 at once took 17.5 GB.
        Assert.Equal(1, Evaluation.WindowsPerPass(BdhConfig.Paper, 512));
    }

    [Fact]
    public void GreedyDrawIsTheArgmaxAndSamplingIsSeeded()
    {
        float[] logits = [0.1f, 3f, -2f, 2.9f];
        Assert.Equal(1, Sampler.Draw(logits, new SamplingOptions(TopK: 1), new Rng(1)));
        var a = Enumerable.Range(0, 50).Select(_ => 0).ToArray();
        var rngA = new Rng(4);
        var rngB = new Rng(4);
        var drawsA = a.Select(_ => Sampler.Draw(logits, new SamplingOptions(TopK: 2), rngA)).ToArray();
        var drawsB = a.Select(_ => Sampler.Draw(logits, new SamplingOptions(TopK: 2), rngB)).ToArray();
        Assert.Equal(drawsA, drawsB);
        Assert.All(drawsA, t => Assert.Contains(t, new[] { 1, 3 })); // top-2 only
        Assert.Contains(3, drawsA);
    }
}

public class TrainedReferenceTests
{
    private static readonly string Checkpoint = Path.Combine(Shared.Fixtures, "bdh-trained-cpu-tiny-500.safetensors");
    private static readonly System.Text.Json.JsonElement Expected =
        System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(Shared.Fixtures, "bdh-trained-cpu-tiny-500.json"))).RootElement;

    [Fact]
    public void ValLossOnTheFirst256WindowsMatchesTheReference()
    {
        var model = Model.Checkpoint.Load(Checkpoint);
        var val = TextData.Load(Shared.Corpus).Val;
        Assert.Equal(1742, TextData.WindowCount(val, 64));
        double loss = Evaluation.MeanLoss(model, val, 64, 256);
        Assert.Equal(Expected.GetProperty("val_loss").GetDouble(), loss, 1e-4);
    }

    [Fact]
    public void ValLossIsTheSameWhateverTheWindowsPerPass()
    {
        var model = Model.Checkpoint.Load(Checkpoint);
        var val = TextData.Load(Shared.Corpus).Val;
        double whole = Evaluation.MeanLoss(model, val, 64, 40); // 32 windows, then 8
        Assert.Equal(whole, Evaluation.MeanLoss(model, val, 64, 40, batch: 1), 1e-5);
        var done = new List<int>();
        Assert.Equal(whole, Evaluation.MeanLoss(model, val, 64, 40, batch: 7, progress: done.Add), 1e-5); // five of 7, then 5
        Assert.Equal([7, 14, 21, 28, 35, 40], done); // the windows done, pass by pass
    }

    [Fact]
    public void GradientsWhereTheProductsGoSparseMatchTheDenseFloat64Ones()
    {
        // Trained, xy = xs ⊙ ys is a few percent non-zero in every layer, below the sparse kernel's bounds (16% to 25%),
        // so in float the decoder's products and ys's backward products (its masked gradient is zero wherever xy is) go
        // sparse; float64 multiplies everything dense. 16 windows of 64: 1024 rows, enough for Gemm to test the density.
        // float32's rounding through the trained model's four layers reaches 3e-4 of encoder_v's largest gradient with
        // every float product dense too (the same to three digits), and a wrong sparse product would be off by its size.
        var file = SafetensorsFile.Read(Checkpoint);
        var (f32, f64) = (Model.Checkpoint.LoadModel<float>(file), Model.Checkpoint.LoadModel<double>(file));
        var (inputs, targets) = TextData.Windows(TextData.Load(Shared.Corpus).Val, 64, 0, 16);
        var densities = new List<double>();
        var observer = new ForwardObserver<float> { Layer = l => densities.Add(l.Xy.Span.ToArray().Count(v => v != 0) / (double)l.Xy.Length) };
        var lossF = f32.Forward(inputs, 16, 64, targets, observer: observer).Loss!;
        var lossD = f64.Forward(inputs, 16, 64, targets).Loss!;
        Assert.All(densities, d => Assert.InRange(d, 0.01, 0.075));
        lossF.Backward();
        lossD.Backward();
        Assert.Equal(lossD.Value.Span[0], lossF.Value.Span[0], 1e-5);
        foreach (var ((name, gradF), (_, gradD)) in f32.Parameters.Zip(f64.Parameters))
        {
            double[] f = [.. gradF.Grad!.Span.ToArray().Select(v => (double)v)], d = gradD.Grad!.Span.ToArray();
            double worst = f.Zip(d, (x, y) => Math.Abs(x - y)).Max(), scale = d.Max(Math.Abs);
            Assert.True(worst <= 1e-3 * scale, $"{name}: max |float - double| {worst:e2} against max |double| {scale:e2}");
        }
    }

    [Fact]
    public void ListedYsXyAndGradientsGiveTheWholeTensorsBits()
    {
        // Trained, xs fires at 10% to 25% of its places and xy = dropout(xs ⊙ ys) is 1% to 7.5% non-zero: ys is then
        // lists at xs's places (Ops.MatMulRelu's masked product) and xy is made from them (Ops.DropoutOfProduct); xy's
        // gradient, and the two its backward passes to xs and ys, are lists at xy's non-zeros (Ops.SendMatMulGrads), xs's
        // added into the attention's gradient block by block. Without the lists, or with xy's bound below any density
        // (xy then written whole, and its backward reading ys written out of its lists), each is a whole tensor. The loss
        // and every parameter's gradient are the same every way, with dropout on, at the JIT's widest vectors and every
        // narrower one.
        var model = Model.Checkpoint.LoadModel<float>(SafetensorsFile.Read(Checkpoint));
        Assert.True(model.Config.Dropout > 0);
        var (inputs, targets) = TextData.Windows(TextData.Load(Shared.Corpus).Val, 64, 0, 16);
        (float[][] Gradients, int Forwards, int Backwards) Run(bool listYs, double bound)
        {
            var (savedLists, savedBound) = (Ops.ListsMaskedProducts, Ops.ListedGradMaxDensity);
            var (forwards, backwards) = (Ops.ListedProductForwards, Ops.ListedProductBackwards);
            (Ops.ListsMaskedProducts, Ops.ListedGradMaxDensity) = (listYs, bound);
            try
            {
                foreach (var (_, parameter) in model.Parameters) parameter.ZeroGrad();
                var loss = model.Forward(inputs, 16, 64, targets, dropoutRng: new Rng(5)).Loss!;
                loss.Backward();
                float[] lossValue = loss.Value.Span.ToArray();
                loss.ReleaseGraph();
                return ([lossValue, .. model.Parameters.Select(p => p.Value.Grad!.Span.ToArray())],
                    Ops.ListedProductForwards - forwards, Ops.ListedProductBackwards - backwards);
            }
            finally { (Ops.ListsMaskedProducts, Ops.ListedGradMaxDensity) = (savedLists, savedBound); }
        }
        int layers = model.Config.NLayer;
        var whole = Run(listYs: false, bound: -1);
        Assert.Equal((0, 0), (whole.Forwards, whole.Backwards));
        foreach (var (listYs, bound, forwards, backwards) in new[] { (true, Ops.ListedGradMaxDensity, layers, layers), (false, Ops.ListedGradMaxDensity, 0, layers), (true, -1, layers, 0) })
        {
            var run = Run(listYs, bound);
            Assert.Equal((forwards, backwards), (run.Forwards, run.Backwards)); // each layer went the way named
            string[] names = ["loss", .. model.Parameters.Select(p => p.Name)];
            foreach (var (name, l, w) in names.Zip(run.Gradients, whole.Gradients))
                Assert.True(l.SequenceEqual(w), $"{name}: ys listed {listYs}, xy's bound {bound}: differs from the whole tensors'");
        }
    }

    [Theory]
    [InlineData(GenerationMode.Full)]
    [InlineData(GenerationMode.Cached)]
    [InlineData(GenerationMode.Recurrent)]
    public void GreedyTextMatchesTheReference(GenerationMode mode)
    {
        var model = Model.Checkpoint.Load(Checkpoint);
        var prompt = System.Text.Encoding.UTF8.GetBytes(Expected.GetProperty("greedy_prompt").GetString()!).Select(b => (int)b).ToArray();
        var tokens = Sampler.Generate(model, prompt, 200, new SamplingOptions(TopK: 1), mode: mode);
        Assert.Equal(Expected.GetProperty("greedy_200").GetString(), System.Text.Encoding.UTF8.GetString(tokens.Select(t => (byte)t).ToArray()));
    }
}
