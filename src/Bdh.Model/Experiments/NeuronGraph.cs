namespace Bdh.Model.Experiments;

/// <summary>One head's graph at one threshold: its edges, degrees and communities against a shuffled baseline.</summary>
public sealed record HeadGraph(
    int Head, double Beta, double Threshold, int Edges, int[] InDegrees, int[] OutDegrees, PowerLawFit? InFit, PowerLawFit? OutFit,
    int[] Community, double Modularity, double ShuffledModularity, int[] CommunitySizes);

/// <summary>
/// The neuron interaction network of the paper's §5.5. Per head h, G_h = decoder_h · encoder_h ([N, D]·[D, N] = [N, N]):
/// G_h[i, j] is what neuron i writes into the residual stream (its decoder row) as read by neuron j (its encoder
/// column). Entries at or above β·σ (σ the standard deviation of G_h's entries) are the graph's directed edges i → j;
/// the diagonal (a neuron reading itself) is left out.
/// </summary>
public static class NeuronGraph
{
    /// <summary>G_h [N, N], row-major; with <paramref name="readByEncoderV"/> decoder_h · encoder_v_h (the paper's G_y).</summary>
    public static float[] Interaction(BdhModel<float> model, int head, bool readByEncoderV = false)
    {
        int n = model.Config.N, d = model.Config.NEmbd;
        var g = new float[n * n];
        var encoder = (readByEncoderV ? model.EncoderV : model.Encoder).Value;
        Gemm.Multiply(n, n, d,
            model.Decoder.Value.Matrix(head * n * d, d),   // decoder_h [N, D]
            encoder.Matrix(head * d * n, n),               // encoder_h [D, N]
            new MatrixRef<float>(g, 0, n), accumulate: false);
        return g;
    }

    /// <summary>Standard deviation of the entries (in double).</summary>
    public static double StandardDeviation(ReadOnlySpan<float> values)
    {
        double sum = 0, squares = 0;
        foreach (float v in values) { sum += v; squares += (double)v * v; }
        double mean = sum / values.Length;
        return Math.Sqrt(Math.Max(squares / values.Length - mean * mean, 0));
    }

    /// <summary>The arcs i → j (i ≠ j) with G[i, j] ≥ threshold.</summary>
    public static List<(int From, int To)> Arcs(ReadOnlySpan<float> g, int n, double threshold)
    {
        var arcs = new List<(int, int)>();
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++)
                if (i != j && g[i * n + j] >= threshold) arcs.Add((i, j));
        return arcs;
    }

    /// <summary>The graph of one head at β: degrees and their power-law fits, the best Louvain partition of <paramref name="seeds"/>, and the
    /// same for G's off-diagonal entries shuffled (seeded), the baseline with the same threshold and about as many edges.</summary>
    public static HeadGraph Analyse(float[] g, int n, int head, double beta, int seeds = 5, ulong shuffleSeed = 1)
    {
        double threshold = beta * StandardDeviation(g);
        var arcs = Arcs(g, n, threshold);
        var inDegrees = new int[n];
        var outDegrees = new int[n];
        foreach (var (i, j) in arcs) { outDegrees[i]++; inDegrees[j]++; }
        var (community, q) = Louvain.Best(WeightedGraph.Symmetrised(n, arcs), seeds);
        double shuffled = Louvain.Best(WeightedGraph.Symmetrised(n, Arcs(Shuffled(g, n, shuffleSeed), n, threshold)), seeds).Modularity;
        int[] sizes = community.GroupBy(c => c).Select(grp => grp.Count()).OrderDescending().ToArray();
        return new HeadGraph(head, beta, threshold, arcs.Count, inDegrees, outDegrees, PowerLawFit.Fit(inDegrees), PowerLawFit.Fit(outDegrees),
            community, q, shuffled, sizes);
    }

    /// <summary>G with its off-diagonal entries in a random order (Fisher-Yates), the diagonal in place.</summary>
    public static float[] Shuffled(float[] g, int n, ulong seed)
    {
        var rng = new Rng(seed);
        var result = (float[])g.Clone();
        // Off-diagonal entry k of n(n − 1), row by row, skipping the diagonal.
        int Index(int k) => k / (n - 1) * n + k % (n - 1) + (k % (n - 1) >= k / (n - 1) ? 1 : 0);
        for (int k = n * (n - 1) - 1; k > 0; k--)
        {
            int a = Index(k), b = Index(rng.NextInt(k + 1));
            (result[a], result[b]) = (result[b], result[a]);
        }
        return result;
    }
}
