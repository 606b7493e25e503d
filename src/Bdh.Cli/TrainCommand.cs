using System.CommandLine;
using System.Runtime.InteropServices;
using Bdh.Autograd;
using Bdh.Model;
using Spectre.Console;

namespace Bdh.Cli;

/// <summary>bdh train: train on a text file with live progress, checkpoints, loss.csv/loss.svg and a final sample.</summary>
public static class TrainCommand
{
    /// <summary>The presets by their --preset names: <see cref="BdhConfig.Cpu"/> and <see cref="BdhConfig.Paper"/> with their training.</summary>
    public static (BdhConfig Config, TrainOptions Options) Preset(string name) => name switch
    {
        "cpu" => (BdhConfig.Cpu, TrainOptions.Cpu),
        "paper" => (BdhConfig.Paper, TrainOptions.Paper),
        _ => throw new UserError($"--preset: unknown preset '{name}' (cpu or paper)"),
    };

    public static Command Create()
    {
        var data = new Option<string?>("--data") { Description = "Text file to train on (default: tiny Shakespeare, downloaded once to the cache)" };
        var preset = new Option<string>("--preset") { Description = "cpu (default) or paper", DefaultValueFactory = _ => "cpu" };
        preset.AcceptOnlyFromAmong("cpu", "paper");
        var layers = new Option<int?>("--layers") { Description = "n_layer" };
        var embd = new Option<int?>("--embd") { Description = "n_embd (D)" };
        var heads = new Option<int?>("--heads") { Description = "n_head" };
        var mult = new Option<int?>("--mult") { Description = "mlp_internal_dim_multiplier (N = mult*D/heads)" };
        var dropout = new Option<double?>("--dropout") { Description = "Dropout on xs*ys" };
        var batch = new Option<int?>("--batch") { Description = "Sequences per step" };
        var block = new Option<int?>("--block") { Description = "Tokens per sequence (T)" };
        var steps = new Option<int?>("--steps") { Description = "Optimizer steps" };
        var lr = new Option<double?>("--lr") { Description = "AdamW learning rate" };
        var weightDecay = new Option<double?>("--weight-decay") { Description = "AdamW decoupled weight decay" };
        var gradAccum = new Option<int?>("--grad-accum") { Description = "Micro-batches per step (divides --batch)" };
        var seed = new Option<ulong?>("--seed") { Description = "Seed of init, batches and dropout" };
        var threads = CommonOptions.Threads();
        var evalEvery = new Option<int?>("--eval-every") { Description = "Val loss every N steps (0: off; default 250)" };
        var checkpointEvery = new Option<int?>("--checkpoint-every") { Description = "Checkpoint every N steps (default 500, and at the end)" };
        var outDir = new Option<string?>("--out") { Description = "Output folder (default: runs/<preset>-<time>)" };
        var resume = new Option<bool>("--resume") { Description = "Continue the run in --out from its latest checkpoint, bit-identically" };
        var init = new Option<string?>("--init")
        {
            Description = "Start from this checkpoint (e.g. a `bdh merge` output): its weights, RoPE frequencies and config, with a fresh optimizer",
        };
        var profile = new Option<bool>("--profile") { Description = "Print the time per op (forward and backward) per step at the end; the first step (JIT warm-up) is left out" };
        var command = new Command("train", "Train BDH on a text file (bytes as tokens).")
        {
            data, preset, layers, embd, heads, mult, dropout, batch, block, steps, lr, weightDecay, gradAccum, seed, threads,
            evalEvery, checkpointEvery, outDir, resume, init, profile,
        };
        command.SetAction(r =>
        {
            string presetName = r.GetValue(preset)!;
            var (config, options) = Preset(presetName);
            config = config with
            {
                NLayer = r.GetValue(layers) ?? config.NLayer,
                NEmbd = r.GetValue(embd) ?? config.NEmbd,
                NHead = r.GetValue(heads) ?? config.NHead,
                MlpInternalDimMultiplier = r.GetValue(mult) ?? config.MlpInternalDimMultiplier,
                Dropout = r.GetValue(dropout) ?? config.Dropout,
            };
            options = options with
            {
                Batch = r.GetValue(batch) ?? options.Batch,
                Block = r.GetValue(block) ?? options.Block,
                Steps = r.GetValue(steps) ?? options.Steps,
                LearningRate = r.GetValue(lr) ?? options.LearningRate,
                WeightDecay = r.GetValue(weightDecay) ?? options.WeightDecay,
                GradAccum = r.GetValue(gradAccum) ?? options.GradAccum,
                Seed = r.GetValue(seed) ?? options.Seed,
                EvalEvery = r.GetValue(evalEvery) ?? options.EvalEvery,
                CheckpointEvery = r.GetValue(checkpointEvery) ?? options.CheckpointEvery,
            };
            // TrainOptions names the property at fault; the user knows it by its flag.
            ValidateByFlag(() => options.Validate(),
            [
                (nameof(TrainOptions.Batch), batch), (nameof(TrainOptions.Block), block), (nameof(TrainOptions.Steps), steps),
                (nameof(TrainOptions.LearningRate), lr), (nameof(TrainOptions.WeightDecay), weightDecay),
                (nameof(TrainOptions.GradAccum), gradAccum), (nameof(TrainOptions.EvalEvery), evalEvery),
                (nameof(TrainOptions.CheckpointEvery), checkpointEvery),
            ]);
            if (options.Steps < 1) throw new UserError("--steps: must be >= 1");
            CommonOptions.ApplyThreads(r.GetValue(threads));
            BdhModel<float> model;
            double memory;
            if (r.GetValue(init) is string initPath)
            {
                // The checkpoint fixes the model; options that would change it are a mistake, not something to ignore.
                Option[] architecture = [layers, embd, heads, mult, dropout];
                if (architecture.FirstOrDefault(o => r.GetResult(o) is { Implicit: false }) is Option given)
                    throw new UserError($"{given.Name}: the model comes from --init; leave out {given.Name}");
                model = CommonOptions.LoadModel(initPath, "--init");
                memory = TrainingBytes(model.Config, options);
            }
            else
            {
                // BdhConfig names the field at fault by the reference's names.
                ValidateByFlag(() => config.Validate(),
                    [("n_layer", layers), ("n_embd", embd), ("n_head", heads), ("mlp_internal_dim_multiplier", mult), ("dropout", dropout)]);
                memory = TrainingBytes(config, options); // before the weights are allocated
                model = BdhModel<float>.Create(config, options.Seed);
            }
            string dir = r.GetValue(outDir) ?? Path.Combine("runs", $"{presetName}-{DateTime.Now:yyyyMMdd-HHmmss}");
            try { return Train(model, memory, options, DataSource.Load(r.GetValue(data)), dir, r.GetValue(resume), r.GetValue(profile)); }
            catch (TrainingDivergedException e) { throw new UserError($"{e.Message} (try a lower --lr)"); }
        });
        return command;
    }

