using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Bdh.Benchmarks;

/// <summary>
/// `peak`: the machine's measured FMA peak, the denominator of "share of peak": 12 independent chains
/// of 512-bit FMAs per thread (enough to cover the FMA latency on two pipes), on 1 thread and on all cores.
/// </summary>
public static class FmaPeak
{
    public static void Run()
    {
        const long Iterations = 100_000_000;
        Chains(1000);
        for (int threads = 1; threads <= Environment.ProcessorCount; threads++)
        {
            double best = 0;
            for (int rep = 0; rep < 3; rep++)
            {
                var watch = Stopwatch.StartNew();
                Parallel.For(0, threads, new ParallelOptions { MaxDegreeOfParallelism = threads }, _ => Chains(Iterations));
                best = Math.Max(best, 2.0 * 16 * 12 * Iterations * threads / watch.Elapsed.TotalSeconds / 1e9);
            }
            Console.WriteLine($"FMA peak, {threads} thread{(threads > 1 ? "s" : "")}: {best:0.0} GFLOP/s (best of 3)");
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static float Chains(long iterations)
    {
        var m = Vector512.Create(0.999999f);
        var c = Vector512.Create(1e-7f);
        Vector512<float> a0 = Vector512<float>.One, a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0, a8 = a0, a9 = a0, a10 = a0, a11 = a0;
        for (long i = 0; i < iterations; i++)
        {
            a0 = Vector512.FusedMultiplyAdd(a0, m, c); a1 = Vector512.FusedMultiplyAdd(a1, m, c); a2 = Vector512.FusedMultiplyAdd(a2, m, c);
            a3 = Vector512.FusedMultiplyAdd(a3, m, c); a4 = Vector512.FusedMultiplyAdd(a4, m, c); a5 = Vector512.FusedMultiplyAdd(a5, m, c);
            a6 = Vector512.FusedMultiplyAdd(a6, m, c); a7 = Vector512.FusedMultiplyAdd(a7, m, c); a8 = Vector512.FusedMultiplyAdd(a8, m, c);
            a9 = Vector512.FusedMultiplyAdd(a9, m, c); a10 = Vector512.FusedMultiplyAdd(a10, m, c); a11 = Vector512.FusedMultiplyAdd(a11, m, c);
        }
        return (a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9 + a10 + a11).ToScalar();
    }
}
