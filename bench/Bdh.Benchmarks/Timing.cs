using System.Diagnostics;

namespace Bdh.Benchmarks;

/// <summary>What the bench's own timing modes take of their repetitions.</summary>
internal static class Timing
{
    /// <summary>The wall time of one run of <paramref name="work"/>, in seconds.</summary>
    public static double Seconds(Action work)
    {
        var watch = Stopwatch.StartNew();
        work();
        return watch.Elapsed.TotalSeconds;
    }

    /// <summary>The middle value (the upper of the two middle ones for an even count): a slow spell of the VM moves it less than a mean.</summary>
    public static double Median(this IEnumerable<double> values)
    {
        var sorted = values.Order().ToArray();
        return sorted[sorted.Length / 2];
    }
}
