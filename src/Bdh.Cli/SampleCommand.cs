using System.CommandLine;
using System.Diagnostics;
using Bdh.Model;
using Bdh.Model.Inference;

namespace Bdh.Cli;

/// <summary>bdh sample: the prompt and its continuation on stdout; the rate on stderr.</summary>
public static class SampleCommand
{
    public static Command Create()
    {
        var checkpoint = CommonOptions.Checkpoint();
        var prompt = new Option<string?>("--prompt", "-p") { Description = "Text to continue (default \"ROMEO:\"; none after --load-state)" };
        var tokens = new Option<int>("--tokens", "-n") { Description = "Tokens (bytes) to generate", DefaultValueFactory = _ => 200 };
        var topK = new Option<int?>("--top-k") { Description = "Sample among the k most likely tokens (1 = greedy)" };
        var temperature = new Option<double>("--temperature") { Description = "Softmax temperature", DefaultValueFactory = _ => 1.0 };
        var seed = new Option<ulong>("--seed") { Description = "Seed of the draw", DefaultValueFactory = _ => 1337UL };
        var mode = new Option<GenerationMode>("--mode")
        {
            Description = "full: re-run the sequence per token (the reference); cached: keep past queries; recurrent: the synaptic state, constant cost per token",
            DefaultValueFactory = _ => GenerationMode.Recurrent,
        };
        var saveState = new Option<string?>("--save-state") { Description = "Save the synaptic state after generating (recurrent mode)" };
        var loadState = new Option<string?>("--load-state") { Description = "Continue from a saved synaptic state instead of starting empty" };
        var threads = CommonOptions.Threads();
        var command = new Command("sample", "Generate text from a checkpoint.") { checkpoint, prompt, tokens, topK, temperature, seed, mode, saveState, loadState, threads };
        command.SetAction(r =>
        {
            CommonOptions.ApplyThreads(r.GetValue(threads));
            int count = r.GetValue(tokens);
            if (count < 0) throw new UserError("--tokens: must be >= 0");
            if (r.GetValue(topK) is < 1) throw new UserError("--top-k: must be >= 1");
            if (r.GetValue(temperature) is not > 0) throw new UserError("--temperature: must be > 0");
            string? load = r.GetValue(loadState), save = r.GetValue(saveState);
            if ((load ?? save) is not null && r.GetValue(mode) != GenerationMode.Recurrent)
                throw new UserError("--save-state/--load-state: need --mode recurrent");
            if (save is not null && count == 0) throw new UserError("--save-state: generate at least one token");
            string text = r.GetValue(prompt) ?? (load is null ? "ROMEO:" : "");
            if (text.Length == 0 && load is null) throw new UserError("--prompt: must not be empty");
            var model = CommonOptions.LoadModel(r.GetValue(checkpoint)!);
            var options = new SamplingOptions(r.GetValue(temperature), r.GetValue(topK), r.GetValue(seed));

            var stdout = Console.OpenStandardOutput();
            stdout.Write(System.Text.Encoding.UTF8.GetBytes(text));
            void Print(int t) { stdout.WriteByte((byte)t); stdout.Flush(); }
            var watch = Stopwatch.StartNew();
            if (load is null && save is null)
                Sampler.Generate(model, CommonOptions.Encode(text), count, options, Print, r.GetValue(mode));
            else
            {
                // From a saved state: its pending token first, then the prompt.
                var snapshot = load is null ? null : StateSnapshot.Load(load, model.Config);
                var stepper = snapshot?.Resume(model) ?? IncrementalBdh<float>.Start(model, GenerationMode.Recurrent);
                int[] input = snapshot is null ? CommonOptions.Encode(text) : [snapshot.PendingToken, .. CommonOptions.Encode(text)];
                var all = Sampler.Continue(stepper, input, count, options, Print);
                if (save is not null) StateSnapshot.Capture(stepper, pendingToken: all[^1]).Save(save, model.Config);
            }
            stdout.WriteByte((byte)'\n');
            stdout.Flush();
            double seconds = watch.Elapsed.TotalSeconds;
            Console.Error.WriteLine($"{count} tokens in {seconds:0.00} s, {count / Math.Max(seconds, 1e-9):0.0} tokens/s ({r.GetValue(mode).ToString().ToLowerInvariant()})");
            return 0;
        });
        return command;
    }
}
