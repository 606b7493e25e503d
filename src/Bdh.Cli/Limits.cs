using System.CommandLine;
using System.Diagnostics;
using Bdh.Model;

namespace Bdh.Cli;

/// <summary>
/// What bdh refuses because it will not fit (memory, disk) before it starts, the flag that runs it anyway, and the
/// projected time of long work, said as soon as it can be measured.
/// </summary>
public static class Limits
{
    /// <summary>Every command's --ignore-limits: run work whose memory or disk estimate exceeds the machine's.</summary>
    public static readonly Option<bool> Ignore = new("--ignore-limits")
    {
        Description = "Run even when the memory or disk estimate exceeds this machine (the estimates are upper bounds)",
        Recursive = true,
    };

    /// <summary>Throws a <see cref="LimitException"/> led by <paramref name="what"/> unless <paramref name="bytes"/> fit in the free space of <paramref name="folder"/>'s drive.</summary>
    public static void RequireDisk(double bytes, string folder, string what)
    {
        if (!MemoryBudget.Enforced) return;
        string existing = Path.GetFullPath(folder);
        while (!Directory.Exists(existing)) existing = Path.GetDirectoryName(existing)!; // the folder may be made later
        long free = new DriveInfo(existing).AvailableFreeSpace;
        if (bytes > free)
            throw new LimitException($"{what}: needs about {bytes / 1e9:0.0} GB on disk in '{folder}', its drive has {free / 1e9:0.0} GB free");
    }

    /// <summary>"2d 03:04:05" or "03:04:05".</summary>
    public static string Format(TimeSpan t) => $"{(t.Days > 0 ? $"{t.Days}d " : "")}{t:hh\\:mm\\:ss}";
}

/// <summary>
/// Says once, on stderr, how long a generation of <c>total</c> tokens will take, from the rate of the second after its
/// first token (the first carries the prompt's prefill and the JIT's warm-up), scaled by each remaining token's work.
/// </summary>
/// <param name="total">tokens to generate.</param>
/// <param name="start">the position of the first generated token (the prompt, and a loaded state, before it).</param>
/// <param name="cost">the work of the token at position t as c0 + c1·t + c2·t² (<see cref="Cost"/>).</param>
/// <param name="to">where to say it.</param>
public sealed class GenerationProjection(int total, int start, (double C0, double C1, double C2) cost, TextWriter to)
{
    private readonly Stopwatch _watch = new();
    private int _done;
    private bool _said;

    /// <summary>
    /// A token's work in multiply-adds, by mode: every mode runs the dense products (encoder, encoder_v and decoder per
    /// head and layer, and lm_head); cached generation also reads rope(xs) [N] and x [D] of every past position, and full
    /// generation re-runs all t positions, its attention over t² pairs.
    /// </summary>
    public static (double C0, double C1, double C2) Cost(BdhConfig c, GenerationMode mode)
    {
        double dense = 3.0 * c.NLayer * c.NHead * c.N * c.NEmbd + (double)c.NEmbd * c.VocabSize;
        double attention = (double)c.NLayer * c.NHead * (c.N + c.NEmbd);
        return mode switch
        {
            GenerationMode.Recurrent => (dense + 2 * c.NLayer * c.NHead * c.N * (double)c.NEmbd, 0, 0), // ρ read and written: N·D per head
            GenerationMode.Cached => (dense, attention, 0),
            _ => (0, dense, attention),
        };
    }

    /// <summary>Counts one generated token; a second after the first, says the projection if the run has more than a minute to go.</summary>
    public void Token()
    {
        if (_done++ == 0) _watch.Start();
        double elapsed = _watch.Elapsed.TotalSeconds;
        if (_said || elapsed < 1 || _done >= total) return;
        _said = true;
        double remaining = elapsed * Work(start + _done, start + total) / Work(start + 1, start + _done);
        if (remaining < 60) return;
        var projected = TimeSpan.FromSeconds(Math.Min(remaining, TimeSpan.MaxValue.TotalSeconds / 2));
        to.WriteLine($"bdh: {total} tokens: about {Limits.Format(projected)} to go ({(_done - 1) / elapsed:0.0} tokens/s so far)");
    }

    /// <summary>The work of the tokens at positions [first, end): Σ c0 + c1·t + c2·t², by the sums of powers.</summary>
    private double Work(long first, long end)
    {
        static double Powers(double n, int k) => k switch { 0 => n, 1 => n * (n - 1) / 2, _ => (n - 1) * n * (2 * n - 1) / 6 }; // Σ_{t<n} t^k
        double Sum(int k) => Powers(end, k) - Powers(first, k);
        return cost.C0 * Sum(0) + cost.C1 * Sum(1) + cost.C2 * Sum(2);
    }
}
