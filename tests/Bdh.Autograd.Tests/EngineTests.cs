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
