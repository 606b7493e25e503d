using Bdh.Model.Experiments;

namespace Bdh.Model.Tests;

public class SynapseTests
{
    private static MannWhitney Test(float[] a, float[] b)
    {
        float[] values = [.. a, .. b];
        return MannWhitney.Test(values, new bool[values.Length], a.Length);
    }

    [Fact]
    public void UEqualsTheDirectCountOfPairsWithTies()
    {
        var rng = new Rng(2);
        for (int trial = 0; trial < 50; trial++)
        {
            // Small integers: many ties within and across the groups.
            float[] a = Enumerable.Range(0, 1 + rng.NextInt(12)).Select(_ => (float)rng.NextInt(4)).ToArray();
            float[] b = Enumerable.Range(0, 1 + rng.NextInt(12)).Select(_ => (float)rng.NextInt(4)).ToArray();
            double direct = a.Sum(x => b.Sum(y => x > y ? 1.0 : x == y ? 0.5 : 0));
            var test = Test(a, b);
            Assert.Equal(direct, test.U, 9);
            Assert.Equal(2 * direct / (a.Length * b.Length) - 1, test.RankBiserial, 9);
            Assert.InRange(test.PValue, 0, 1);
        }
    }

    [Fact]
    public void ThePapersFigureGivesItsPValue()
    {
        // 50 against 50, U = 2368 of 2500 (no ties): z = (2368 − 1250 − 0.5)/√(2500·101/12) = 7.70, p = 6.6e-15 < 1e-14.
        float[] a = Enumerable.Range(0, 50).Select(i => (float)(100 + i)).ToArray();
        float[] b = Enumerable.Range(0, 50).Select(i => (float)i).ToArray();
        // Three of b's values move up among a's (100..149): 149.5, 148.5 and 132.5 beat 50, 49 and 33 of them, 132 pairs.
        (b[49], b[48], b[47]) = (149.5f, 148.5f, 132.5f);
        var test = Test(a, b);
        Assert.Equal(2500 - 50 - 49 - 33, test.U);
        Assert.Equal(2368, test.U);
        Assert.InRange(test.PValue, 6e-15, 7e-15);
        Assert.Equal(0.8944, test.RankBiserial, 4);
    }

    [Fact]
    public void EqualGroupsAndAllTiedValuesShowNoEffect()
    {
        var allTied = Test([1, 1, 1], [1, 1, 1, 1]);
        Assert.Equal((6.0, 0.0, 1.0), (allTied.U, allTied.RankBiserial, allTied.PValue));
        var same = Test([1, 2, 3, 4], [4, 3, 2, 1]);
        Assert.Equal(8, same.U);
        Assert.Equal(0, same.RankBiserial);
        Assert.InRange(same.PValue, 0.5, 0.6);
        var separated = Test([5, 6, 7, 8, 9, 10], [1, 2, 3, 4, 0, -1]);
        Assert.Equal(36, separated.U);
        Assert.Equal(1, separated.RankBiserial);
        Assert.True(separated.PValue < 0.005);
    }

    /// <summary>
    /// Activations of a synthetic model: sparse random y and x in every layer and head; in texts with the concept, the
    /// marker token (at a random place) makes neuron 3 of head 1 fire in y at layer 0 and neuron 5 fire in x at layer 1.
    /// </summary>
    private static TextActivations Synthetic(Rng rng, bool marker, int heads = 2, int n = 8, int layers = 3)
    {
        int t = 6 + rng.NextInt(6);
        float[] Sparse() => Enumerable.Range(0, heads * t * n).Select(_ => rng.NextDouble() < 0.3 ? (float)rng.NextDouble() : 0).ToArray();
        var y = Enumerable.Range(0, layers).Select(_ => Sparse()).ToArray();
        var x = Enumerable.Range(0, layers).Select(_ => Sparse()).ToArray();
        int markerAt = rng.NextInt(t);
        for (int tau = 0; tau < t; tau++)
        {
            // The planted neurons fire on the marker token only.
            y[0][(1 * t + tau) * n + 3] = marker && tau == markerAt ? 2 : 0;
            x[1][(1 * t + tau) * n + 5] = marker && tau == markerAt ? 2 : 0;
        }
        return new TextActivations(t, y, x);
    }

    [Fact]
    public void APlantedSynapseIsFoundFirst()
    {
        var rng = new Rng(11);
        var with = Enumerable.Range(0, 20).Select(_ => Synthetic(rng, marker: true)).ToList();
        var without = Enumerable.Range(0, 20).Select(_ => Synthetic(rng, marker: false)).ToList();
        var results = SynapseSearch.Search(with, without, heads: 2, n: 8, top: 3);
        Assert.Equal(2 * 3, results.Count); // layers 1 and 2, three each
        var first = results.First(r => r.Layer == 1);
        Assert.Equal((1, 1, 3, 5), (first.Layer, first.Head, first.From, first.To));
        Assert.Equal(400, first.Test.U);                      // every text with the marker beats every text without
        Assert.Equal(1, first.Test.RankBiserial);
        Assert.True(first.CorrectedP < 1e-3, $"{first.CorrectedP}");
        Assert.Equal(Math.Min(1, first.Test.PValue * 2 * 2 * 64), first.CorrectedP, 12); // 2 layers × 2 heads × 8² synapses tested
        Assert.Equal(4, first.MeanWith, 5);
        Assert.Equal(0, first.MeanWithout);
        // Along a text the synapse grows only at the marker.
        var contributions = SynapseSearch.Contributions(with[0], first, 8);
        Assert.Single(contributions, c => c != 0);
        Assert.Equal(4, contributions.Max(), 5);
    }
}
