using System.Diagnostics;
using Bdh.Tensors;

namespace Bdh.Benchmarks;

/// <summary>
/// `forks [threads] [gap ms]`: how well a fork spreads short items over the threads, as the kernels fork: eight items
/// of 0.33 ms of arithmetic each, forked 300 times with <c>gap</c> ms of serial work between forks (default 0.05, the
/// kind of gap between a training step's kernels), by <c>Parallel.For</c> on the thread pool and then by
/// <see cref="Parallelism.For"/> (our spinning team). Prints each one's median and best wall time per fork, how many
/// of the eight items the calling thread ran (a histogram: all eight means no other thread joined in time), and how
/// late after the fork another thread started its first item.
/// </summary>
public static class ForkLatency
{
    private const int Items = 8, Forks = 300;
    private const double ItemMs = 0.33;

    public static void Run(int threads, double gapMs)
    {
        Parallelism.Threads = threads;
        var options = new ParallelOptions { MaxDegreeOfParallelism = threads };
        foreach (var (name, fork) in new (string, Action<int, Action<int>>)[]
        {
            ("Parallel.For", (count, body) => Parallel.For(0, count, options, body)),
            ("Parallelism.For", Parallelism.For),
        })
        {
            var walls = new List<double>();
            var lates = new List<double>();
            var callerItems = new int[Items + 1];
            for (int f = 0; f < Forks; f++)
            {
                int caller = Environment.CurrentManagedThreadId, mine = 0;
                long start = Stopwatch.GetTimestamp(), firstOther = long.MaxValue;
                fork(Items, _ =>
                {
                    if (Environment.CurrentManagedThreadId == caller) Interlocked.Increment(ref mine);
                    else InterlockedMin(ref firstOther, Stopwatch.GetTimestamp());
                    Busy(ItemMs);
                });
                walls.Add(Stopwatch.GetElapsedTime(start).TotalMilliseconds);
                Busy(gapMs);
                callerItems[mine]++;
                if (firstOther != long.MaxValue) lates.Add((firstOther - start) * 1000.0 / Stopwatch.Frequency);
            }
            string late = lates.Count == 0 ? "never" : $"median {lates.Median():0.000} ms";
            Console.WriteLine($"{name,-16} {threads} threads: fork of {Items} × {ItemMs} ms items, {gapMs} ms apart: median {walls.Median():0.00} ms, " +
                $"best {walls.Min():0.00}; items run by the caller (count:forks) " +
                string.Join(' ', callerItems.Select((n, items) => (n, items)).Where(x => x.n > 0).Select(x => $"{x.items}:{x.n}")) +
                $"; another thread's first item began {late} after the fork");
        }
    }

    private static void InterlockedMin(ref long target, long value)
    {
        for (long seen = Volatile.Read(ref target); value < seen; seen = Volatile.Read(ref target))
            if (Interlocked.CompareExchange(ref target, value, seen) == seen) return;
    }

    private static double Busy(double ms)
    {
        long until = Stopwatch.GetTimestamp() + (long)(ms * Stopwatch.Frequency / 1000);
        double sum = 0;
        while (Stopwatch.GetTimestamp() < until) sum += 1;
        return sum;
    }
}
