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

    /// <summary>The trainable tensors under their reference state_dict names, in the order of <see cref="ParameterShapes"/>.</summary>
    public IReadOnlyList<(string Name, Var<T> Value)> Parameters { get; }

    public BdhModel(BdhConfig config, IReadOnlyDictionary<string, Tensor<T>> weights, float[] freqs, SinCosKernel? ropeSinCos = null)
    {
        Config = config.Validate();
        Var<T> Param(string name, int[] shape)
        {
            if (!weights.TryGetValue(name, out var t)) throw new ArgumentException($"missing tensor '{name}'");
            if (!t.Shape.SequenceEqual(shape))
                throw new ArgumentException($"tensor '{name}' is {Tensor<T>.Format(t.Shape)}, the config needs {Tensor<T>.Format(shape)}");
            return Var<T>.Parameter(t);
        }
        Parameters = [.. ParameterShapes(config).Select(p => (p.Name, Param(p.Name, p.Shape)))];
        Var<T> Named(string name) => Parameters.Single(p => p.Name == name).Value;
        Decoder = Named("decoder");
        Encoder = Named("encoder");
        Embed = Named("embed.weight");
        EncoderV = Named("encoder_v");
        LmHead = Named("lm_head");
        if (freqs.Length != config.N) throw new ArgumentException($"attn.freqs has {freqs.Length} values, the config needs {config.N}");
        Freqs = freqs;
        RopeSinCos = ropeSinCos;
    }

    /// <summary>
    /// Every trainable tensor that <paramref name="config"/> needs: its state_dict name and shape, in the order the
    /// reference's BDH creates them (which is the order <see cref="Create"/> draws them in).
    /// </summary>
    public static IReadOnlyList<(string Name, int[] Shape)> ParameterShapes(BdhConfig config)
    {
        int nh = config.NHead, d = config.NEmbd, n = config.N, v = config.VocabSize;
        return [("decoder", [nh * n, d]), ("encoder", [nh, d, n]), ("embed.weight", [v, d]), ("encoder_v", [nh, d, n]), ("lm_head", [d, v])];
    }

    /// <summary>How many trainable values <paramref name="config"/> has, over all its tensors.</summary>
    public static long ParameterCount(BdhConfig config) => ParameterShapes(config).Sum(p => p.Shape.Aggregate(1L, (n, d) => n * d));

    /// <summary>A fresh model initialised as the reference: every weight ~ Normal(0, 0.02).</summary>
    public static BdhModel<T> Create(BdhConfig config, ulong seed, double std = 0.02)
    {
        config.Validate();
        var rng = new Rng(seed);
        var weights = ParameterShapes(config).ToDictionary(p => p.Name, p => Tensor<T>.Normal(rng, std, p.Shape));
        return new BdhModel<T>(config, weights, Rope.Frequencies(config.N));
    }

    /// <summary>
    /// Logits [B, T, V] for tokens idx [B, T] (row-major), and the mean cross-entropy when targets are
    /// given. Dropout is active only with a <paramref name="dropoutRng"/> (training). <paramref name="observer"/>
    /// sees the embedding and every layer's activations.
    /// Heads lead the activations ([nh, B, T, ·], not the reference's [B, nh, T, ·]): each head's
    /// product then covers all B·T tokens at once, and the decoder needs no transposed copy.
    /// </summary>
    public (Var<T> Logits, Var<T>? Loss) Forward(int[] idx, int b, int t, int[]? targets = null,
        Rng? dropoutRng = null, ForwardObserver<T>? observer = null)
    {
        int nh = Config.NHead, d = Config.NEmbd, n = Config.N;
        RopeTable rope = RopeTableFor(t);
        var encoder = Ops.Reshape(Encoder, nh, 1, d, n);                       // [nh, 1, D, N]  one matrix per head, shared by the batch
        var encoderVRows = Ops.Transpose(Ops.Reshape(EncoderV, nh, 1, d, n), 2, 3); // [nh, 1, N, D]  encoder_vᵀ, once for every layer's masked product
        var decoder = Ops.Reshape(Decoder, nh, 1, n, d);                       // [nh, 1, N, D]  head h's rows of the decoder

        var embedding = Ops.Embedding(Embed, idx, 1, b, t);                    // [1, B, T, D]
        var x = Ln(embedding);                                                  // [1, B, T, D]
        observer?.Embedded?.Invoke(embedding.Value, x.Value);
        for (int layer = 0; layer < Config.NLayer; layer++)
        {
            var xs = Ops.MatMulRelu(x, encoder);                                // [nh, B, T, N]  relu(x·encoder): sparse, positive
            var a = Ops.CausalLinearAttention(xs, x, rope);                     // [nh, B, T, D]  tril(QQᵀ, −1)·x, Q = rope(xs) made a sequence at a time
            var lnA = Ln(a);                                                    // [nh, B, T, D]
            var ys = Ops.MatMulRelu(lnA, encoderVRows, YsWhere(xs, observer), transB: true); // [nh, B, T, N]  relu(ln(a)·encoder_v)
            var xy = Ops.DropoutOfProduct(xs, ys, Config.Dropout, dropoutRng);  // [nh, B, T, N]  dropout(xs ⊙ ys)
            var decoded = Ops.MatMulSummed(xy, decoder, 1, b, t, d);            // [1, B, T, D]  heads concatenated·decoder = Σ_h xy_h·decoder_h
            var y = Ln(decoded);                                                // [1, B, T, D]
            var xPlusY = x + y;                                                 // [1, B, T, D]
            var output = Ln(xPlusY);                                            // [1, B, T, D]
            observer?.Layer?.Invoke(new(layer, x.Value, xs.Value, Rotated(xs.Value, rope), a.Value, lnA.Value, ys.Value, xy.Value,
                decoded.Value, y.Value, xPlusY.Value, output.Value));
            x = output;
        }
        var logits = Ops.MatMul(Ops.Reshape(x, b, t, d), LmHead);               // [B, T, V]
        return (logits, targets is null ? null : Ops.CrossEntropy(logits, targets));
    }

    /// <summary>
    /// Where ys is computed: ys only ever meets xs in xs⊙ys, so it is needed where xs fires (a fifth of the neurons once
    /// trained) and left 0 elsewhere, which changes nothing downstream; under an observer of the layers (inspect,
    /// synapses, and the steppers' prefill, which absorbs q and x) ys is computed everywhere, the reference's.
    /// </summary>
    private static Var<T>? YsWhere(Var<T> xs, ForwardObserver<T>? observer) => observer?.Layer is null ? xs : null;

    /// <summary>Q = rope(xs) for an observer: the attention makes it a sequence at a time and keeps none.</summary>
    private static Tensor<T> Rotated(Tensor<T> xs, RopeTable rope)
    {
        var q = Tensor<T>.Empty(xs.Shape);
        Rope.Forward(xs, q, rope);
        return q;
    }

    /// <summary>LayerNorm over the last axis, without weights, ε = 1e-5 as the reference.</summary>
    private static Var<T> Ln(Var<T> v) => Ops.LayerNorm(v, 1e-5);

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
