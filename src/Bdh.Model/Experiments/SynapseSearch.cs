using Bdh.Model.Inference;

namespace Bdh.Model.Experiments;

/// <summary>Activations of one text: per layer, y [nh, T, N] and x [nh, T, N] (xs, the layer's sparse neuron input).</summary>
public sealed record TextActivations(int Tokens, float[][] Y, float[][] X);

/// <summary>One synapse σ_l[h, i, j] and how its value after a text separates the two groups.</summary>
public sealed record SynapseResult(int Layer, int Head, int From, int To, MannWhitney Test, double CorrectedP, double MeanWith, double MeanWithout);

/// <summary>
/// Monosemantic synapses (the paper's §6.3 and Appendix B.3). A text's synaptic state is, per layer l ≥ 1 and head h,
/// σ_l = Σ_τ y_{τ,l−1} x_{τ,l}ᵀ [N, N]: neuron i's output y at layer l − 1 followed by neuron j firing at layer l, summed
/// over the text's tokens (within a head: the paper's ρ and its neurons are per head as well). For every synapse, the
/// Mann-Whitney test asks whether its value is larger after texts that mention a concept than after texts that do not;
/// p-values are corrected for the number of synapses tested (Bonferroni). Synapses are taken a block of rows i at a time,
/// the block's values for every text computed by one product per text: only [texts, rows, N] values are held at once.
/// </summary>
public static class SynapseSearch
{
    /// <summary>Runs a text through the model: every layer's y and x.</summary>
    public static TextActivations Read(BdhModel<float> model, int[] tokens)
    {
        int layers = model.Config.NLayer;
        var y = new float[layers][];
        var x = new float[layers][];
        var stepper = FastStepper<float>.Recurrent(model);
        stepper.Prefill(tokens, new ForwardObserver<float>
        {
            // [nh, B = 1, T, N]: the same order as [nh, T, N].
            Layer = l =>
            {
                x[l.Layer] = l.Xs.Span.ToArray();
                y[l.Layer] = l.Ys.Span.ToArray();
            },
        });
        return new TextActivations(tokens.Length, y, x);
    }

    /// <summary>The <paramref name="top"/> synapses of each layer 1..L−1, by U (then by smaller index), over texts with (first) and without the concept.</summary>
    public static List<SynapseResult> Search(IReadOnlyList<TextActivations> with, IReadOnlyList<TextActivations> without, int heads, int n, int top)
    {
        var texts = with.Concat(without).ToList();
        int layers = texts[0].X.Length, count = texts.Count, nWith = with.Count;
        const int rowsPerBlock = 16;
        long tested = (long)(layers - 1) * heads * n * n;
        var results = new List<SynapseResult>();
        for (int layer = 1; layer < layers; layer++)
        {
            var best = new List<SynapseResult>();
            for (int h = 0; h < heads; h++)
            {
                int blocks = (n + rowsPerBlock - 1) / rowsPerBlock;
                var perBlock = new List<SynapseResult>[blocks];
                Parallel.For(0, blocks, block =>
                {
                    int i0 = block * rowsPerBlock, rows = Math.Min(rowsPerBlock, n - i0);
                    // values[text][r·N + j] = σ[i0 + r, j] = Σ_τ y[τ, i0 + r] x[τ, j]: [rows, T]·[T, N] per text.
                    var values = new float[count][];
                    for (int t = 0; t < count; t++)
                    {
                        var a = texts[t];
                        values[t] = new float[rows * n];
                        Gemm.Multiply(rows, n, a.Tokens,
                            new MatrixRef<float>(a.Y[layer - 1], h * a.Tokens * n + i0, n, Transposed: true),
                            new MatrixRef<float>(a.X[layer], h * a.Tokens * n, n),
                            new MatrixRef<float>(values[t], 0, n), accumulate: false, parallel: false);
                    }
                    var sample = new float[count];
                    var fromWith = new bool[count];
                    var kept = new List<SynapseResult>();
                    for (int k = 0; k < rows * n; k++)
                    {
                        double sumWith = 0, sumWithout = 0;
                        for (int t = 0; t < count; t++)
                        {
                            sample[t] = values[t][k];
                            if (t < nWith) sumWith += sample[t]; else sumWithout += sample[t];
                        }
                        var test = MannWhitney.Test(sample, fromWith, nWith);
                        var result = new SynapseResult(layer, h, i0 + k / n, k % n, test, Math.Min(1, test.PValue * tested),
                            sumWith / nWith, sumWithout / (count - nWith));
                        Keep(kept, result, top);
                    }
                    perBlock[block] = kept;
                });
                foreach (var kept in perBlock)
                    foreach (var r in kept) Keep(best, r, top);
            }
            results.AddRange(best);
        }
        return results;
    }

    /// <summary>Keeps the <paramref name="top"/> best in order: larger U first, then the larger mean difference, then the smaller (head, from, to).</summary>
    private static void Keep(List<SynapseResult> kept, SynapseResult r, int top)
    {
        int at = kept.FindIndex(k => Better(r, k));
        if (at < 0) { if (kept.Count < top) kept.Add(r); return; }
        kept.Insert(at, r);
        if (kept.Count > top) kept.RemoveAt(kept.Count - 1);
    }

    private static bool Better(SynapseResult a, SynapseResult b) =>
        a.Test.U != b.Test.U ? a.Test.U > b.Test.U
        : a.MeanWith - a.MeanWithout != b.MeanWith - b.MeanWithout ? a.MeanWith - a.MeanWithout > b.MeanWith - b.MeanWithout
        : (a.Head, a.From, a.To).CompareTo((b.Head, b.From, b.To)) < 0;

    /// <summary>What each token's step adds to the synapse: y_{τ,l−1}[i] · x_{τ,l}[j], for τ = 0..T−1.</summary>
    public static double[] Contributions(TextActivations text, SynapseResult s, int n)
    {
        int t = text.Tokens;
        return Enumerable.Range(0, t).Select(tau =>
            (double)text.Y[s.Layer - 1][(s.Head * t + tau) * n + s.From] * text.X[s.Layer][(s.Head * t + tau) * n + s.To]).ToArray();
    }
}
