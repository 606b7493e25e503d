using System.Diagnostics;
using System.Globalization;

namespace Bdh.Model;

/// <summary>A loss or a weight became NaN or infinite: training stopped (a lower learning rate is the usual cure).</summary>
public sealed class TrainingDivergedException(string message) : InputException(message);

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
        // Found here rather than at the first batch or validation, which may come after hours of a run.
        if (data.Train.Length <= options.Block + 1L || (options.EvalEvery > 0 && data.Val.Length <= options.Block + 1L))
            throw new ArgumentException($"the training split ({data.Train.Length} bytes){(options.EvalEvery > 0 ? $" and the validation split ({data.Val.Length})" : "")} " +
                $"must each hold block + 2 = {options.Block + 2L} bytes", nameof(data));
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
    /// <exception cref="ArgumentException"><paramref name="outDir"/>'s latest checkpoint is not this trainer's last (saved or <see cref="Resume"/>d from).</exception>
    public void Run(string? outDir, Action<StepReport> onStep, CancellationToken cancel = default)
    {
        // Another run's checkpoints: saving beside them would mix two runs, and one of a longer run would stay the latest.
        if (outDir is not null && new CheckpointStore(outDir).LatestStep is int saved && saved != _lastSaved)
            throw new ArgumentException($"'{outDir}' holds the checkpoints of another run (its latest is step {saved}; this trainer's is {(_lastSaved > 0 ? $"step {_lastSaved}" : "none")}): " +
                "resume from them or choose another folder", nameof(outDir));
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

    /// <summary>
    /// Training has blown up (a loss or a weight is NaN or infinite): it stops there, and the last
    /// checkpoint written, from before, is the one kept.
    /// </summary>
    private TrainingDivergedException Diverged(string what) =>
        new($"{what}: training diverged and stopped; " +
            (_lastSaved > 0 ? $"the checkpoint of step {_lastSaved} is the last one kept" : "no checkpoint was written"));

    /// <summary>
    /// Writes this step's checkpoint into <paramref name="outDir"/>'s <see cref="CheckpointStore"/>: the model, and
    /// AdamW's moments (m.NAME, v.NAME) with both RNG states, everything a bit-identical resume needs.
    /// </summary>
    public void SaveCheckpoint(string outDir)
    {
        foreach (var (name, p) in _model.Parameters)
            if (!TP.IsFiniteAll<float>(p.Value.Span)) throw Diverged($"weight '{name}' at step {Step} is not finite");
        var moments = _optimizer.Moments;
        var tensors = _model.Parameters.SelectMany((p, i) => new[]
        {
            ("m." + p.Name, p.Value.Shape, (ReadOnlyMemory<float>)moments[i].M),
            ("v." + p.Name, p.Value.Shape, (ReadOnlyMemory<float>)moments[i].V),
        });
        var metadata = new Dictionary<string, string>
        {
            ["batch_rng"] = string.Join(",", _batchRng.State),
            ["dropout_rng"] = string.Join(",", _dropoutRng.State),
        };
        new CheckpointStore(outDir).Save(Step, _model, tensors, metadata);
        _lastSaved = Step;
    }

    /// <summary>
    /// Restores weights, RoPE frequencies, moments, step and RNG states from the latest complete checkpoint. Every
    /// value is checked first (a hand-edited or corrupt file is a <see cref="SafetensorsException"/> naming it).
    /// </summary>
    public void Resume(string outDir)
    {
        var (step, weights, optim) = new CheckpointStore(outDir).ReadLatest() ?? throw new InputException(
            $"no complete checkpoint in '{outDir}' to resume from (a run killed during its first checkpoint leaves none)");
        string optimPath = optim.Path;
        if (Checkpoint.ReadConfig(weights) != _model.Config)
            throw new SafetensorsException($"{weights.Path}: its config differs from this run's; resume with the same model options");
        string Meta(string key) => optim.Metadata.TryGetValue(key, out var value) ? value
            : throw new SafetensorsException($"{optimPath}: no '{key}' in its metadata");
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
}
