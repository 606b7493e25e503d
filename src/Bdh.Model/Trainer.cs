using System.Diagnostics;
using System.Globalization;

namespace Bdh.Model;

/// <summary>Training settings; the defaults are the `cpu` preset's (see README).</summary>
public sealed record TrainOptions
{
    public int Batch { get; init; } = 16;
    public int Block { get; init; } = 64;
    public int Steps { get; init; } = 2000;
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
    /// <summary>Linear warmup steps followed by cosine decay to 10% when &gt; 0 or <see cref="Cosine"/>; off by default.</summary>
    public int WarmupSteps { get; init; }
    public bool Cosine { get; init; }

    public TrainOptions Validate()
    {
        static void Require(bool ok, string name, string why) { if (!ok) throw new ArgumentException($"--{name}: {why}"); }
        Require(Batch >= 1, "batch", "must be >= 1");
        Require(Block >= 1, "block", "must be >= 1");
        Require(Steps >= 0, "steps", "must be >= 0");
        Require(LearningRate > 0 && double.IsFinite(LearningRate), "lr", "must be a finite number > 0");
        Require(WeightDecay >= 0 && double.IsFinite(WeightDecay), "weight-decay", "must be a finite number >= 0");
        Require(GradAccum >= 1 && Batch % GradAccum == 0, "grad-accum", $"must be >= 1 and divide the batch ({Batch})");
        Require(EvalEvery >= 0, "eval-every", "must be >= 0");
        Require(CheckpointEvery >= 1, "checkpoint-every", "must be >= 1");
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

/// <summary>What one optimizer step did.</summary>
public sealed record StepReport(int Step, int TotalSteps, double Loss, double Seconds, double TokensPerSecond, double? ValLoss);

/// <summary>
/// The reference train.py loop: random batches, AdamW, periodic validation, plus checkpoints that
/// resume bit-identically (weights, AdamW moments, step and both RNG states are saved).
/// </summary>
public sealed class Trainer
{
    private readonly BdhModel<float> _model;
    private readonly TextData _data;
    private readonly TrainOptions _options;
    private readonly AdamW _optimizer;
    private readonly Rng _batchRng, _dropoutRng;
    private int _lastSaved; // the step of the newest checkpoint written or resumed from

    public int Step => _optimizer.Step;
    public BdhModel<float> Model => _model;

    public Trainer(BdhModel<float> model, TextData data, TrainOptions options)
    {
        _model = model;
        _data = data;
        _options = options.Validate();
        _optimizer = new AdamW(model.Parameters.Select(p => p.Value), options.LearningRate, options.WeightDecay);
        _batchRng = new Rng(options.Seed);
        _dropoutRng = new Rng(options.Seed ^ 0xD40F0E7UL);
    }

    /// <summary>One optimizer step over Batch sequences; returns the mean training loss.</summary>
    public double TrainStep()
    {
        int micro = _options.Batch / _options.GradAccum;
        double loss = 0;
        for (int i = 0; i < _options.GradAccum; i++)
        {
            var (inputs, targets) = TextData.RandomBatch(_data.Train, micro, _options.Block, _batchRng);
            OpProfile.Start();
            var (_, l) = _model.Forward(inputs, micro, _options.Block, targets, _dropoutRng);
            l!.Backward();
            loss += l.Value.Span[0];
            l.ReleaseGraph();
        }
        if (_options.GradAccum > 1)
            foreach (var (_, p) in _model.Parameters) TP.Multiply(p.Grad!.Span, 1f / _options.GradAccum, p.Grad.Span);
        if (_options.ClipNorm > 0) _optimizer.ClipGradNorm(_options.ClipNorm);
        _optimizer.LearningRate = _options.LearningRateAt(_optimizer.Step + 1);
        long update = Stopwatch.GetTimestamp();
        _optimizer.Update();
        if (OpProfile.Enabled) OpProfile.Record("adamw update", update);
        _optimizer.ZeroGrad();
        return loss / _options.GradAccum;
    }

    /// <summary>Trains until <see cref="TrainOptions.Steps"/>, checkpointing into <paramref name="outDir"/> when given.</summary>
    public void Run(string? outDir, Action<StepReport> onStep, CancellationToken cancel = default)
    {
        int tokensPerStep = _options.Batch * _options.Block;
        while (Step < _options.Steps && !cancel.IsCancellationRequested)
        {
            var watch = Stopwatch.StartNew();
            double loss = TrainStep();
            if (!double.IsFinite(loss)) throw Diverged($"the training loss at step {Step} is {loss}");
            double seconds = watch.Elapsed.TotalSeconds;
            double? val = null;
            if (_options.EvalEvery > 0 && (Step % _options.EvalEvery == 0 || Step == _options.Steps))
                val = Evaluation.MeanLoss(_model, _data.Val, _options.Block, _options.EvalWindows);
            onStep(new StepReport(Step, _options.Steps, loss, seconds, tokensPerStep / seconds, val));
            if (outDir is not null && (Step % _options.CheckpointEvery == 0 || Step == _options.Steps))
                SaveCheckpoint(outDir);
        }
    }

    private const string StepPrefix = "step-";

    /// <summary>
    /// Training has blown up (a loss or a weight is NaN or infinite): it stops there, and the last
    /// checkpoint written, from before, is the one kept.
    /// </summary>
    private InputException Diverged(string what) =>
        new($"{what}: training diverged and stopped; " +
            (_lastSaved > 0 ? $"the checkpoint of step {_lastSaved} is the last one kept" : "no checkpoint was written") + " (try a lower --lr)");

    /// <summary>
    /// Removes the temporary files of checkpoint writes that a killed run left (checkpoints/.step-*.tmp);
    /// the caller must be the run folder's only writer. Returns how many there were.
    /// </summary>
    public static int RemoveUnfinishedCheckpoints(string outDir)
    {
        string dir = Path.Combine(outDir, "checkpoints");
        if (!Directory.Exists(dir)) return 0;
        var leftovers = Directory.GetFiles(dir, $".{StepPrefix}*.tmp");
        foreach (var file in leftovers) File.Delete(file);
        return leftovers.Length;
    }

    /// <summary>
    /// Writes checkpoints/step-NNNNNN.safetensors (the model, loadable by the reference) and
    /// .optim.safetensors (moments, step, RNG states). The optimizer file is written first and the
    /// model file last, so a pair counts as complete only once both exist; older pairs are removed after.
    /// </summary>
    public void SaveCheckpoint(string outDir)
    {
        string dir = Path.Combine(outDir, "checkpoints");
        Directory.CreateDirectory(dir);
        foreach (var (name, p) in _model.Parameters)
            if (!TP.IsFiniteAll<float>(p.Value.Span)) throw Diverged($"weight '{name}' at step {Step} is not finite");
        string stem = Path.Combine(dir, $"{StepPrefix}{Step:D6}");
        var names = _model.Parameters.Select(p => p.Name).ToArray();
        var moments = _optimizer.Moments;
        var tensors = new List<(string, int[], float[])>();
        for (int i = 0; i < names.Length; i++)
        {
            int[] shape = _model.Parameters[i].Value.Shape;
            tensors.Add(("m." + names[i], shape, moments[i].M));
            tensors.Add(("v." + names[i], shape, moments[i].V));
        }
        var meta = new Dictionary<string, string>
        {
            ["step"] = Step.ToString(CultureInfo.InvariantCulture),
            ["batch_rng"] = string.Join(",", _batchRng.State),
            ["dropout_rng"] = string.Join(",", _dropoutRng.State),
        };
        SafetensorsFile.Write(stem + ".optim.safetensors", tensors, meta);
        Checkpoint.Save(_model, stem + ".safetensors", new Dictionary<string, string> { ["step"] = meta["step"] });
        foreach (var (step, path) in CompleteCheckpoints(outDir))
            if (step < Step)
            {
                File.Delete(path);
                File.Delete(Path.ChangeExtension(path, ".optim.safetensors"));
            }
        _lastSaved = Step;
    }

    /// <summary>
    /// Restores weights, RoPE frequencies, moments, step and RNG states from the latest complete checkpoint. Every
    /// value is checked first (a hand-edited or corrupt file is a <see cref="SafetensorsException"/> naming it).
    /// </summary>
    public void Resume(string outDir)
    {
        string model = LatestCheckpoint(outDir) ?? throw new InputException(
            $"--resume: no complete checkpoint in '{outDir}' (a run killed during its first checkpoint leaves none); start over without --resume");
        string optimPath = Path.ChangeExtension(model, ".optim.safetensors");
        var weights = SafetensorsFile.Read(model);
        var optim = SafetensorsFile.Read(optimPath);
        if (Checkpoint.ReadConfig(weights) != _model.Config)
            throw new SafetensorsException($"{model}: its config differs from this run's; resume with the same model options");
        string Meta(string key) => optim.Metadata.TryGetValue(key, out var value) ? value
            : throw new SafetensorsException($"{optimPath}: no '{key}' in its metadata");
        int step = int.TryParse(Meta("step"), NumberStyles.None, CultureInfo.InvariantCulture, out int s) && s == StepOf(model) ? s
            : throw new SafetensorsException($"{optimPath}: its step '{Meta("step")}' is not the {StepOf(model)} of its file name");
        ulong[] RngState(string key)
        {
            var parts = Meta(key).Split(',');
            var state = new ulong[parts.Length];
            for (int i = 0; i < parts.Length; i++)
                if (!ulong.TryParse(parts[i], NumberStyles.None, CultureInfo.InvariantCulture, out state[i]))
                    throw new SafetensorsException($"{optimPath}: '{key}' must be {Rng.StateLength} comma-separated integers, not '{Meta(key)}'");
            return Rng.IsValidState(state) ? state
                : throw new SafetensorsException($"{optimPath}: '{key}' must be {Rng.StateLength} integers, not all zero");
        }
        ulong[] batchState = RngState("batch_rng"), dropoutState = RngState("dropout_rng");

        // Read everything before changing anything, so a bad file leaves this trainer as it was.
        Checkpoint.RequireShapes(weights, _model.Config);
        var values = _model.Parameters.Select(p => Checkpoint.RequireFinite(weights, p.Name, weights.ReadTensor<float>(p.Name))).ToArray();
        float[] freqs = Checkpoint.ReadFreqs(weights, _model.Config);
        var moments = _model.Parameters.Select(p =>
        {
            float[] Moment(string name)
            {
                using var t = Checkpoint.RequireFinite(optim, name, optim.ReadTensor<float>(name));
                return t.Length == p.Value.Value.Length ? t.Span.ToArray()
                    : throw new SafetensorsException($"{optimPath}: '{name}' has {t.Length} values, '{p.Name}' has {p.Value.Value.Length}");
            }
            return (Moment("m." + p.Name), Moment("v." + p.Name));
        }).ToArray();
        for (int i = 0; i < values.Length; i++)
        {
            values[i].Span.CopyTo(_model.Parameters[i].Value.Value.Span);
            values[i].Dispose();
        }
        _model.LoadFreqs(freqs);
        _optimizer.Restore(step, moments);
        _batchRng.State = batchState;
        _dropoutRng.State = dropoutState;
        _lastSaved = step;
    }

    private static int StepOf(string checkpoint) =>
        int.Parse(Path.GetFileName(checkpoint)[StepPrefix.Length..^".safetensors".Length], NumberStyles.None, CultureInfo.InvariantCulture);

    /// <summary>The newest model file whose optimizer file also exists, or null.</summary>
    public static string? LatestCheckpoint(string outDir) =>
        CompleteCheckpoints(outDir).OrderByDescending(c => c.Step).Select(c => c.Path).FirstOrDefault();

    private static IEnumerable<(int Step, string Path)> CompleteCheckpoints(string outDir)
    {
        string dir = Path.Combine(outDir, "checkpoints");
        if (!Directory.Exists(dir)) yield break;
        foreach (var path in Directory.EnumerateFiles(dir, StepPrefix + "*.safetensors"))
        {
            string name = Path.GetFileName(path);
            if (name.EndsWith(".optim.safetensors", StringComparison.Ordinal)) continue;
            if (int.TryParse(name[StepPrefix.Length..^".safetensors".Length], NumberStyles.None, CultureInfo.InvariantCulture, out int step)
                && File.Exists(Path.ChangeExtension(path, ".optim.safetensors")))
                yield return (step, path);
        }
    }
}
