using Bdh.Model.Inference;

namespace Bdh.Model;

/// <summary>Sampling settings: temperature, top-k (1 is greedy), the seed of the draw and top-p (nucleus, in (0, 1]).</summary>
public sealed record SamplingOptions(double Temperature = 1.0, int? TopK = null, ulong Seed = 1337, double? TopP = null)
{
    /// <summary>Throws <see cref="ArgumentOutOfRangeException"/> naming the first setting out of its range.</summary>
    public SamplingOptions Validate()
    {
        if (Temperature is not > 0) throw new ArgumentOutOfRangeException(nameof(Temperature), Temperature, "temperature must be > 0");
        if (TopK is < 1) throw new ArgumentOutOfRangeException(nameof(TopK), TopK, "top-k must be >= 1");
        if (TopP is not (null or (> 0 and <= 1))) throw new ArgumentOutOfRangeException(nameof(TopP), TopP, "top-p must be in (0, 1]");
        return this;
    }
}

/// <summary>
/// How generation answers attention: <c>Full</c> re-runs the whole sequence per token (the reference's
/// generate(), cost ∝ t² per token); <c>Cached</c> keeps past queries and inputs (∝ t); <c>Recurrent</c>
/// keeps the synaptic state ρ (constant per token).
/// </summary>
public enum GenerationMode { Full, Cached, Recurrent }

/// <summary>Autoregressive generation.</summary>
public static class Sampler
{
    /// <summary>Appends <paramref name="count"/> tokens to <paramref name="prompt"/>; onToken sees each as it is drawn.</summary>
    public static int[] Generate(BdhModel<float> model, int[] prompt, int count, SamplingOptions options, Action<int>? onToken = null,
        GenerationMode mode = GenerationMode.Recurrent)
    {
        if (prompt.Length == 0) throw new ArgumentException("the prompt must hold at least one token");
        return Continue(IBdhStepper<float>.Start(model, mode), prompt, count, options, onToken);
    }

    /// <summary>Feeds <paramref name="input"/> to a stepper (from wherever it stands), then draws <paramref name="count"/> tokens.</summary>
    public static int[] Continue(IBdhStepper<float> stepper, int[] input, int count, SamplingOptions options, Action<int>? onToken = null)
    {
        if (input.Length == 0) throw new ArgumentException("the input must hold at least one token", nameof(input));
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        options.Validate();
        var rng = new Rng(options.Seed);
        var tokens = new List<int>(input);
        float[] logits = stepper.Prefill(input).ToArray();
        for (int i = 0; i < count; i++)
        {
            int next = Draw(logits, options, rng);
            tokens.Add(next);
            onToken?.Invoke(next);
            if (i + 1 < count) stepper.Step(next).CopyTo(logits);
        }
        return tokens.ToArray();
    }

    /// <summary>
    /// One token from logits: keep values ≥ the k-th largest (as the reference's topk mask), take
    /// softmax(logits / temperature), computed as exp((l − max) · (1/temperature)) with 1/temperature capped at
    /// float.MaxValue, keep the most likely tokens whose probabilities first reach top-p (the nucleus; ties kept in
    /// token order), draw. However small the temperature, nothing overflows: the largest logit weighs exp(0) = 1 and
    /// the others tend to exp(−∞) = 0, which is the argmax, as with top-k 1.
    /// </summary>
    public static int Draw(ReadOnlySpan<float> logits, SamplingOptions options, Rng rng)
    {
        options.Validate(); // a negative temperature would favour the least likely tokens; top-p 0 would weigh every token NaN
        var weights = new float[logits.Length];
        TP.Subtract(logits, TP.Max(logits), weights);
        TP.Multiply(weights, (float)Math.Min(1 / options.Temperature, float.MaxValue), weights);
        if (options.TopK is int k && k < logits.Length)
        {
            float kth = logits.ToArray().OrderByDescending(v => v).ElementAt(Math.Max(k, 1) - 1);
            for (int i = 0; i < logits.Length; i++) if (logits[i] < kth) weights[i] = float.NegativeInfinity;
        }
        TP.Exp(weights, weights);
        TP.Divide(weights, TP.Sum(weights), weights);
        if (options.TopP is double p && p < 1) KeepNucleus(weights, p);
        double u = rng.NextDouble() * TP.Sum(weights), cumulative = 0;
        int lastNonZero = 0;
        for (int i = 0; i < weights.Length; i++)
        {
            if (weights[i] <= 0) continue;
            lastNonZero = i;
            cumulative += weights[i];
            if (u < cumulative) return i;
        }
        return lastNonZero; // rounding left u just above the total
    }

    /// <summary>Zeroes every probability outside the nucleus (the fewest most likely tokens whose sum reaches p), then rescales the rest to sum to 1.</summary>
    private static void KeepNucleus(float[] probabilities, double p)
    {
        int[] byProbability = Enumerable.Range(0, probabilities.Length).OrderByDescending(i => probabilities[i]).ToArray(); // stable: ties in token order
        double kept = 0;
        int count = 0;
        while (count < byProbability.Length && kept < p) kept += probabilities[byProbability[count++]];
        foreach (int i in byProbability.AsSpan(count)) probabilities[i] = 0;
        TP.Divide(probabilities, (float)kept, probabilities);
    }
}
