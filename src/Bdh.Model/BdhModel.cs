using Bdh.Tensors.Kernels;

namespace Bdh.Model;

/// <summary>
/// The Baby Dragon Hatchling, exactly as the reference bdh.py computes it. One encoder, encoder_v and
/// decoder are shared by every layer. Shapes: B batch, T tokens, D = n_embd, nh heads, N neurons per head.
/// Generic over float (training) and double (gradient checks, float64 parity).
/// </summary>
public sealed class BdhModel<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    public BdhConfig Config { get; }
    public Var<T> Encoder { get; }   // [nh, D, N]
    public Var<T> EncoderV { get; }  // [nh, D, N]
    public Var<T> Decoder { get; }   // [nh*N, D]
    public Var<T> Embed { get; }     // [V, D]
    public Var<T> LmHead { get; }    // [D, V]
    /// <summary>RoPE frequencies [N], float32 as the reference's buffer attn.freqs.</summary>
    public float[] Freqs { get; }
    /// <summary>
    /// rope's float32 cos and sin of the phases: null (the default) is <see cref="TorchTrig"/>. Only the reference check
    /// sets it, to run the float64 model on the reference's own trig values.
    /// </summary>
    public SinCosKernel? RopeSinCos { get; }

    private readonly Lock _ropeLock = new();
    private RopeTable? _rope;

    /// <summary>The trainable tensors under their reference state_dict names.</summary>
    public IReadOnlyList<(string Name, Var<T> Value)> Parameters =>
        [("decoder", Decoder), ("embed.weight", Embed), ("encoder", Encoder), ("encoder_v", EncoderV), ("lm_head", LmHead)];

    public BdhModel(BdhConfig config, IReadOnlyDictionary<string, Tensor<T>> weights, float[] freqs, SinCosKernel? ropeSinCos = null)
    {
        Config = config.Validate();
        var shapes = ParameterShapes(config);
        Var<T> Param(string name)
        {
            if (!weights.TryGetValue(name, out var t)) throw new ArgumentException($"missing tensor '{name}'");
            if (!t.Shape.SequenceEqual(shapes[name]))
                throw new ArgumentException($"tensor '{name}' is {Tensor<T>.Format(t.Shape)}, the config needs {Tensor<T>.Format(shapes[name])}");
            return Var<T>.Parameter(t);
        }
        Encoder = Param("encoder");
        EncoderV = Param("encoder_v");
        Decoder = Param("decoder");
        Embed = Param("embed.weight");
        LmHead = Param("lm_head");
        if (freqs.Length != config.N) throw new ArgumentException($"attn.freqs has {freqs.Length} values, the config needs {config.N}");
        Freqs = freqs;
        RopeSinCos = ropeSinCos;
    }

    /// <summary>The shape of each trainable tensor that <paramref name="config"/> needs, by state_dict name.</summary>
    public static IReadOnlyDictionary<string, int[]> ParameterShapes(BdhConfig config)
    {
        int nh = config.NHead, d = config.NEmbd, n = config.N, v = config.VocabSize;
        return new Dictionary<string, int[]>
        {
            ["decoder"] = [nh * n, d], ["embed.weight"] = [v, d], ["encoder"] = [nh, d, n], ["encoder_v"] = [nh, d, n], ["lm_head"] = [d, v],
        };
    }

    /// <summary>How many trainable values <paramref name="config"/> has, over all its tensors.</summary>
    public static long ParameterCount(BdhConfig config) => ParameterShapes(config).Values.Sum(shape => shape.Aggregate(1L, (n, d) => n * d));

    /// <summary>A fresh model initialised as the reference: every weight ~ Normal(0, 0.02).</summary>
    public static BdhModel<T> Create(BdhConfig config, ulong seed, double std = 0.02)
    {
        config.Validate();
        var rng = new Rng(seed);
        int nh = config.NHead, d = config.NEmbd, n = config.N, v = config.VocabSize;
        var weights = new Dictionary<string, Tensor<T>>
        {
            ["decoder"] = Tensor<T>.Normal(rng, std, nh * n, d),
            ["encoder"] = Tensor<T>.Normal(rng, std, nh, d, n),
            ["embed.weight"] = Tensor<T>.Normal(rng, std, v, d),
            ["encoder_v"] = Tensor<T>.Normal(rng, std, nh, d, n),
            ["lm_head"] = Tensor<T>.Normal(rng, std, d, v),
        };
        return new BdhModel<T>(config, weights, Rope.Frequencies(config.N));
    }

    /// <summary>
    /// Logits [B, T, V] for tokens idx [B, T] (row-major), and the mean cross-entropy when targets are
    /// given. Dropout is active only with a <paramref name="dropoutRng"/> (training). <paramref name="trace"/>
    /// sees every attention input/output and LayerNorm call, named and laid out as the fixtures' trace,
    /// and each layer's ys and xs⊙ys (layer{i}.ys, layer{i}.xy).
    /// Heads lead the activations ([nh, B, T, ·], not the reference's [B, nh, T, ·]): each head's
    /// product then covers all B·T tokens at once, and the decoder needs no transposed copy.
    /// </summary>
    public (Var<T> Logits, Var<T>? Loss) Forward(int[] idx, int b, int t, int[]? targets = null,
        Rng? dropoutRng = null, Action<string, Tensor<T>>? trace = null)
    {
        int nh = Config.NHead, d = Config.NEmbd, n = Config.N;
        int lnCall = 0;
        Var<T> Ln(Var<T> v)
        {
            var y = Ops.LayerNorm(v, 1e-5);
            Trace(trace, $"ln{lnCall}.in", v.Value);
            Trace(trace, $"ln{lnCall++}.out", y.Value);
            return y;
        }
        RopeTable rope = RopeTableFor(t);
        var encoder = Ops.Reshape(Encoder, nh, 1, d, n);                       // [nh, 1, D, N]  one matrix per head, shared by the batch
        var encoderV = Ops.Reshape(EncoderV, nh, 1, d, n);                     // [nh, 1, D, N]
        var decoder = Ops.Reshape(Decoder, nh, 1, n, d);                       // [nh, 1, N, D]  head h's rows of the decoder

        var x = Ln(Ops.Embedding(Embed, idx, 1, b, t));                        // [1, B, T, D]
        for (int layer = 0; layer < Config.NLayer; layer++)
        {
            var xs = Ops.MatMulRelu(x, encoder);                                // [nh, B, T, N]  relu(x·encoder): sparse, positive
            var a = Ops.CausalLinearAttention(Ops.Rope(xs, rope), x);           // [nh, B, T, D]  tril(QQᵀ, −1)·x, Q = rope(xs)
            Trace(trace, $"attn{layer}.q", xs.Value);
            Trace(trace, $"attn{layer}.v", x.Value);
            Trace(trace, $"attn{layer}.out", a.Value);
            var ys = Ops.MatMulRelu(Ln(a), encoderV);                           // [nh, B, T, N]  relu(ln(a)·encoder_v)
            var xy = Ops.Dropout(xs * ys, Config.Dropout, dropoutRng);          // [nh, B, T, N]
            Trace(trace, $"layer{layer}.ys", ys.Value);
            Trace(trace, $"layer{layer}.xy", xy.Value);
            var y = Ln(Ops.SumTo(Ops.MatMul(xy, decoder), 1, b, t, d));         // [1, B, T, D]  heads concatenated·decoder = Σ_h xy_h·decoder_h
            x = Ln(x + y);                                                      // [1, B, T, D]
        }
        var logits = Ops.MatMul(Ops.Reshape(x, b, t, d), LmHead);               // [B, T, V]
        return (logits, targets is null ? null : Ops.CrossEntropy(logits, targets));
    }

    /// <summary>Hands a [heads, B, T, ·] activation to the trace as the reference lays it out: [B, heads, T, ·].</summary>
    private static void Trace(Action<string, Tensor<T>>? trace, string name, Tensor<T> value)
    {
        if (trace is null) return;
        int[] s = value.Shape;
        if (s[0] == 1 || s[1] == 1)
        {
            trace(name, value.Reshape(s[1], s[0], s[2], s[3])); // the same order in memory
            return;
        }
        using var swapped = Tensor<T>.Empty(s[1], s[0], s[2], s[3]);
        Layout.SwapAxes(value, 0, 1, swapped, accumulate: false);
        trace(name, swapped);
    }

    /// <summary>The layer a per-layer trace name belongs to: 2 for "attn2.q" or "layer2.ys".</summary>
    public static int TraceLayer(string name)
    {
        int digits = name.IndexOfAnyInRange('0', '9'), dot = name.IndexOf('.');
        return int.Parse(name.AsSpan(digits, dot - digits), System.Globalization.CultureInfo.InvariantCulture);
    }

    /// <summary>
    /// Replaces the RoPE frequencies (a resumed run takes its checkpoint's: a merged model's are not get_freqs(N))
    /// and drops the table built from the old ones.
    /// </summary>
    public void LoadFreqs(ReadOnlySpan<float> freqs)
    {
        if (freqs.Length != Freqs.Length) throw new ArgumentException($"attn.freqs has {freqs.Length} values, the config needs {Freqs.Length}");
        lock (_ropeLock)
        {
            freqs.CopyTo(Freqs);
            _rope = null;
        }
    }

    /// <summary>
    /// The RoPE table for positions [0, t). One table is kept, grown by doubling; a shorter one shares
    /// its rows (row t is the same whatever the length), so generation that asks for every length up
    /// to T builds O(log T) tables, not T.
    /// </summary>
    public RopeTable RopeTableFor(int t)
    {
        lock (_ropeLock)
        {
            if (_rope is null || _rope.Length < t) _rope = Rope.Table(Freqs, Math.Max(t, 2 * (_rope?.Length ?? 0)), RopeSinCos);
            return _rope.Length == t ? _rope : _rope with { Length = t };
        }
    }
}
