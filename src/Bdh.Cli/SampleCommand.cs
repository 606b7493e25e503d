using System.CommandLine;
using System.Diagnostics;
using Bdh.Model;

namespace Bdh.Cli;

/// <summary>bdh sample: the prompt and its continuation on stdout; the rate on stderr.</summary>
public static class SampleCommand
{
    public static Command Create()
    {
        var checkpoint = CommonOptions.Checkpoint();
        var prompt = new Option<string>("--prompt", "-p") { Description = "Text to continue", DefaultValueFactory = _ => "ROMEO:" };
        var tokens = new Option<int>("--tokens", "-n") { Description = "Tokens (bytes) to generate", DefaultValueFactory = _ => 200 };
        var topK = new Option<int?>("--top-k") { Description = "Sample among the k most likely tokens (1 = greedy)" };
        var temperature = new Option<double>("--temperature") { Description = "Softmax temperature", DefaultValueFactory = _ => 1.0 };
        var seed = new Option<ulong>("--seed") { Description = "Seed of the draw", DefaultValueFactory = _ => 1337UL };
        var threads = CommonOptions.Threads();
        var command = new Command("sample", "Generate text from a checkpoint.") { checkpoint, prompt, tokens, topK, temperature, seed, threads };
        command.SetAction(r =>
        {
            CommonOptions.ApplyThreads(r.GetValue(threads));
            int count = r.GetValue(tokens);
            if (count < 0) throw new UserError("--tokens: must be >= 0");
            if (r.GetValue(topK) is < 1) throw new UserError("--top-k: must be >= 1");
            if (r.GetValue(temperature) is not > 0) throw new UserError("--temperature: must be > 0");
            string text = r.GetValue(prompt)!;
            if (text.Length == 0) throw new UserError("--prompt: must not be empty");
            var model = CommonOptions.LoadModel(r.GetValue(checkpoint)!);
            var options = new SamplingOptions(r.GetValue(temperature), r.GetValue(topK), r.GetValue(seed));

            var stdout = Console.OpenStandardOutput();
            var promptBytes = System.Text.Encoding.UTF8.GetBytes(text);
            stdout.Write(promptBytes);
            var watch = Stopwatch.StartNew();
            Sampler.Generate(model, CommonOptions.Encode(text), count, options, t => { stdout.WriteByte((byte)t); stdout.Flush(); });
            stdout.WriteByte((byte)'\n');
            stdout.Flush();
            double seconds = watch.Elapsed.TotalSeconds;
            Console.Error.WriteLine($"{count} tokens in {seconds:0.00} s, {count / Math.Max(seconds, 1e-9):0.0} tokens/s");
            return 0;
        });
        return command;
    }
}
