using Bdh.Model;
using Bdh.Model.Inference;

namespace Bdh.Benchmarks;

/// <summary>
/// `gen CHECKPOINT [max]`: time per generated token at several positions for each generation path, after
/// a warm-up, so "cost per token is flat in the position" is a measurement, not a total divided by a count.
/// Each figure is the rate over the 128 tokens (full: forward passes) ending at that position.
/// Full mode re-runs the whole sequence and is timed only up to 512.
/// </summary>
public static class GenerationProfile
{
    public static void Run(string checkpoint, int max)
    {
        var model = Checkpoint.Load(checkpoint);
        var c = model.Config;
        Console.WriteLine($"checkpoint {checkpoint}: {c.ToJson()}");
        int[] marks = [128, 512, 2048, 8192];
        const int Window = 128; // each figure is the rate over the 128 tokens ending at the mark
        foreach (var mode in Enum.GetValues<GenerationMode>())
        {
            int limit = mode == GenerationMode.Full ? Math.Min(max, 512) : max;
            var row = new List<string>();
            var window = new Queue<double>();
            // Warm-up on another instance so the JIT has compiled every path.
            Time(model, mode, 8, (_, _) => { });
            Time(model, mode, limit, (position, seconds) =>
            {
                window.Enqueue(seconds);
                if (window.Count > Window) window.Dequeue();
                if (marks.Contains(position)) row.Add($"t={position}: {window.Count / window.Sum(),8:0.0} tok/s");
            });
            Console.WriteLine($"{mode,-10} {string.Join("   ", row)}");
        }
    }

    /// <summary>Steps <paramref name="tokens"/> tokens in <paramref name="mode"/> (full: one forward pass over the sequence per token), timing each.</summary>
    private static void Time(BdhModel<float> model, GenerationMode mode, int tokens, Action<int, double> atPosition)
    {
        var stepper = IBdhStepper<float>.Start(model, mode);
        for (int position = 0; position < tokens; position++)
            atPosition(position + 1, Timing.Seconds(() => stepper.Step(position % 200 + 32)));
    }
}
