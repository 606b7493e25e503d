using Bdh.Tensors;

namespace Bdh.Autograd.Tests;

public class EngineTests
{
    [Fact]
    public void GradientsAccumulateAcrossBackwardCallsUntilZeroed()
    {
        var x = Var<double>.Parameter(Tensor<double>.From([3.0], 1));
        for (int i = 0; i < 2; i++)
        {
            var y = Ops.Sum(x * x); // dy/dx = 2x = 6
            y.Backward();
            y.ReleaseGraph();
        }
        Assert.Equal(12.0, x.Grad!.Span[0]);
        x.ZeroGrad();
        Assert.Equal(0.0, x.Grad.Span[0]);
    }

    [Fact]
    public void ASharedInputReceivesTheSumOfItsPaths()
    {
        var x = Var<double>.Parameter(Tensor<double>.From([2.0], 1));
        var y = Ops.Sum(x * x + x); // 2x + 1 = 5
        y.Backward();
        Assert.Equal(5.0, x.Grad!.Span[0]);
    }

    [Fact]
    public void TheProductOfTwoReluOutputsHasItsGradientComputedOnlyWhereItIsNotZero()
    {
        // ys computed where xs fires is xs's zeros and, where xs fires, the plain op's values; xs ⊙ ys is marked, dropped or
        // not (a product with an input that is not a ReLU's output is not); a marked A of a product gets dA = dC·Bᵀ at its
        // non-zeros and exactly 0 elsewhere (plain dA has values there).
        var rng = new Rng(3);
        var x = Var<double>.Parameter(Tensor<double>.Uniform(rng, -1, 1, 1, 2, 5, 4));
        var w = Var<double>.Parameter(Tensor<double>.Uniform(rng, -1, 1, 2, 1, 4, 6));
        var w2 = Var<double>.Parameter(Tensor<double>.Uniform(rng, -1, 1, 2, 1, 4, 6));
        var xs = Ops.MatMulRelu(x, w);
        var ys = Ops.MatMulRelu(x, w2, where: xs);
        var plain = Ops.MatMulRelu(x, w2);
        for (int i = 0; i < xs.Value.Length; i++)
            Assert.Equal(xs.Value.Span[i] == 0 ? 0 : plain.Value.Span[i], ys.Value.Span[i], 1e-14); // dots, not the GEMM's sums
        Assert.Contains(plain.Value.Span.ToArray().Where((v, i) => xs.Value.Span[i] == 0), v => v > 0);
        Assert.True(Ops.DropoutOfProduct(xs, ys, 0.3, new Rng(1)).GradNeededOnlyWhereNonZero);
        Assert.True(Ops.DropoutOfProduct(xs, ys, 0, null).GradNeededOnlyWhereNonZero);
        Assert.False(Ops.DropoutOfProduct(xs, Ops.MatMul(x, w2), 0, null).GradNeededOnlyWhereNonZero);

        var values = Tensor<double>.Uniform(rng, -1, 1, 2, 2, 5, 6);
        for (int i = 0; i < values.Length; i += 3) values.Span[i] = 0;
        var marked = Var<double>.Parameter(values).AsGradNeededOnlyWhereNonZero();
        var unmarked = Var<double>.Parameter(values.Clone());
        var decoder = Var<double>.Constant(Tensor<double>.Uniform(rng, -1, 1, 2, 1, 6, 3));
        foreach (var a in new[] { marked, unmarked }) Ops.Sum(Ops.MatMulSummed(a, decoder, 1, 2, 5, 3)).Backward();
        for (int i = 0; i < values.Length; i++)
        {
            Assert.Equal(values.Span[i] == 0 ? 0 : unmarked.Grad!.Span[i], marked.Grad!.Span[i], 1e-14);
            if (values.Span[i] == 0) Assert.NotEqual(0, unmarked.Grad!.Span[i]);
        }

        // [1, B, T, N]·[H, 1, N, D]: dA sums the heads' products, which a masked product cannot; the plain gradient comes back.
        var broadcast = Var<double>.Parameter(Tensor<double>.From(values.Span[..(2 * 5 * 6)].ToArray(), 1, 2, 5, 6)).AsGradNeededOnlyWhereNonZero();
        var plainBroadcast = Var<double>.Parameter(Tensor<double>.From(values.Span[..(2 * 5 * 6)].ToArray(), 1, 2, 5, 6));
        foreach (var a in new[] { broadcast, plainBroadcast }) Ops.Sum(Ops.MatMul(a, decoder)).Backward();
        Assert.Equal(plainBroadcast.Grad!.Span.ToArray(), broadcast.Grad!.Span.ToArray());
    }

