using Bdh.Tensors.Kernels;

namespace Bdh.Model.Inference;

/// <summary>
/// BDH one token at a time, written as its equations and nothing else: the reference <see cref="FastStepper{T}"/> is
/// checked against. Its whole memory is the synaptic state ρ, per layer and head an [N, D] matrix
/// ρ = Σ_{s&lt;t} q_s ⊗ x_s. Because the attention has no softmax, a token's attention over all earlier tokens,
/// Σ_{s&lt;t} (q·q_s) x_s, is exactly qᵀρ, so a token costs the same at any position. For the token at position t:
/// <code>
/// x = ln(embed[token])                                  [D]
/// per layer, per head h:
///     xs = relu(x·encoder[h])                           [N]  the neurons x fires
///     q  = rope_t(xs)                                   [N]
///     a  = qᵀρ[h],  then ρ[h] += q ⊗ x                  [D]
///     ys = relu(ln(a)·encoder_v[h])                     [N]
/// then y = ln(Σ_h (xs ⊙ ys)[h]·decoder[h]),  x = ln(x + y)   [D]
/// logits = x·lm_head                                    [V]
/// </code>
/// Every product is a plain loop over plain arrays: no buffers kept between tokens, no threads, no screens.
/// </summary>
public sealed class PlainStepper<T>(BdhModel<T> model) : IBdhStepper<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    /// <summary>ρ per layer, [nh, N, D] row-major: every token stepped so far.</summary>
    public T[][] Rho { get; } = Enumerable.Range(0, model.Config.NLayer).Select(_ => new T[model.Config.NHead * model.Config.N * model.Config.NEmbd]).ToArray();

    public int Position { get; private set; }

    public ReadOnlySpan<T> Step(int token)
    {
        int nh = model.Config.NHead, n = model.Config.N, d = model.Config.NEmbd, vocab = model.Config.VocabSize;
        if ((uint)token >= (uint)vocab) throw new ArgumentOutOfRangeException(nameof(token), $"token {token} outside vocabulary of {vocab}");
        ReadOnlySpan<T> encoder = model.Encoder.Value.Span, encoderV = model.EncoderV.Value.Span, decoder = model.Decoder.Value.Span;
        float[] cos = new float[n], sin = new float[n];
        Rope.Row(model.Freqs, Position, cos, sin, model.RopeSinCos);            // rope's float32 cos and sin at this position [N]

        T[] x = LayerNorm(model.Embed.Value.Span.Slice(token * d, d).ToArray()); // x = ln(embed[token])   [D]
        for (int layer = 0; layer < model.Config.NLayer; layer++)
        {
            var decoded = new T[d];                                               // Σ_h xy[h]·decoder[h]    [D]
            for (int h = 0; h < nh; h++)
            {
                T[] xs = Relu(Product(x, encoder.Slice(h * d * n, d * n), n));   // xs = relu(x·encoder[h])  [N]
                var q = new T[n];                                                 // q = rope(xs): each pair (2i, 2i+1) rotated
                for (int j = 0; j < n; j += 2)
                {
                    q[j] = xs[j] * T.CreateTruncating(cos[j]) - xs[j + 1] * T.CreateTruncating(sin[j]);
                    q[j + 1] = xs[j + 1] * T.CreateTruncating(cos[j + 1]) + xs[j] * T.CreateTruncating(sin[j + 1]);
                }
                Span<T> rho = Rho[layer].AsSpan(h * n * d, n * d);               // ρ[h]                     [N, D]
                var a = new T[d];
                for (int i = 0; i < n; i++)
                    for (int j = 0; j < d; j++)
                    {
                        a[j] += q[i] * rho[i * d + j];                            // a = qᵀρ: the earlier tokens only,
                        rho[i * d + j] += q[i] * x[j];                            // then ρ += q ⊗ x
                    }
                T[] ys = Relu(Product(LayerNorm(a), encoderV.Slice(h * d * n, d * n), n)); // ys = relu(ln(a)·encoder_v[h])  [N]
                for (int i = 0; i < n; i++) ys[i] *= xs[i];                       // xy = xs ⊙ ys             [N]
                T[] partial = Product(ys, decoder.Slice(h * n * d, n * d), d);    // head h's rows of the decoder
                for (int j = 0; j < d; j++) decoded[j] += partial[j];
            }
            T[] y = LayerNorm(decoded);                                           // y = ln(xy·decoder)        [D]
            for (int j = 0; j < d; j++) x[j] += y[j];
            x = LayerNorm(x);                                                     // x = ln(x + y)
        }
        Position++;
        return Product(x, model.LmHead.Value.Span, vocab);                        // logits = x·lm_head        [V]
    }

    public ReadOnlySpan<T> Prefill(int[] prompt)
    {
        foreach (int token in prompt[..^1]) Step(token);
        return Step(prompt[^1]);
    }

    /// <summary>row [K] · matrix [K, columns] → [columns].</summary>
    private static T[] Product(ReadOnlySpan<T> row, ReadOnlySpan<T> matrix, int columns)
    {
        var result = new T[columns];
        for (int k = 0; k < row.Length; k++)
            for (int c = 0; c < columns; c++) result[c] += row[k] * matrix[k * columns + c];
        return result;
    }

    private static T[] Relu(T[] v)
    {
        for (int i = 0; i < v.Length; i++) v[i] = T.Max(v[i], T.Zero);
        return v;
    }

    /// <summary>(v − mean) / sqrt(variance + 1e-5), in place: the reference's LayerNorm, without weights.</summary>
    private static T[] LayerNorm(T[] v)
    {
        T count = T.CreateTruncating(v.Length), mean = T.Zero, variance = T.Zero;
        foreach (T e in v) mean += e;
        mean /= count;
        foreach (T e in v) variance += (e - mean) * (e - mean);
        T rstd = T.One / T.Sqrt(variance / count + T.CreateTruncating(1e-5));
        for (int i = 0; i < v.Length; i++) v[i] = (v[i] - mean) * rstd;
        return v;
    }
}
