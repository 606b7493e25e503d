using System.Globalization;
using Bdh.DirectML.Onnx;
using Bdh.Model;

namespace Bdh.DirectML;

/// <summary>
/// BDH as two ONNX graphs (IR 8, opset 17) that ONNX Runtime runs on any DirectML GPU or on the CPU:
/// <list type="bullet">
/// <item><c>prefill.onnx</c>: tokens [1, T] → logits [1, T, V], and each layer's synaptic state
/// ρ = Σ_t rope(xs_t)ᵀ x_t [nh, N, D] after reading them (the parallel form, as BdhModel.Forward).</item>
/// <item><c>step.onnx</c>: token [1, 1], its position [1] and ρ per layer → logits [1, 1, V] and ρ
/// with the token written in (the recurrent form: constant cost per token).</item>
/// </list>
/// Choices that keep every node inside what the DirectML provider runs on the GPU:
/// batch 1 is folded away, so every MatMul is rank 3 at most ([nh, T, N]·[nh, N, D], [T, D]·[nh, D, N]);
/// the causal mask is a Trilu with a constant k = −1; LayerNorm is LayerNormalization with constant
/// scale 1 and bias 0 and its single output; there is no Shape or Size node (positions 0..T−1 are a
/// running sum over the tokens, reshapes use −1); RoPE's cos/sin are initializers [P, N/2] computed
/// here with the reference's float32 phases and gathered by position.
/// </summary>
public static class OnnxExport
{
    public const string PrefillFile = "prefill.onnx";
    public const string StepFile = "step.onnx";
    public const string ConfigKey = "bdh.config";
    public const string MaxPositionsKey = "bdh.max_positions";
    /// <summary>
    /// Metadata naming one export, the same in both graphs: graphs of two exports into one folder (a re-export stopped
    /// between its two files, by a crash or a kill) are told apart even when their config and length agree.
    /// </summary>
    public const string ExportIdKey = "bdh.export_id";

    /// <summary>The ONNX opset and IR version the graphs are written in.</summary>
    public const long Opset = OnnxGraph.Opset, IrVersion = OnnxGraph.IrVersion;

    /// <summary>A protobuf message may not pass 2 GiB; above this, weights go to an external data file.</summary>
    public const long ExternalDataAbove = 1L << 30;