    /// <summary>
    /// Runs <paramref name="validate"/>, whose <see cref="ArgumentException"/> leads with the name of the setting at fault
    /// ("GradAccum: ..."), and reports it by the flag that sets it; a setting no flag sets keeps its message.
    /// </summary>
    private static void ValidateByFlag(Action validate, (string Name, Option Flag)[] flags)
    {
        try { validate(); }
        catch (ArgumentException e) when (flags.FirstOrDefault(f => e.Message.StartsWith(f.Name + ": ", StringComparison.Ordinal)) is { Flag: not null } at)
        {
            throw new UserError(at.Flag.Name + e.Message[at.Name.Length..]);
        }
    }

    /// <summary>
    /// The bytes training needs: weights, gradients and both AdamW moments, and the larger of one micro-batch's pass and
    /// one validation pass; refuses what cannot fit in this machine's memory.
    /// </summary>
    private static double TrainingBytes(BdhConfig config, TrainOptions options)
    {
        double pass = config.StepBytes(options.Batch / options.GradAccum, options.Block, training: true);
        if (options.EvalEvery > 0)
            pass = Math.Max(pass, config.StepBytes(Math.Min(options.EvalWindows, Evaluation.WindowsPerPass(config, options.Block)), options.Block, training: false));
        double memory = 16.0 * BdhModel<float>.ParameterCount(config) + pass;
        config.RequireStepFits(options.Batch / options.GradAccum, options.Block, training: true, "--batch/--block");
        MemoryBudget.Require(memory, "--layers/--embd/--mult/--batch/--block");
        return memory;
    }

