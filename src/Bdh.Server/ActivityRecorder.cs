using Bdh.Model.Inference;
using Bdh.Tensors.Kernels;

namespace Bdh.Server;

/// <summary>One layer's ρ [nh·N, D] as a grid of block maxima |ρ|: where its strongest synapses are.</summary>
/// <param name="Layer">the layer.</param>
/// <param name="Rows">blocks of neurons (heads side by side).</param>
/// <param name="Columns">blocks of embedding dimensions.</param>
/// <param name="Cells">[Rows, Columns] row-major.</param>
public sealed record SynapseHeatmap(int Layer, int Rows, int Columns, float[] Cells);

/// <summary>The most active neuron of a layer for one token: its xs.</summary>
public sealed record ActiveNeuron(int Layer, int Head, int Neuron, float Value);

/// <summary>What the model did with one generated token: the <c>bdh.activity</c> event of a streamed completion.</summary>
/// <param name="Index">the token's place in the reply (0 first).</param>
/// <param name="Token">its byte value.</param>
/// <param name="DensityXs">per layer, the fraction of neurons xs fired.</param>
/// <param name="DensityYs">per layer, the fraction of those whose ys fired too (from xs ⊙ ys: ys is computed only where xs fires).</param>
/// <param name="TopNeurons">the token's most active neurons, a few per layer.</param>
/// <param name="Synapses">every <see cref="ActivityRecorder.HeatmapEvery"/> tokens (from the first), a heatmap of each layer's ρ; else null.</param>
public sealed record TokenActivity(int Index, int Token, double[] DensityXs, double[] DensityYs, ActiveNeuron[] TopNeurons, SynapseHeatmap[]? Synapses);

/// <summary>Collects <see cref="TokenActivity"/> from a session's <see cref="LayerObserver{T}"/>, on the generating thread.</summary>
internal sealed class ActivityRecorder
{
    public const int HeatmapEvery = 8;
    public const int HeatmapRows = 32, HeatmapColumns = 16;
    private const int TopNeuronsPerLayer = 4;

    private readonly int _layers;
    private double[] _densityXs, _densityYs;
    private readonly List<ActiveNeuron> _neurons = [];
    private readonly List<SynapseHeatmap> _heatmaps = [];
    private float[]? _rho;
    private int _index;
    private bool _observed;

    public ActivityRecorder(int layers)
    {
        _layers = layers;
        (_densityXs, _densityYs) = (new double[layers], new double[layers]);
        Observer = Observe;
    }

    public LayerObserver<float> Observer { get; }

    /// <summary>The activity of the reply's last read token, <paramref name="token"/>, once the model has read it; null before.</summary>
    public TokenActivity? Take(int token)
    {
        if (!_observed) return null;
        _observed = false;
        bool withHeatmaps = _heatmaps.Count > 0;
        var activity = new TokenActivity(_index++, token, _densityXs, _densityYs, [.. _neurons], withHeatmaps ? [.. _heatmaps] : null);
        (_densityXs, _densityYs) = (new double[_layers], new double[_layers]);
        _neurons.Clear();
        _heatmaps.Clear();
        return activity;
    }

    private void Observe(int layer, ReadOnlySpan<float> xs, ReadOnlySpan<float> xy, IAttentionMemory<float> memory)
    {
        _observed = true;
        int fired = Elementwise.CountNonZeros(xs);
        _densityXs[layer] = fired / (double)xs.Length;
        _densityYs[layer] = fired == 0 ? 0 : Elementwise.CountNonZeros(xy) / (double)fired;
        var state = (SynapticState<float>)memory;
        Span<int> top = stackalloc int[TopNeuronsPerLayer]; // indices into xs, most active first
        int count = 0;
        for (int i = 0; i < xs.Length; i++)
        {
            if (xs[i] <= 0 || (count == top.Length && xs[i] <= xs[top[^1]])) continue;
            int at = Math.Min(count, top.Length - 1);
            for (; at > 0 && xs[top[at - 1]] < xs[i]; at--) top[at] = top[at - 1];
            top[at] = i;
            count = Math.Min(count + 1, top.Length);
        }
        foreach (int i in top[..count]) _neurons.Add(new ActiveNeuron(layer, i / state.N, i % state.N, xs[i]));
        if (_index % HeatmapEvery == 0) _heatmaps.Add(Heatmap(layer, state));
    }

    /// <summary>Max |ρ| over blocks of (nh·N / Rows) neurons × (D / Columns) dimensions.</summary>
    private SynapseHeatmap Heatmap(int layer, SynapticState<float> state)
    {
        int rows = state.Heads * state.N, d = state.D;
        _rho ??= new float[rows * d];
        state.CopyRho(layer, _rho);
        int rowBlock = Math.Max(1, rows / HeatmapRows), columnBlock = Math.Max(1, d / HeatmapColumns);
        int gridRows = rows / rowBlock, gridColumns = d / columnBlock;
        var cells = new float[gridRows * gridColumns];
        for (int r = 0; r < gridRows * rowBlock; r++)
            for (int c = 0; c < gridColumns * columnBlock; c++)
            {
                ref float cell = ref cells[r / rowBlock * gridColumns + c / columnBlock];
                cell = Math.Max(cell, Math.Abs(_rho[r * d + c]));
            }
        return new SynapseHeatmap(layer, gridRows, gridColumns, cells);
    }
}
