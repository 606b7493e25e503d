namespace Bdh.Model;

/// <summary>
/// Training settings. The defaults are the reference train.py's (batch 32 × block 512, 3000 steps, AdamW at
/// 1e-3 with weight decay 0.1), so <c>new TrainOptions()</c> trains <c>new BdhConfig()</c> as the paper does;
/// <see cref="Paper"/> and <see cref="Cpu"/> are the presets of <c>bdh train</c>.
/// </summary>
public sealed record TrainOptions
{
    public int Batch { get; init; } = 32;
    public int Block { get; init; } = 512;
    public int Steps { get; init; } = 3000;
    public double LearningRate { get; init; } = 1e-3;
    public double WeightDecay { get; init; } = 0.1;
    /// <summary>Micro-batches per step: each is Batch / GradAccum sequences; gradients are averaged.</summary>
    public int GradAccum { get; init; } = 1;
    public ulong Seed { get; init; } = 1337;
    /// <summary>Validation every N steps (0: never), on the first <see cref="EvalWindows"/> val windows.</summary>
    public int EvalEvery { get; init; } = 250;
    public int EvalWindows { get; init; } = 256;
    public int CheckpointEvery { get; init; } = 500;
    /// <summary>Global gradient-norm clip; 0 is off (as the reference).</summary>
    public double ClipNorm { get; init; }
    /// <summary>Steps of linear warmup (0, the default: none); after them the rate stays, or with <see cref="Cosine"/> decays to 10%.</summary>
    public int WarmupSteps { get; init; }
    public bool Cosine { get; init; }

    /// <summary>
    /// The reference's training of <see cref="BdhConfig.Paper"/>, shaped to fit a CPU's memory: its batch of 32 is
    /// accumulated one sequence at a time (the same step: see TrainerTests), and validation reads 32 windows of 512.
    /// </summary>
    public static TrainOptions Paper { get; } = new() { GradAccum = 32, EvalWindows = 32 };

    /// <summary>Training of <see cref="BdhConfig.Cpu"/>: 2000 steps of 16 × 64 tokens, minutes on 2 cores.</summary>
    public static TrainOptions Cpu { get; } = new() { Batch = 16, Block = 64, Steps = 2000 };

    /// <summary>
    /// Returns these options, or throws an <see cref="ArgumentException"/> whose message leads with the property at
    /// fault ("GradAccum: ...").
    /// </summary>
    public TrainOptions Validate()
    {
        static void Require(bool ok, string property, string why) { if (!ok) throw new ArgumentException($"{property}: {why}"); }
        Require(Batch >= 1, nameof(Batch), "must be >= 1");
        Require(Block >= 1, nameof(Block), "must be >= 1");
        Require(Steps >= 0, nameof(Steps), "must be >= 0");
        Require(LearningRate > 0 && double.IsFinite(LearningRate), nameof(LearningRate), "must be a finite number > 0");
        Require(WeightDecay >= 0 && double.IsFinite(WeightDecay), nameof(WeightDecay), "must be a finite number >= 0");
        Require(GradAccum >= 1 && Batch % GradAccum == 0, nameof(GradAccum), $"must be >= 1 and divide the batch ({Batch})");
        Require(EvalEvery >= 0, nameof(EvalEvery), "must be >= 0");
        Require(EvalWindows >= 1, nameof(EvalWindows), "must be >= 1");
        Require(ClipNorm >= 0 && double.IsFinite(ClipNorm), nameof(ClipNorm), "must be a finite number >= 0 (0: off)");
        Require(WarmupSteps >= 0, nameof(WarmupSteps), "must be >= 0");
        Require(CheckpointEvery >= 1, nameof(CheckpointEvery), "must be >= 1");
        return this;
    }

    /// <summary>The learning rate at a 1-based step.</summary>
    public double LearningRateAt(int step)
    {
        if (WarmupSteps > 0 && step <= WarmupSteps) return LearningRate * step / WarmupSteps;
        if (!Cosine) return LearningRate;
        double progress = Math.Clamp((step - WarmupSteps) / (double)Math.Max(1, Steps - WarmupSteps), 0, 1);
        return LearningRate * (0.1 + 0.9 * 0.5 * (1 + Math.Cos(Math.PI * progress)));
    }
}