    /// <summary>Writes prefill.onnx and step.onnx into <paramref name="dir"/> for sequences of up to <paramref name="maxPositions"/> tokens.</summary>
    public static void Export(BdhModel<float> model, string dir, int maxPositions, long externalDataAbove = ExternalDataAbove)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(maxPositions, 1);
        if (RopeTableBytes(model.Config, maxPositions) > Array.MaxLength)
            throw new ArgumentOutOfRangeException(nameof(maxPositions), maxPositions,
                $"RoPE tables of {maxPositions} positions x N = {model.Config.N} would take {RopeTableBytes(model.Config, maxPositions)} bytes each, more than one array holds");
        var metadata = new Dictionary<string, string>
        {
            [ConfigKey] = model.Config.ToJson(),
            [MaxPositionsKey] = maxPositions.ToString(CultureInfo.InvariantCulture),
            [ExportIdKey] = Guid.NewGuid().ToString("N"),
        };
        Directory.CreateDirectory(dir);
        Prefill(model, maxPositions).Save(Path.Combine(dir, PrefillFile), metadata, externalDataAbove);
        Step(model, maxPositions).Save(Path.Combine(dir, StepFile), metadata, externalDataAbove);
    }

    /// <summary>The bytes of each RoPE table the graphs hold, cos or sin [P, N/2] in float32 (made from a [P, N] table first).</summary>
    public static long RopeTableBytes(BdhConfig config, int maxPositions) => (long)maxPositions * config.N / 2 * sizeof(float);

    internal static OnnxGraph Prefill(BdhModel<float> model, int maxPositions)
    {
        var bdh = new BdhGraph(model, maxPositions, "bdh_prefill");
        var g = bdh.Graph;
        string tokens = g.Input("tokens", OnnxType.Int64, 1, "T");
        bdh.DeclareOutputs("T", state: l => $"rho{l}");
        string ids = bdh.Reshape(tokens, -1);                                                      // [T]
        string ones = g.Node("Add", [g.Node("Mul", [ids, bdh.Int64(0)]), bdh.Int64(1)]);           // [T] all 1
        string positions = g.Node("CumSum", [ones, bdh.Int64(0)], "positions",
            OnnxGraph.Attribute("exclusive", 1L));                                                 // [T] 0, 1, …, T−1
        string x = bdh.Embed(ids);                                                                 // [T, D]
        for (int layer = 0; layer < model.Config.NLayer; layer++)
        {
            int l = layer;
            x = bdh.Layer(l, x, positions, (q, v) =>
            {
                string qT = bdh.Transpose(q);                                                      // [nh, N, T]
                g.Node("MatMul", [qT, v], $"rho{l}");                                              // [nh, N, D]  ρ = Σ_t q_tᵀ x_t
                string scores = g.Node("Trilu", [g.Node("MatMul", [q, qT]), bdh.Int64(-1)], $"layer{l}.scores",
                    OnnxGraph.Attribute("upper", 0L));                                             // [nh, T, T]  tril(q·qᵀ, −1)
                return g.Node("MatMul", [scores, v]);                                              // [nh, T, D]
            });
        }
        bdh.Logits(x);
        return g;
    }

    internal static OnnxGraph Step(BdhModel<float> model, int maxPositions)
    {
        var bdh = new BdhGraph(model, maxPositions, "bdh_step");
        var g = bdh.Graph;
        string token = g.Input("token", OnnxType.Int64, 1, 1);
        string position = g.Input("position", OnnxType.Int64, 1);
        bdh.DeclareOutputs(1, state: l => $"rho{l}.next");
        string x = bdh.Embed(bdh.Reshape(token, -1));                                              // [1, D]
        for (int layer = 0; layer < model.Config.NLayer; layer++)
        {
            string rho = g.Input($"rho{layer}", OnnxType.Float, bdh.StateShape);                  // [nh, N, D]  ρ_{t−1}
            int l = layer;
            x = bdh.Layer(l, x, position, (q, v) =>
            {
                string written = g.Node("MatMul", [bdh.Transpose(q), v]);                          // [nh, N, D]  q_tᵀ x_t
                g.Node("Add", [rho, written], $"rho{l}.next");                                     // ρ_t
                return g.Node("MatMul", [q, rho]);                                                 // [nh, 1, D]  q_t·ρ_{t−1}
            });
        }
        bdh.Logits(x);
        return g;
    }

    /// <summary>The pieces both graphs share: weights, embedding, RoPE, one layer, logits.</summary>
    private sealed class BdhGraph
    {
        public OnnxGraph Graph { get; }
        public object[] StateShape { get; }
        private readonly BdhConfig _config;
        private readonly string _encoder, _encoderV, _decoder, _embed, _lmHead, _lnScale, _lnBias, _cos, _sin, _pairSign, _pairSwap;
        private readonly Dictionary<string, string> _constants = [];

        public BdhGraph(BdhModel<float> model, int maxPositions, string name)
        {
            _config = model.Config;
            int nh = _config.NHead, d = _config.NEmbd, n = _config.N, v = _config.VocabSize;
            StateShape = [nh, n, d];
            Graph = new OnnxGraph(name);
            _encoder = Graph.Weight("encoder", model.Encoder.Value.Span, nh, d, n);
            _encoderV = Graph.Weight("encoder_v", model.EncoderV.Value.Span, nh, d, n);
            _decoder = Graph.Weight("decoder", model.Decoder.Value.Span, nh * n, d);
            _embed = Graph.Weight("embed.weight", model.Embed.Value.Span, v, d);
            _lmHead = Graph.Weight("lm_head", model.LmHead.Value.Span, d, v);
            _lnScale = Graph.Weight("ln.scale", Enumerable.Repeat(1f, d).ToArray(), d);
            _lnBias = Graph.Weight("ln.bias", new float[d], d);
            var (cos, sin) = HalfTables(model.Freqs, maxPositions);
            _cos = Graph.Weight("rope.cos", cos, maxPositions, n / 2);
            _sin = Graph.Weight("rope.sin", sin, maxPositions, n / 2);
            _pairSign = Graph.Weight("rope.pair_sign", [-1f, 1f], 2);
            _pairSwap = Graph.Int64s("rope.pair_swap", [1, 0], 2);
        }

        /// <summary>x = ln(embed[ids]): [T] → [T, D].</summary>
        public string Embed(string ids) => LayerNorm(Graph.Node("Gather", [_embed, ids]));

        /// <summary>
        /// One BDH layer on x [T, D]; <paramref name="attention"/> maps q = rope(xs) [nh, T, N] and v = x
        /// [T, D] to a [nh, T, D] (the parallel form in prefill, the state in step).
        /// </summary>
        public string Layer(int layer, string x, string positions, Func<string, string, string> attention)
        {
            int nh = _config.NHead, n = _config.N;
            string xs = Graph.Node("Relu", [Graph.Node("MatMul", [x, _encoder])], $"layer{layer}.xs");       // [nh, T, N]
            string a = attention(Rope(xs, positions), x);                                                      // [nh, T, D]
            string ys = Graph.Node("Relu", [Graph.Node("MatMul", [LayerNorm(a), _encoderV])], $"layer{layer}.ys"); // [nh, T, N]
            string xy = Graph.Node("Mul", [xs, ys]);                                                           // [nh, T, N]
            string heads = Reshape(Graph.Node("Transpose", [xy], null, OnnxGraph.Attribute("perm", [1L, 0, 2])), -1, nh * n); // [T, nh·N]
            string y = LayerNorm(Graph.Node("MatMul", [heads, _decoder]));                                     // [T, D]
            return LayerNorm(Graph.Node("Add", [x, y]), $"layer{layer}.out");                                  // [T, D]
        }

        /// <summary>The outputs: logits [1, length, V], then ρ [nh, N, D] of each layer under its <paramref name="state"/> name.</summary>
        public void DeclareOutputs(object length, Func<int, string> state)
        {
            Graph.Output("logits", OnnxType.Float, 1, length, _config.VocabSize);
            for (int layer = 0; layer < _config.NLayer; layer++) Graph.Output(state(layer), OnnxType.Float, StateShape);
        }

        /// <summary>logits = x·lm_head: [T, D] → [1, T, V].</summary>
        public void Logits(string x) =>
            Graph.Node("Reshape", [Graph.Node("MatMul", [x, _lmHead]), Shape(1, -1, _config.VocabSize)], "logits");

        /// <summary>
        /// rope(v) = v·cos + (−v[2i+1], v[2i])·sin for v [nh, T, N]: viewed as pairs [nh, T, N/2, 2],
        /// the swap is a Gather of [1, 0] on the last axis and the sign a constant [−1, 1].
        /// cos and sin are gathered by position to [1, T, N/2, 1] and broadcast over heads and the pair.
        /// </summary>
        private string Rope(string v, string positions)
        {
            int nh = _config.NHead, n = _config.N;
            string cos = Reshape(Graph.Node("Gather", [_cos, positions]), 1, -1, n / 2, 1);
            string sin = Reshape(Graph.Node("Gather", [_sin, positions]), 1, -1, n / 2, 1);
            string pairs = Reshape(v, nh, -1, n / 2, 2);
            string swapped = Graph.Node("Mul", [Graph.Node("Gather", [pairs, _pairSwap], null, OnnxGraph.Attribute("axis", 3L)), _pairSign]);
            string rotated = Graph.Node("Add", [Graph.Node("Mul", [pairs, cos]), Graph.Node("Mul", [swapped, sin])]);
            return Reshape(rotated, nh, -1, n);
        }

        private string LayerNorm(string x, string? output = null) =>
            Graph.Node("LayerNormalization", [x, _lnScale, _lnBias], output,
                OnnxGraph.Attribute("axis", -1L), OnnxGraph.Attribute("epsilon", 1e-5f));

        public string Transpose(string q) => Graph.Node("Transpose", [q], null, OnnxGraph.Attribute("perm", [0L, 2, 1]));

        public string Reshape(string x, params long[] shape) => Graph.Node("Reshape", [x, Shape(shape)]);

        private string Shape(params long[] dims) => Constant("shape", dims, dims.Length);

        /// <summary>A rank-0 int64 constant (a scalar input such as Trilu's k or CumSum's axis).</summary>
        public string Int64(long value) => Constant("scalar", [value]);

        private string Constant(string kind, long[] values, params long[] dims)
        {
            string key = $"{kind}({string.Join(",", values)})";
            if (!_constants.TryGetValue(key, out var name))
                _constants[key] = name = Graph.Int64s(key, values, dims);
            return name;
        }

        /// <summary>
        /// cos and sin [P, N/2] of positions 0..P−1, one column per neuron pair (pairs share a frequency),
        /// from the same float32 phases as the managed model.
        /// </summary>
        private static (float[] Cos, float[] Sin) HalfTables(float[] freqs, int positions)
        {
            int n = freqs.Length;
            for (int j = 0; j < n; j += 2)
                if (freqs[j] != freqs[j + 1]) throw new ArgumentException($"attn.freqs: neurons {j} and {j + 1} must share a frequency, as get_freqs makes them");
            var table = Bdh.Tensors.Kernels.Rope.Table(freqs, positions);
            var cos = new float[positions * n / 2];
            var sin = new float[positions * n / 2];
            for (int i = 0; i < cos.Length; i++)
            {
                cos[i] = table.Cos[2 * i];
                sin[i] = table.Sin[2 * i];
            }
            return (cos, sin);
        }
    }
}