    /// <summary>
    /// The disk a run of <paramref name="steps"/> more steps needs: a line of loss.csv per step (at most ~64 bytes), and two
    /// checkpoints while the newest is written before the older is removed, each the weights (4 bytes a value) and
    /// AdamW's two moments (8).
    /// </summary>
    private static double DiskBytes(BdhConfig config, long steps) => 64.0 * steps + 2 * 12.0 * BdhModel<float>.ParameterCount(config);

    private static int Train(BdhModel<float> model, double memory, TrainOptions options, byte[] bytes, string dir, bool resume, bool profile)
    {
        var config = model.Config;
        var data = new TextData(bytes);
        if (data.Train.Length <= options.Block + 1L || data.Val.Length <= options.Block + 1L)
            throw new UserError($"--data: {bytes.Length} bytes is too short for --block {options.Block} (both splits need block + 2 bytes)");

        void Notice(string message) => Console.Error.WriteLine($"bdh: {message}");
        // Signals stop training between steps; the run then saves a checkpoint and exits 128 + the signal's number.
        using var cancel = new CancellationTokenSource();
        PosixSignal? stoppedBy = null;
        void Stop(PosixSignalContext signal)
        {
            signal.Cancel = true;
            stoppedBy ??= signal.Signal;
            cancel.Cancel();
        }
        using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, Stop);
        using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, Stop);

        double disk = DiskBytes(config, options.Steps); // a resumed run needs less: this bounds it before the folder is touched
        Limits.RequireDisk(disk, dir, $"--steps {options.Steps}");
        using var run = RunFolder.Acquire(dir, Notice);
        var checkpoints = new CheckpointStore(dir);
        if (checkpoints.RemoveUnfinished() is > 0 and int removed)
            Notice($"removed {removed} unfinished checkpoint file(s) that a killed run left in {checkpoints.Folder}");
        bool hasRun = checkpoints.Latest is not null;
        if (!resume && hasRun) throw new UserError($"--out: '{dir}' already holds a run; pass --resume to continue it or choose another --out");
        if (resume && !hasRun)
            throw new UserError($"--resume: no complete checkpoint in '{dir}' (a run killed during its first checkpoint leaves none); start over without --resume");
        if (resume && checkpoints.LatestStep >= options.Steps)
            throw new UserError($"--steps {options.Steps}: the run in '{dir}' is already at step {checkpoints.LatestStep}; pass a larger --steps to train it further");

        var trainer = new Trainer(model, data, options);
        if (resume) trainer.Resume(dir);
        var curve = run.OpenCurve(resume ? trainer.Step : null, Notice);
        Console.Error.WriteLine($"training BDH {config.ToJson()} on {bytes.Length:N0} bytes, {Bdh.Tensors.Parallelism.Threads} threads, into {dir}" +
            (resume ? $" (resumed at step {trainer.Step})" : "") + $"; about {memory / 1e9:0.00} GB of memory and {disk / 1e9:0.00} GB of disk" +
            "; the time is projected after the first step");

        var stepSeconds = new List<double>();
        void Record(StepReport s)
        {
            OpProfile.Enabled = profile; // from the second step of this run on
            stepSeconds.Add(s.Seconds);
            curve.Add((s.Step, s.Loss, s.ValLoss));
            run.Append(s.Step, s.Loss, s.ValLoss, s.Seconds);
        }
        if (Console.IsErrorRedirected) RunWithLines(trainer, options, dir, Record, cancel.Token);
        else RunWithProgressBar(trainer, options, dir, Record, cancel.Token);
        LossCurve.WriteSvg(Path.Combine(dir, RunFolder.ChartName), curve);
        if (stoppedBy is PosixSignal signal)
        {
            trainer.SaveCheckpoint(dir);
            Notice($"stopped by {signal} at step {trainer.Step}; checkpoint saved, continue with --resume --out {dir}");
            return signal == PosixSignal.SIGINT ? 130 : 143;
        }

        // A sample at the end, as the reference's train.py prints one.
        var sample = Sampler.Generate(trainer.Model, CommonOptions.Encode("To be or "), 100, new SamplingOptions(TopK: 3, Seed: options.Seed));
        Console.WriteLine(CommonOptions.Decode(sample));

        double? lastVal = curve.LastOrDefault(p => p.Val.HasValue).Val;
        double lastTrain = curve.Count == 0 ? double.NaN : curve.TakeLast(50).Average(p => p.Train);
        double median = stepSeconds.Count == 0 ? double.NaN : stepSeconds.Order().ElementAt(stepSeconds.Count / 2);
        Console.WriteLine($"done: {trainer.Step} steps, median step {median * 1000:0.0} ms, {options.Batch * options.Block / median:0} tokens/s, " +
            $"train loss {lastTrain:0.0000} (mean of last 50 steps), val loss {(lastVal is double v ? v.ToString("0.0000") : "n/a")}");
        if (profile && stepSeconds.Count > 1) Console.WriteLine(OpProfile.Report(stepSeconds.Count - 1));
        return 0;
    }

    private static void RunWithProgressBar(Trainer trainer, TrainOptions options, string dir, Action<StepReport> record, CancellationToken cancel)
    {
        var console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Error) });
        console.Progress()
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn(), new RemainingTimeColumn())
            .Start(ctx =>
            {
                var task = ctx.AddTask("starting", maxValue: options.Steps);
                task.Value = trainer.Step;
                double? val = null;
                trainer.Run(dir, s =>
                {
                    record(s);
                    val = s.ValLoss ?? val;
                    task.Description = Markup.Escape(Describe(s, val));
                    task.Value = s.Step;
                }, cancel);
            });
    }

    private static void RunWithLines(Trainer trainer, TrainOptions options, string dir, Action<StepReport> record, CancellationToken cancel)
    {
        int every = Math.Max(1, options.Steps / 40);
        var started = DateTime.UtcNow;
        int firstStep = trainer.Step;
        trainer.Run(dir, s =>
        {
            record(s);
            // The first step's line projects the whole run's time at once, however long it is.
            if (s.Step % every == 0 || s.ValLoss.HasValue || s.Step == s.TotalSteps || s.Step == firstStep + 1)
            {
                double elapsed = (DateTime.UtcNow - started).TotalSeconds;
                var eta = TimeSpan.FromSeconds(Math.Min(Math.Round(elapsed / (s.Step - firstStep) * (s.TotalSteps - s.Step)), TimeSpan.MaxValue.TotalSeconds / 2));
                Console.Error.WriteLine($"{Describe(s, s.ValLoss)}  eta {Limits.Format(eta)}");
            }
        }, cancel);
    }

    // The project builds with invariant globalization: interpolated numbers always use '.'.
    private static string Describe(StepReport s, double? val) =>
        $"step {s.Step}/{s.TotalSteps}  loss {s.Loss:0.0000}  {s.TokensPerSecond:0} tok/s" + (val is double v ? $"  val {v:0.0000}" : "");
}
