namespace Bdh.Model.Experiments;

/// <summary>Which embedding and output head a merged model takes.</summary>
public enum MergedEmbedding { A, B, Mean }

/// <summary>
/// Model engineering by concatenation (the paper, §7.1): two models with the same D, heads, layers and vocabulary
/// become one whose every head has the neurons of both, N_A + N_B. Every tensor with a neuron axis is concatenated
/// along it, head by head, so each neuron keeps its encoder column, encoder_v column, decoder row and RoPE frequency;
/// the embedding and the output head, which both models read and write, are averaged (or taken from one).
/// </summary>
public static class ModelMerge
{
    public static BdhModel<float> Merge(BdhModel<float> a, BdhModel<float> b, MergedEmbedding embedding = MergedEmbedding.Mean)
    {
        BdhConfig ca = a.Config, cb = b.Config;
        void Same(int x, int y, string field)
        {
            if (x != y) throw new ArgumentException($"the models differ in {field} ({x} and {y}); merging needs the same {field}");
        }
        Same(ca.NEmbd, cb.NEmbd, "n_embd");
        Same(ca.NHead, cb.NHead, "n_head");
        Same(ca.NLayer, cb.NLayer, "n_layer");
        Same(ca.VocabSize, cb.VocabSize, "vocab_size");
        // The reference's config knows N only through the multiplier: N_A + N_B must be what the summed multiplier gives.
        var config = ca with { MlpInternalDimMultiplier = ca.MlpInternalDimMultiplier + cb.MlpInternalDimMultiplier };
        if (config.N != ca.N + cb.N)
            throw new ArgumentException($"N_A + N_B = {ca.N} + {cb.N} is not a multiple of n_embd/n_head that mlp_internal_dim_multiplier can record");

        int nh = ca.NHead, d = ca.NEmbd, na = ca.N, nb = cb.N, n = na + nb;
        var encoder = new float[nh * d * n];
        var encoderV = new float[nh * d * n];
        var decoder = new float[nh * n * d];
        for (int h = 0; h < nh; h++)
        {
            // encoder, encoder_v [nh, D, N]: row (h, i) is A's row then B's.
            for (int i = 0; i < d; i++)
            {
                int row = (h * d + i) * n;
                a.Encoder.Value.Span.Slice((h * d + i) * na, na).CopyTo(encoder.AsSpan(row, na));
                b.Encoder.Value.Span.Slice((h * d + i) * nb, nb).CopyTo(encoder.AsSpan(row + na, nb));
                a.EncoderV.Value.Span.Slice((h * d + i) * na, na).CopyTo(encoderV.AsSpan(row, na));
                b.EncoderV.Value.Span.Slice((h * d + i) * nb, nb).CopyTo(encoderV.AsSpan(row + na, nb));
            }
            // decoder [nh·N, D]: head h's block is A's N_A rows then B's N_B rows.
            a.Decoder.Value.Span.Slice(h * na * d, na * d).CopyTo(decoder.AsSpan(h * n * d, na * d));
            b.Decoder.Value.Span.Slice(h * nb * d, nb * d).CopyTo(decoder.AsSpan((h * n + na) * d, nb * d));
        }
        // attn.freqs [N]: the same for every head, kept as each model had it (never recomputed from N).
        float[] freqs = [.. a.Freqs, .. b.Freqs];
        var weights = new Dictionary<string, Tensor<float>>
        {
            ["encoder"] = Tensor<float>.From(encoder, nh, d, n),
            ["encoder_v"] = Tensor<float>.From(encoderV, nh, d, n),
            ["decoder"] = Tensor<float>.From(decoder, nh * n, d),
            ["embed.weight"] = Shared(a.Embed.Value, b.Embed.Value, embedding),
            ["lm_head"] = Shared(a.LmHead.Value, b.LmHead.Value, embedding),
        };
        return new BdhModel<float>(config, weights, freqs);
    }

    /// <summary>A tensor both models have in the same shape: A's, B's or their mean.</summary>
    private static Tensor<float> Shared(Tensor<float> a, Tensor<float> b, MergedEmbedding embedding)
    {
        var values = embedding switch
        {
            MergedEmbedding.A => a.Span.ToArray(),
            MergedEmbedding.B => b.Span.ToArray(),
            _ => a.Span.ToArray().Zip(b.Span.ToArray(), (x, y) => 0.5f * (x + y)).ToArray(),
        };
        return Tensor<float>.From(values, a.Shape);
    }
}
