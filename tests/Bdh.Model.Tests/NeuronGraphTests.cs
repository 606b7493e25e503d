using Bdh.Model.Experiments;

namespace Bdh.Model.Tests;

public class NeuronGraphTests
{
    /// <summary>n nodes in blocks of <paramref name="block"/>: an entry is 1 with probability pIn inside a block, pOut across, else 0.</summary>
    private static float[] Planted(int n, int block, double pIn, double pOut, ulong seed)
    {
        var rng = new Rng(seed);
        var g = new float[n * n];
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++)
                g[i * n + j] = rng.NextDouble() < (i / block == j / block ? pIn : pOut) ? 1 : 0;
        return g;
    }

    [Fact]
    public void ThePlantedCommunitiesOfAModularMatrixAreFound()
    {
        const int n = 128, block = 32;
        var graph = NeuronGraph.Analyse(Planted(n, block, 0.4, 0.02, 3), n, head: 0, beta: 1.2);
        // Every block is one community and no two blocks share one.
        for (int b = 0; b < n / block; b++)
            Assert.Single(graph.Community.Skip(b * block).Take(block).Distinct());
        Assert.Equal(n / block, graph.Community.Distinct().Count());
        Assert.Equal([block, block, block, block], graph.CommunitySizes);
        Assert.InRange(graph.Modularity, 0.6, 0.75);                 // 4 equal blocks, ~17% of edges across: Q ≈ 0.75 − 0.17
        Assert.True(graph.ShuffledModularity < graph.Modularity - 0.3, $"{graph.ShuffledModularity} vs {graph.Modularity}");
    }

    [Fact]
    public void LouvainReportsTheModularityOfItsPartitionComputedDirectly()
    {
        const int n = 90;
        var g = Planted(n, 30, 0.3, 0.03, 8);
        var arcs = NeuronGraph.Arcs(g, n, 0.5);
        var graph = WeightedGraph.Symmetrised(n, arcs);
        foreach (ulong seed in new ulong[] { 1, 2, 3 })
        {
            var (community, q) = Louvain.Partition(graph, seed);
            // Q = (1/2m) Σ_ij (A_ij − k_i k_j / 2m) δ(c_i, c_j) with A = arcs + their transposes.
            var a = new double[n, n];
            foreach (var (i, j) in arcs) { a[i, j]++; a[j, i]++; }
            var k = Enumerable.Range(0, n).Select(i => Enumerable.Range(0, n).Sum(j => a[i, j])).ToArray();
            double m2 = k.Sum(), direct = 0;
            for (int i = 0; i < n; i++)
                for (int j = 0; j < n; j++)
                    if (community[i] == community[j]) direct += a[i, j] - k[i] * k[j] / m2;
            Assert.Equal(direct / m2, q, 12);
            Assert.True(q > 0.3);
        }
    }

    [Fact]
    public void TheDegreeFitRecoversAKnownExponent()
    {
        // 20000 draws from p(k) = k^−2.5 / ζ(2.5, 1), k ≥ 1, by inverting the CDF over k ≤ 10^6.
        const double alpha = 2.5;
        double zeta = PowerLawFit.HurwitzZeta(alpha, 1);
        var cdf = new double[1_000_000];
        double sum = 0;
        for (int k = 1; k <= cdf.Length; k++) cdf[k - 1] = sum += Math.Pow(k, -alpha) / zeta;
        var rng = new Rng(4);
        int[] sample = Enumerable.Range(0, 20000).Select(_ =>
        {
            int i = Array.BinarySearch(cdf, rng.NextDouble());
            return (i < 0 ? ~i : i) + 1;
        }).ToArray();
        var fit = PowerLawFit.Fit(sample)!;
        Assert.InRange(fit.Alpha, 2.4, 2.6);
        Assert.True(fit.LogLikelihoodRatio > 0 && fit.PValue < 1e-3, $"R {fit.LogLikelihoodRatio}, p {fit.PValue}");

        // On geometric draws the power law is not the significantly better fit.
        int[] geometric = Enumerable.Range(0, 5000).Select(_ => 1 + (int)(Math.Log(1 - rng.NextDouble()) / Math.Log(0.8))).ToArray();
        var expFit = PowerLawFit.Fit(geometric)!;
        Assert.False(expFit.LogLikelihoodRatio > 0 && expFit.PValue < 0.1, $"R {expFit.LogLikelihoodRatio}, p {expFit.PValue}, k_min {expFit.KMin}");
    }

    [Fact]
    public void HurwitzZetaMatchesKnownValues()
    {
        Assert.Equal(Math.PI * Math.PI / 6, PowerLawFit.HurwitzZeta(2, 1), 12);
        Assert.Equal(Math.PI * Math.PI / 6 - 1 - 0.25, PowerLawFit.HurwitzZeta(2, 3), 12);
        Assert.Equal(1.2020569031595942, PowerLawFit.HurwitzZeta(3, 1), 12);
    }

    [Fact]
    public void TheGraphOfAModelIsTheSameForAnyThreadCount()
    {
        var model = BdhModel<float>.Create(new BdhConfig { NLayer = 1, NEmbd = 32, NHead = 2, MlpInternalDimMultiplier = 8, Dropout = 0 }, 5);
        int n = model.Config.N;
        HeadGraph Run(int threads) => Threads.On(threads, () => NeuronGraph.Analyse(NeuronGraph.Interaction(model, 1), n, 1, 1.2));
        var one = Run(1);
        foreach (var other in new[] { Run(2), Run(3) })
        {
            Assert.Equal(one.Edges, other.Edges);
            Assert.Equal(one.InDegrees, other.InDegrees);
            Assert.Equal(one.Community, other.Community);
            Assert.Equal(one.Modularity, other.Modularity);
            Assert.Equal(one.ShuffledModularity, other.ShuffledModularity);
        }
        // G_1 = decoder_1 · encoder_1, entry by entry.
        var g = NeuronGraph.Interaction(model, 1);
        int d = 32;
        for (int i = 0; i < n; i += 7)
            for (int j = 0; j < n; j += 5)
            {
                double expected = 0;
                for (int k = 0; k < d; k++) expected += model.Decoder.Value.Span[(n + i) * d + k] * model.Encoder.Value.Span[(d + k) * n + j];
                Assert.Equal(expected, g[i * n + j], 5);
            }
    }
}
