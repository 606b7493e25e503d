using Bdh.Tensors.Kernels;

namespace Bdh.Model.Inference;

/// <summary>One neuron's activity over a prompt: how strongly and how often it fired.</summary>
public sealed record NeuronActivity(int Layer, int Head, int Neuron, double Total, double FiringFraction);

/// <summary>One synapse of ρ: neuron n of a head, embedding dimension d.</summary>
public sealed record Synapse(int Layer, int Head, int Neuron, int Dim, float Weight);

/// <summary>
/// What BDH did while reading a prompt: per-layer activation densities (the paper: activations are
/// sparse and positive), the most active neurons, the synaptic state ρ it built, and the raw maps.
/// </summary>
public sealed record InspectionReport(
    int Tokens,
    double[] DensityXs, double[] DensityYs, double[] DensityXy,
    NeuronActivity[] TopNeurons, Synapse[] StrongestSynapses,
    float[][] XsMaps, SynapticState<float> State)
{
    /// <summary>Runs the prompt through the parallel pass (for activations) and the synaptic state (for ρ).</summary>
    public static InspectionReport Run(BdhModel<float> model, int[] prompt, int top = 10)
    {
        var c = model.Config;
        int t = prompt.Length, nh = c.NHead, n = c.N, layers = c.NLayer;
        double[] dxs = new double[layers], dys = new double[layers], dxy = new double[layers];
        var xsMaps = new float[layers][];
        var neurons = new List<NeuronActivity>();
        // One parallel pass: it hands out each layer's activations ([nh, B = 1, T, N], the order of [nh, T, N]) and fills ρ.
        var stepper = FastStepper<float>.Recurrent(model);
        stepper.Prefill(prompt, new ForwardObserver<float>
        {
            Layer = l =>
            {
                dxs[l.Layer] = Density(l.Xs.Span);
                dys[l.Layer] = Density(l.Ys.Span);
                dxy[l.Layer] = Density(l.Xy.Span);
                xsMaps[l.Layer] = TokensByNeurons(l.Xs.Span, nh, t, n);
                neurons.AddRange(Activity(l.Layer, l.Xs.Span, nh, t, n));
            },
        });
        var state = (SynapticState<float>)stepper.Memory;
        float[][] rho = state.Rho; // once: each read of Rho adds what is pending, over every slot
        var synapses = new List<Synapse>();
        for (int layer = 0; layer < layers; layer++)
            synapses.AddRange(Strongest(rho[layer], top).Select(i => new Synapse(layer, i / (n * c.NEmbd), i / c.NEmbd % n, i % c.NEmbd, rho[layer][i])));
        return new InspectionReport(t, dxs, dys, dxy,
            neurons.OrderByDescending(a => a.Total).Take(top).ToArray(),
            synapses.OrderByDescending(s => Math.Abs(s.Weight)).Take(top).ToArray(), xsMaps, state);
    }

    private static double Density(ReadOnlySpan<float> v) => Elementwise.CountNonZeros(v) / (double)v.Length;

    /// <summary>
    /// The indices of the <paramref name="top"/> largest |values|, largest first, the lower index first among equals (as
    /// a stable sort orders them): a heap of <paramref name="top"/>, not a record per element sorted (ρ holds 8.4 M
    /// values a layer on the paper config).
    /// </summary>
    private static IEnumerable<int> Strongest(float[] values, int top)
    {
        // The heap's minimum is the weakest kept: the smallest magnitude, and of equal ones the highest index.
        var weakestFirst = Comparer<(float Magnitude, int Index)>.Create((x, y) =>
            x.Magnitude != y.Magnitude ? x.Magnitude.CompareTo(y.Magnitude) : y.Index.CompareTo(x.Index));
        top = Math.Clamp(top, 0, values.Length);
        var kept = new PriorityQueue<int, (float, int)>(top + 1, weakestFirst);
        for (int i = 0; i < values.Length && top > 0; i++)
        {
            var key = (MathF.Abs(values[i]), i);
            if (kept.Count < top) kept.Enqueue(i, key);
            else kept.EnqueueDequeue(i, key);
        }
        return kept.UnorderedItems.OrderByDescending(item => item.Priority, weakestFirst).Select(item => item.Element);
    }

    /// <summary>[nh, T, N] → [T, nh·N]: one row per token, heads side by side.</summary>
    private static float[] TokensByNeurons(ReadOnlySpan<float> xs, int nh, int t, int n)
    {
        var map = new float[t * nh * n];
        for (int h = 0; h < nh; h++)
            for (int s = 0; s < t; s++)
                xs.Slice((h * t + s) * n, n).CopyTo(map.AsSpan(s * nh * n + h * n, n));
        return map;
    }

    private static IEnumerable<NeuronActivity> Activity(int layer, ReadOnlySpan<float> xs, int nh, int t, int n)
    {
        var result = new List<NeuronActivity>(nh * n);
        for (int h = 0; h < nh; h++)
            for (int j = 0; j < n; j++)
            {
                double total = 0;
                int fired = 0;
                for (int s = 0; s < t; s++)
                {
                    float v = xs[(h * t + s) * n + j];
                    total += v;
                    if (v > 0) fired++;
                }
                result.Add(new NeuronActivity(layer, h, j, total, fired / (double)t));
            }
        return result;
    }
}
