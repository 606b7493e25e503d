using Bdh.Tensors.Kernels;

namespace Bdh.Model.Inference;

/// <summary>
/// BDH one token at a time: the same equations as <see cref="BdhModel{T}.Forward"/> for a single
/// position, with attention answered by an <see cref="IAttentionMemory{T}"/> (the synaptic state ρ, or
/// a cache of past queries and inputs). Shapes: nh heads, N neurons per head, D = n_embd, V vocab.
/// </summary>
public sealed class IncrementalBdh<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    private readonly BdhModel<T> _model;
    private readonly int _nh, _n, _d, _v;
    private readonly T _eps = T.CreateTruncating(1e-5);
    private readonly T[] _x, _xs, _q, _a, _ys, _y, _logits, _rstd;
    private readonly float[] _cos, _sin;

    public IAttentionMemory<T> Memory { get; }
    /// <summary>Position of the next token to be stepped (tokens seen so far).</summary>
    public int Position { get; private set; }

    public IncrementalBdh(BdhModel<T> model, IAttentionMemory<T> memory, int position = 0)
    {
        _model = model;
        Memory = memory;
        Position = position;
        var c = model.Config;
        (_nh, _n, _d, _v) = (c.NHead, c.N, c.NEmbd, c.VocabSize);
        _x = new T[_d]; _xs = new T[_nh * _n]; _q = new T[_nh * _n]; _a = new T[_nh * _d];
        _ys = new T[_nh * _n]; _y = new T[_d]; _logits = new T[_v]; _rstd = new T[_nh];
        _cos = new float[_n]; _sin = new float[_n];
    }

    /// <summary>Logits [V] for <paramref name="token"/> at <see cref="Position"/>; the memory then holds it too.</summary>
    public ReadOnlySpan<T> Step(int token)
    {
        ReadOnlySpan<T> encoder = _model.Encoder.Value.Span, encoderV = _model.EncoderV.Value.Span;
        ReadOnlySpan<T> decoder = _model.Decoder.Value.Span;
        if ((uint)token >= (uint)_v) throw new ArgumentOutOfRangeException(nameof(token), $"token {token} outside vocabulary of {_v}");
        var rope = RopeAt(Position);

        _model.Embed.Value.Span.Slice(token * _d, _d).CopyTo(_x);
        LayerNorm(_x, 1);                                                     // x = ln(embed[token])   [D]
        for (int layer = 0; layer < _model.Config.NLayer; layer++)
        {
            RowTimesHeads(_x, encoder, _xs);                                  // xs = relu(x·encoder)   [nh, N]
            Elementwise.Relu<T>(_xs, _xs);
            Rope.Forward<T>(_xs, _q, rope);                                   // q = rope(xs)           [nh, N]
            Memory.ReadThenWrite(layer, _q, _x, _a);                          // a = Σ_{s<t} (q·q_s) x_s [nh, D]
            LayerNorm(_a, _nh);
            for (int h = 0; h < _nh; h++)                                     // ys = relu(ln(a)·encoder_v)  [nh, N]
                RowTimesMatrix(_a.AsSpan(h * _d, _d), encoderV.Slice(h * _d * _n, _d * _n), _ys.AsSpan(h * _n, _n));
            Elementwise.Relu<T>(_ys, _ys);
            TP.Multiply<T>(_xs, _ys, _ys);                                    // xy = xs ⊙ ys, heads concatenated  [nh·N]
            RowTimesMatrix(_ys, decoder, _y);                                 // y = ln(xy·decoder)     [D]
            LayerNorm(_y, 1);
            TP.Add<T>(_x, _y, _x);                                            // x = ln(x + y)
            LayerNorm(_x, 1);
        }
        RowTimesMatrix(_x, _model.LmHead.Value.Span, _logits);                // logits = x·lm_head     [V]
        Position++;
        return _logits;
    }

    /// <summary>
    /// Takes in a whole prompt with the parallel forward pass (at position 0), fills the memory from its
    /// per-layer queries and inputs, and returns the last token's logits.
    /// </summary>
    public ReadOnlySpan<T> Prefill(int[] prompt)
    {
        if (Position != 0)
        {
            foreach (int token in prompt[..^1]) Step(token);
            return Step(prompt[^1]);
        }
        int t = prompt.Length;
        var queries = new Tensor<T>[_model.Config.NLayer];
        var inputs = new Tensor<T>[_model.Config.NLayer];
        using (NoGrad.Scope())
        {
            var (logits, _) = _model.Forward(prompt, 1, t, trace: (name, value) =>
            {
                if (!name.StartsWith("attn", StringComparison.Ordinal)) return;
                int layer = int.Parse(name.AsSpan(4, name.IndexOf('.') - 4));
                if (name.EndsWith(".q", StringComparison.Ordinal))
                {
                    queries[layer] = Tensor<T>.Empty(_nh, t, _n);
                    Rope.Forward<T>(value.Span, queries[layer].Span, _model.RopeTableFor(t));
                }
                else if (name.EndsWith(".v", StringComparison.Ordinal))
                    inputs[layer] = value.Clone();
            });
            logits.Value.Span.Slice((t - 1) * _v, _v).CopyTo(_logits);
            logits.ReleaseGraph();
        }
        for (int layer = 0; layer < queries.Length; layer++)
        {
            Memory.Absorb(layer, queries[layer], inputs[layer]);
            queries[layer].Dispose();
            inputs[layer].Dispose();
        }
        Position = t;
        return _logits;
    }

    /// <summary>The rope table of one position, float32 phases as the reference.</summary>
    private RopeTable RopeAt(int t)
    {
        const float twoPi = (float)(2 * Math.PI);
        for (int j = 0; j < _n; j++)
        {
            float phase = t * _model.Freqs[j];
            float angle = (phase - MathF.Floor(phase)) * twoPi;
            _cos[j] = TorchTrig.Cos(angle);
            _sin[j] = TorchTrig.Sin(angle);
        }
        return new RopeTable(_cos, _sin, 1, _n);
    }

    private void LayerNorm(Span<T> rows, int count) =>
        Tensors.Kernels.LayerNorm.Forward<T>(rows, rows, _rstd.AsSpan(0, count), rows.Length / count, _eps);

    /// <summary>y = x·W for W [len(x), len(y)]: one axpy per non-zero x[k] (x is often sparse).</summary>
    private static void RowTimesMatrix(ReadOnlySpan<T> x, ReadOnlySpan<T> w, Span<T> y)
    {
        y.Clear();
        for (int k = 0; k < x.Length; k++)
            if (x[k] != T.Zero) TP.MultiplyAdd(w.Slice(k * y.Length, y.Length), x[k], y, y);
    }

    /// <summary>y[h] = x·W[h] for W [nh, D, N].</summary>
    private void RowTimesHeads(ReadOnlySpan<T> x, ReadOnlySpan<T> w, Span<T> y)
    {
        for (int h = 0; h < _nh; h++)
            RowTimesMatrix(x, w.Slice(h * _d * _n, _d * _n), y.Slice(h * _n, _n));
    }
}
