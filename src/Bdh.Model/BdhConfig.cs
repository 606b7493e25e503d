using System.Text.Json;
using System.Text.Json.Serialization;

namespace Bdh.Model;

/// <summary>
/// The reference's BDHConfig, with its field names in JSON and its defaults: <c>new BdhConfig()</c> is the paper's
/// model (<see cref="Paper"/>). <see cref="Paper"/> and <see cref="Cpu"/> are the presets of <c>bdh train</c>.
/// </summary>
public sealed record BdhConfig
{
    [JsonPropertyName("n_layer")] public int NLayer { get; init; } = 6;
    [JsonPropertyName("n_embd")] public int NEmbd { get; init; } = 256;
    [JsonPropertyName("dropout")] public double Dropout { get; init; } = 0.1;
    [JsonPropertyName("n_head")] public int NHead { get; init; } = 4;
    [JsonPropertyName("mlp_internal_dim_multiplier")] public int MlpInternalDimMultiplier { get; init; } = 128;
    [JsonPropertyName("vocab_size")] public int VocabSize { get; init; } = 256;

    /// <summary>The paper's model, the reference's defaults: 6 layers, D = 256, 4 heads of N = 8192 neurons.</summary>
    public static BdhConfig Paper { get; } = new();

    /// <summary>A model that learns tiny Shakespeare in minutes on 2 cores: 4 layers, D = 128, 4 heads of N = 512 neurons.</summary>
    public static BdhConfig Cpu { get; } = new() { NLayer = 4, NEmbd = 128, MlpInternalDimMultiplier = 16 };

    /// <summary>Neurons per head: N = multiplier·D / nh (integer division, as the reference).</summary>
    [JsonIgnore] public int N => (int)NLong;

    /// <summary>N without overflow, for <see cref="Validate"/> to check before anything uses N.</summary>
    private long NLong => (long)MlpInternalDimMultiplier * NEmbd / NHead;

    /// <summary>
    /// The most layers a config may have. The reference uses 6; layers share their weights, so a file
    /// can claim any number at no cost to its size, while every layer costs memory and time to run.
    /// </summary>
    public const int MaxLayers = 1024;

    /// <summary>Bytes of the synaptic state ρ [nh, N, D] of every layer (float32): what recurrent generation keeps.</summary>
    [JsonIgnore] public long StateBytes => 4L * NLayer * NHead * N * NEmbd;

    /// <summary>
    /// Bytes a pass over a batch [B, T] keeps alive, roughly: per layer xs, rope(xs), ys and xs⊙ys [nh, B, T, N]
    /// and the attention's scores [nh, B, T, T], then the logits [B, T, V]. Training keeps every layer's, and
    /// their gradients, for the backward pass; inference about two layers' at a time. Used to refuse a batch
    /// or block that cannot fit before allocating any of it.
    /// </summary>
    public double StepBytes(long batch, long block, bool training) =>
        4.0 * batch * block * ((training ? 2.0 * NLayer : 2.0) * NHead * (4.0 * N + block) + 3.0 * VocabSize);

    /// <summary>
    /// Throws an <see cref="InputException"/> led by <paramref name="what"/> unless a pass over a batch
    /// [<paramref name="batch"/>, <paramref name="block"/>] fits: its largest tensor, xs [nh, B, T, N] or the
    /// attention's scores [nh, B, T, T], within one tensor, and <see cref="StepBytes"/> within memory.
    /// </summary>
    public void RequireStepFits(long batch, long block, bool training, string what)
    {
        double largest = (double)NHead * batch * block * Math.Max(N, block);
        if (largest > int.MaxValue)
            throw new InputException($"{what}: {batch} x {block} tokens make a tensor of {largest:0.#e0} values, more than one holds ({int.MaxValue})");
        MemoryBudget.Require(StepBytes(batch, block, training), what);
    }

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
        Require(NLayer <= MaxLayers, "n_layer", $"must be <= {MaxLayers} (got {NLayer})");
        Require(NLong >= 2 && NLong % 2 == 0, "mlp_internal_dim_multiplier",
            $"neurons per head N = multiplier*n_embd/n_head = {NLong} must be even and >= 2 (RoPE rotates pairs)");
        // Every weight must fit one tensor (at most 2^31 - 1 values): encoder [nh, D, N], embed [V, D].
        Require((double)NHead * NEmbd * NLong <= int.MaxValue, "mlp_internal_dim_multiplier",
            $"the encoder would hold n_head*n_embd*N = {(double)NHead * NEmbd * NLong} values, more than a tensor holds ({int.MaxValue})");
        Require((long)VocabSize * NEmbd <= int.MaxValue, "vocab_size", $"the embedding would hold vocab_size*n_embd = {(long)VocabSize * NEmbd} values, more than a tensor holds");
        Require(Dropout is >= 0 and < 1, "dropout", $"must be in [0, 1) (got {Dropout})");
        Require(VocabSize >= 1, "vocab_size", $"must be >= 1 (got {VocabSize})");
        return this;
    }

    public string ToJson() => JsonSerializer.Serialize(this);

    public static BdhConfig FromJson(string json) =>
        (JsonSerializer.Deserialize<BdhConfig>(json) ?? throw new FormatException("config JSON is null")).Validate();
}
