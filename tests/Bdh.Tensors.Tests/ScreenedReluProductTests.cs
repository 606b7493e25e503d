using FsCheck.Xunit;

namespace Bdh.Tensors.Tests;

public class ScreenedReluProductTests
{
    /// <summary>
    /// y against relu(x·W) in double: each output within float rounding of Σ_d |x_d W_dj|. Returns y and how many
    /// outputs the screen let through to be computed.
    /// </summary>
    private static (float[] Y, int Computed) AssertMatchesNaive(double[] x, double[] w, int k, int n, string what)
    {
        var y = Enumerable.Repeat(float.NaN, n).ToArray();
        // The W under test is the second of a stack of three; the others hold noise.
        var stack = Naive.Random(new Rng(1), 3 * k * n).Select(v => (float)v).ToArray();
        for (int i = 0; i < k * n; i++) stack[k * n + i] = (float)w[i];
        int computed = new ScreenedReluProduct(Tensor<float>.From(stack, 3, k, n)).Apply(1, x.Select(v => (float)v).ToArray(), y);
        for (int j = 0; j < n; j++)
        {
            double exact = 0, scale = 0;
            for (int d = 0; d < k; d++) (exact, scale) = (exact + x[d] * w[d * n + j], scale + Math.Abs(x[d] * w[d * n + j]));
            double expected = Math.Max(exact, 0), allowed = 1e-5 * scale + 1e-30;
            Assert.True(Math.Abs(y[j] - expected) <= allowed, $"{what}, k={k} n={n}: y[{j}] = {y[j]}, relu(x·W) = {expected}, allowed error {allowed:e2}");
        }
        return (y, computed);
    }

    [Property(MaxTest = 100)]
    public void MatchesReluOfTheDenseProduct(int seed)
    {
        // n up to 300: whole 128-column int8 panels and a part-filled last one; k from 1 and odd.
        var rng = new Rng((ulong)seed);
        int k = 1 + (int)(rng.NextDouble() * 70), n = 1 + (int)(rng.NextDouble() * 300);
        AssertMatchesNaive(Naive.Random(rng, k), Naive.Random(rng, k * n), k, n, "random W");
    }

    [Property(MaxTest = 100)]
    public void KeepsOutputsThatTheInt8CopyGetsMostWrong(int seed)
    {
        // The worst case of the bound: every weight sits just short of half an int8 step from its rounded value, on the
        // side that makes the int8 estimate r too low (e_dj = 0.49·sign x_d), so x·W = s (r + 0.49‖x‖₁). Each column
        // has one exact ±127 (its scale s = 2⁻⁷ then) and integers up to ±120 elsewhere; many columns land with r just
        // below zero but x·W > 0, which a screen with a bound smaller than ½‖x‖₁ would drop.
        var rng = new Rng((ulong)seed);
        int k = 2 + (int)(rng.NextDouble() * 60), n = 1 + (int)(rng.NextDouble() * 200);
        var x = Naive.Random(rng, k);
        var w = new double[k * n];
        for (int j = 0; j < n; j++)
        {
            int top = (int)(rng.NextDouble() * k);
            for (int d = 0; d < k; d++)
                w[d * n + j] = d == top ? (rng.NextDouble() < 0.5 ? 127 : -127) / 128.0
                    : (Math.Round((rng.NextDouble() * 2 - 1) * 120) + 0.49 * Math.Sign(x[d])) / 128.0;
        }
        AssertMatchesNaive(x, w, k, n, "worst-case rounding");
    }

    [Fact]
    public void ComputesTheOutputsThatFireAndFewOthers()
    {
        // A random product fires about half its outputs. Every output is checked against relu(x·W), so none that fires
        // was screened out; and on these shapes (k = 256 as the paper config's D) the screen's bound lets through ~4%
        // more, computed for nothing. Without vector hardware there is no screen and every output is computed.
        var rng = new Rng(5);
        int k = 256, n = 1000;
        var (y, computed) = AssertMatchesNaive(Naive.Random(rng, k), Naive.Random(rng, k * n), k, n, "k = 256");
        int fired = y.Count(v => v > 0);
        string path = ScreenedReluProduct.Screens ? $"screened at {Simd.Widest} bits" : "no screen";
        Assert.True(fired > 400 && computed >= fired && computed <= (ScreenedReluProduct.Screens ? fired + 100 : n),
            $"{path}: fired {fired}, computed {computed} of {n}");
    }

    [Fact]
    public void ANaNInXReachesEveryOutputAsInTheDenseProduct()
    {
        var rng = new Rng(6);
        int k = 64, n = 200;
        var w = Naive.Random(rng, k * n).Select(v => (float)v).ToArray();
        var x = Naive.Random(rng, k).Select(v => (float)v).ToArray();
        x[3] = float.NaN;
        var y = new float[n];
        Assert.Equal(n, new ScreenedReluProduct(Tensor<float>.From(w, 1, k, n)).Apply(0, x, y));
        Assert.All(y, v => Assert.True(float.IsNaN(v)));
    }
}
