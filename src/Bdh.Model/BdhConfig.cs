using System.Text.Json;
using System.Text.Json.Serialization;

namespace Bdh.Model;

/// <summary>The reference's BDHConfig, with its field names in JSON and its defaults.</summary>
public sealed record BdhConfig
{
    [JsonPropertyName("n_layer")] public int NLayer { get; init; } = 6;
    [JsonPropertyName("n_embd")] public int NEmbd { get; init; } = 256;
    [JsonPropertyName("dropout")] public double Dropout { get; init; } = 0.1;
    [JsonPropertyName("n_head")] public int NHead { get; init; } = 4;
    [JsonPropertyName("mlp_internal_dim_multiplier")] public int MlpInternalDimMultiplier { get; init; } = 128;
    [JsonPropertyName("vocab_size")] public int VocabSize { get; init; } = 256;

    /// <summary>Neurons per head: N = multiplier·D / nh (integer division, as the reference).</summary>
    [JsonIgnore] public int N => MlpInternalDimMultiplier * NEmbd / NHead;

    /// <summary>Throws <see cref="ArgumentException"/> naming the first field that makes no valid model.</summary>
    public BdhConfig Validate()
    {
        static void Require(bool ok, string field, string why)
        {
            if (!ok) throw new ArgumentException($"{field}: {why}");
        }
        Require(NLayer >= 1, "n_layer", $"must be >= 1 (got {NLayer})");
        Require(NEmbd >= 1, "n_embd", $"must be >= 1 (got {NEmbd})");
        Require(NHead >= 1, "n_head", $"must be >= 1 (got {NHead})");
        Require(MlpInternalDimMultiplier >= 1, "mlp_internal_dim_multiplier", $"must be >= 1 (got {MlpInternalDimMultiplier})");
        Require(N >= 2 && N % 2 == 0, "mlp_internal_dim_multiplier",
            $"neurons per head N = multiplier*n_embd/n_head = {N} must be even and >= 2 (RoPE rotates pairs)");
        Require(Dropout is >= 0 and < 1, "dropout", $"must be in [0, 1) (got {Dropout})");
        Require(VocabSize >= 1, "vocab_size", $"must be >= 1 (got {VocabSize})");
        return this;
    }

    public string ToJson() => JsonSerializer.Serialize(this);

    public static BdhConfig FromJson(string json) =>
        (JsonSerializer.Deserialize<BdhConfig>(json) ?? throw new FormatException("config JSON is null")).Validate();
}