    [Fact]
    public void AGradientAddedToAfterItsNonZerosWereListedIsReadWhole()
    {
        // ys = relu(x·W2) read by dropout(xs ⊙ ys), whose float backward lists dys at xy's places (about 3% of them here),
        // and by a sum whose backward then adds 1 everywhere: W2's backward products must read the whole
        // dys, as in double (no lists), not the lists. Large enough for the float products to measure their operands.
        int b = 4, t = 64, k = 32, n = 128;
        var rng = new Rng(3);
        var x = Tensor<double>.Uniform(rng, 0, 1, 1, b, t, k);
        var (w, w2) = (Tensor<double>.Uniform(rng, -0.55, 0.45, 1, 1, k, n), Tensor<double>.Uniform(rng, -0.55, 0.45, 1, 1, k, n)); // ReLUs fire ~20%
        double[][] Gradients<T>() where T : unmanaged, System.Numerics.IFloatingPointIeee754<T>
        {
            var (xv, wv, w2v) = (Var<T>.Parameter(x.Convert<T>()), Var<T>.Constant(w.Convert<T>()), Var<T>.Parameter(w2.Convert<T>()));
            var xs = Ops.MatMulRelu(xv, wv);
            var ys = Ops.MatMulRelu(xv, w2v);
            var whole = Ops.Sum(ys); // the backward reaches it after the dropout's (the graph is walked from its last input)
            (whole + Ops.Sum(Ops.DropoutOfProduct(xs, ys, 0.3, new Rng(7)))).Backward();
            return [.. new[] { xv, w2v }.Select(v => v.Grad!.Span.ToArray().Select(double.CreateTruncating).ToArray())];
        }
        var (inFloat, inDouble) = (Gradients<float>(), Gradients<double>());
        for (int i = 0; i < 2; i++)
        {
            double scale = inDouble[i].Max(Math.Abs), error = inFloat[i].Zip(inDouble[i], (f, d) => Math.Abs(f - d)).Max() / scale;
            Assert.True(error < 1e-5, $"input {i}: float gradient differs from double by {error:e2}");
        }
    }

    [Fact]
    public void NoGradRecordsNoBackward()
    {
        var x = Var<double>.Parameter(Tensor<double>.From([2.0], 1));
        using (NoGrad.Scope())
        {
            var y = Ops.Sum(x * x);
            Assert.False(y.RequiresGrad);
            Assert.Throws<InvalidOperationException>(y.Backward);
        }
        Assert.True(Ops.Sum(x * x).RequiresGrad);
    }

    [Fact]
    public void TheOpProfileTimesOnlyGraphsBuiltWhileItIsOn()
    {
        // Shapes no other test uses: the profile is global. A graph built with profiling off carries no timed
        // closures, so its backward is not charged even when profiling is on by the time it runs.
        var rng = new Rng(3);
        var unprofiled = Ops.Sum(Ops.Relu(Var<double>.Parameter(Tensor<double>.Normal(rng, 1, 3, 7, 11))));
        try
        {
            OpProfile.Enabled = true;
            unprofiled.Backward();
            var profiled = Ops.Sum(Ops.Relu(Var<double>.Parameter(Tensor<double>.Normal(rng, 1, 3, 7, 13))));
            profiled.Backward();
        }
        finally { OpProfile.Enabled = false; }
        string report = OpProfile.Report(steps: 1);
        Assert.DoesNotContain("relu [3, 7, 11]", report);
        Assert.Contains("relu [3, 7, 13]", report);
    }

    [Fact]
    public void BackwardNeedsAScalar()
    {
        var x = Var<double>.Parameter(Tensor<double>.From([1.0, 2.0], 2));
        Assert.Throws<InvalidOperationException>(() => (x * x).Backward());
    }

    [Fact]
    public void GradCheckCatchesAWrongGradient()
    {
        // A deliberately wrong op (its backward claims d/dx = 1 for x²) must be reported.
        static Var<double> WrongSquare(Var<double> x) => Ops.Sum(x * Var<double>.Constant(x.Value.Clone()));
        double[] errors = GradCheck.Errors(v => WrongSquare(v[0]), Tensor<double>.From([0.5, -1.5, 2.0], 3));
        Assert.True(errors[0] > 0.1, $"error {errors[0]}");
    }
}
