using System.Text.Json.Serialization;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace TorchSharpBdh;

/// <summary>The reference's config (its JSON names); N = multiplier·D / nh neurons per head.</summary>
public sealed record BdhConfig
{
    [JsonPropertyName("n_layer")] public int NLayer { get; init; } = 6;
    [JsonPropertyName("n_embd")] public int NEmbd { get; init; } = 256;
    [JsonPropertyName("n_head")] public int NHead { get; init; } = 4;
    [JsonPropertyName("mlp_internal_dim_multiplier")] public int MlpInternalDimMultiplier { get; init; } = 128;
    [JsonPropertyName("dropout")] public double Dropout { get; init; } = 0.1;
    [JsonPropertyName("vocab_size")] public int VocabSize { get; init; } = 256;

    public int N => MlpInternalDimMultiplier * NEmbd / NHead;
}

/// <summary>
/// The reference BDH (Pathway's bdh.py) op for op on TorchSharp, in float32 or float64. Shapes: B batch, T tokens,
/// D = n_embd, nh heads, N neurons per head, V = 256 byte tokens. RoPE's phases, cos and sin stay float32 in either
/// dtype, as the reference's float32 <c>freqs</c> buffer makes them.
/// </summary>
public sealed class BdhTorch : IDisposable
{
    public BdhConfig Config { get; }

    /// <summary>The parameters, by the reference's state_dict names, in its order.</summary>
    public IReadOnlyList<(string Name, Parameter Value)> Parameters { get; }

    private readonly Parameter _decoder;   // [nh·N, D]
    private readonly Parameter _encoder;   // [nh, D, N]
    private readonly Parameter _encoderV;  // [nh, D, N]
    private readonly Parameter _embed;     // [V, D]
    private readonly Parameter _lmHead;    // [D, V]
    private readonly Tensor _freqs;        // [1, 1, 1, N] float32

    public static readonly string[] ParameterNames = ["decoder", "encoder", "encoder_v", "embed.weight", "lm_head"];
    public const string FreqsName = "attn.freqs";

    /// <param name="tensors">Every parameter by name (any floating dtype; converted to <paramref name="dtype"/>), and
    /// <see cref="FreqsName"/> when the file has it (else the reference's get_freqs).</param>
    public BdhTorch(BdhConfig config, ScalarType dtype, IReadOnlyDictionary<string, Tensor> tensors)
    {
        Config = config;
        Parameter Take(string name, params long[] shape)
        {
            var t = tensors[name];
            if (!t.shape.SequenceEqual(shape))
                throw new ArgumentException($"'{name}' is [{string.Join(", ", t.shape)}], the config needs [{string.Join(", ", shape)}]");
            return new Parameter(t.to(dtype).clone().DetachFromDisposeScope(), requires_grad: true);
        }
        int d = config.NEmbd, nh = config.NHead, n = config.N, v = config.VocabSize;
        _decoder = Take("decoder", nh * n, d);
        _encoder = Take("encoder", nh, d, n);
        _encoderV = Take("encoder_v", nh, d, n);
        _embed = Take("embed.weight", v, d);
        _lmHead = Take("lm_head", d, v);
        Parameters = ParameterNames.Zip(new[] { _decoder, _encoder, _encoderV, _embed, _lmHead }).ToArray();
        _freqs = (tensors.TryGetValue(FreqsName, out var f) ? f.to(float32).clone() : ReferenceFreqs(n)).view(1, 1, 1, n).DetachFromDisposeScope();
    }

    /// <summary>The model a safetensors file holds (the reference's state_dict and config), in <paramref name="dtype"/>.</summary>
    public static BdhTorch Load(Safetensors file, ScalarType dtype)
    {
        using var scope = NewDisposeScope();
        return new BdhTorch(file.Config(), dtype, ParameterNames.Append(FreqsName).ToDictionary(n => n, file.Read));
    }

    /// <summary>A fresh model as the reference initialises one: every weight normal with std 0.02.</summary>
    public static BdhTorch Create(BdhConfig config, ScalarType dtype, long seed)
    {
        torch.manual_seed(seed);
        int d = config.NEmbd, nh = config.NHead, n = config.N, v = config.VocabSize;
        using var scope = NewDisposeScope();
        var tensors = new Dictionary<string, Tensor>
        {
            ["decoder"] = randn(nh * n, d) * 0.02,
            ["encoder"] = randn(nh, d, n) * 0.02,
            ["encoder_v"] = randn(nh, d, n) * 0.02,
            ["embed.weight"] = randn(v, d) * 0.02,
            ["lm_head"] = randn(d, v) * 0.02,
        };
        return new BdhTorch(config, dtype, tensors);
    }

