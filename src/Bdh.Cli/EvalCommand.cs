using System.CommandLine;
using Bdh.Model;

namespace Bdh.Cli;

/// <summary>bdh eval: mean loss over the non-overlapping windows of the val split.</summary>
public static class EvalCommand
{
    private static readonly TimeSpan ProgressInterval = TimeSpan.FromSeconds(5);

    public static Command Create()
    {
        var checkpoint = CommonOptions.Checkpoint();
        var data = new Option<string?>("--data") { Description = "Text file (default: tiny Shakespeare); val = its last 10%" };
        var block = new Option<int>("--block") { Description = "Window length T (each window holds T + 1 bytes)", DefaultValueFactory = _ => 64 };
        var windows = new Option<int?>("--windows") { Description = "Use only the first K windows (default: all)" };
        var threads = CommonOptions.Threads();
        var command = new Command("eval", "Mean validation loss of a checkpoint over windows val[i*T : i*T+T+1].") { checkpoint, data, block, windows, threads };
        command.SetAction(r =>
        {
            CommonOptions.ApplyThreads(r.GetValue(threads));
            int t = r.GetValue(block);
            if (t < 1) throw new UserError("--block: must be >= 1");
            if (r.GetValue(windows) is < 1) throw new UserError("--windows: must be >= 1");
            var val = new TextData(DataSource.Load(r.GetValue(data))).Val;
            var model = CommonOptions.LoadModel(r.GetValue(checkpoint)!);
            int count = Math.Min(r.GetValue(windows) ?? int.MaxValue, TextData.WindowCount(val, t));
            if (count == 0) throw new UserError($"--block: no window of {t + 1L} bytes fits in the {val.Length}-byte val split");
            model.Config.RequireStepFits(Math.Min(count, Evaluation.WindowsPerPass(model.Config, t)), t, training: false, "--block");
            // A whole val split takes minutes on a large model: a line on stderr every few seconds says how far it is.
            var watch = System.Diagnostics.Stopwatch.StartNew();
            var lastLine = TimeSpan.Zero;
            void Report(int done)
            {
                if (done == count || watch.Elapsed - lastLine < ProgressInterval) return;
                lastLine = watch.Elapsed;
                Console.Error.WriteLine($"eval: {done} of {count} windows, {watch.Elapsed.TotalSeconds:0} s, about {watch.Elapsed.TotalSeconds * (count - done) / done:0} s to go");
            }
            double loss = Evaluation.MeanLoss(model, val, t, count, progress: Report);
            Console.WriteLine($"val loss {loss:0.000000} over {count} windows of {t} tokens");
            return 0;
        });
        return command;
    }
}