    /// <summary>get_freqs(n, 2^16) in float32: 1 / θ^(2⌊j/2⌋/n) / 2π.</summary>
    private static Tensor ReferenceFreqs(int n)
    {
        var j = arange(0, n, 1, dtype: float32);
        return 1.0 / pow(65536.0, floor(j / 2) * 2 / n) / (2 * Math.PI);
    }

    /// <summary>LayerNorm over D without affine parameters, eps 1e-5 (the reference's self.ln).</summary>
    private Tensor Ln(Tensor x) => F.layer_norm(x, [Config.NEmbd], eps: 1e-5);

    /// <summary>
    /// RoPE on [B, nh, T, N]: v·cos(φ) + rot(v)·sin(φ) with rot(v)[2i] = −v[2i+1], rot(v)[2i+1] = v[2i], and
    /// φ = ((t·freqs) mod 1)·2π computed in float32.
    /// </summary>
    private Tensor Rope(Tensor v)
    {
        long t = v.shape[2];
        var phases = arange(0, t, 1, dtype: float32).view(1, 1, -1, 1) * _freqs;   // [1, 1, T, N]
        var angle = remainder(phases, 1) * (2 * Math.PI);
        var rotated = stack([-v[TensorIndex.Ellipsis, TensorIndex.Slice(1, null, 2)], v[TensorIndex.Ellipsis, TensorIndex.Slice(0, null, 2)]], -1).view(v.shape);
        return (v * cos(angle)).to(v.dtype) + (rotated * sin(angle)).to(v.dtype);
    }

    /// <summary>
    /// Logits [B, T, V] of token ids [B, T] (int64); with targets, also the mean cross-entropy. Dropout on xs·ys runs
    /// when <paramref name="training"/>. <paramref name="trace"/> sees each attention's input, V and output, and each
    /// LayerNorm's input and output, under the fixtures' names.
    /// </summary>
    public (Tensor Logits, Tensor? Loss) Forward(Tensor idx, Tensor? targets, bool training, Action<string, Tensor>? trace = null)
    {
        long b = idx.shape[0], t = idx.shape[1];
        int d = Config.NEmbd, nh = Config.NHead, n = Config.N;
        int lnCalls = 0;
        Tensor TracedLn(Tensor input)
        {
            var output = Ln(input);
            trace?.Invoke($"trace.ln{lnCalls}.in", input);
            trace?.Invoke($"trace.ln{lnCalls}.out", output);
            lnCalls++;
            return output;
        }

        // nn.Embedding's lookup (TorchSharp has no functional form): rows of the table, gradients summed per row.
        var x = TracedLn(_embed.index_select(0, idx.view(-1)).view(b, 1, t, d));     // [B, 1, T, D]
        for (int level = 0; level < Config.NLayer; level++)
        {
            var xs = F.relu(x.matmul(_encoder));                                       // [B, nh, T, N]
            var q = Rope(xs);
            var a = q.matmul(q.transpose(-2, -1)).tril(-1).matmul(x);                  // [B, nh, T, D]
            trace?.Invoke($"trace.attn{level}.q", xs);
            trace?.Invoke($"trace.attn{level}.v", x);
            trace?.Invoke($"trace.attn{level}.out", a);
            var ys = F.relu(TracedLn(a).matmul(_encoderV));                            // [B, nh, T, N]
            var xy = F.dropout(xs * ys, Config.Dropout, training);
            var y = TracedLn(xy.transpose(1, 2).reshape(b, 1, t, nh * n).matmul(_decoder)); // [B, 1, T, D]
            x = TracedLn(x + y);
        }
        var logits = x.view(b, t, d).matmul(_lmHead);                                  // [B, T, V]
        var loss = targets is null ? null : F.cross_entropy(logits.view(-1, Config.VocabSize), targets.view(-1));
        return (logits, loss);
    }

    /// <summary>
    /// Greedy continuation by full recompute, as the reference's generate with top_k = 1: each new token re-runs the
    /// whole sequence and takes the argmax of its last logits. Calls <paramref name="emit"/> with each token.
    /// </summary>
    public List<long> Generate(IReadOnlyList<long> prompt, int count, Action<long>? emit = null)
    {
        using var noGrad = no_grad();
        var tokens = prompt.ToList();
        for (int i = 0; i < count; i++)
        {
            using var scope = NewDisposeScope();
            var (logits, _) = Forward(tensor(tokens.ToArray(), [1, tokens.Count]), null, training: false);
            long next = logits[0, -1].argmax().item<long>();
            tokens.Add(next);
            emit?.Invoke(next);
        }
        return tokens;
    }

    public void Dispose()
    {
        foreach (var (_, p) in Parameters) p.Dispose();
        _freqs.Dispose();
    }
}
