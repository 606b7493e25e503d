using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;
using System.Runtime.Intrinsics.X86;
using Bdh.Tensors;

namespace Bdh.Benchmarks;

/// <summary>
/// `peak`: the machine's measured FMA peak at the width the kernels run at (<see cref="Simd.Widest"/>, so the JIT knobs
/// choose it), the denominator of "share of peak": 12 independent chains of FMAs per thread (enough to cover the FMA
/// latency on two pipes), on 1 thread and on all cores. Without FMA (x64 held below AVX2) a multiply-add is a multiply
/// and an add, and chains of them would be bound by the two latencies in series, not by how many the core issues: on a
/// core with separate multiply and add pipes (AMD's Zen) that read below the rate the GEMM reaches (a Zen 4 core: 47.1
/// GFLOP/s, against 53.5 from separate chains and about 50 in the GEMM). There the chains are 6 of multiplies and 6 of
/// adds, one flop each.
/// </summary>
public static class FmaPeak
{
    public static void Run()
    {
        bool fma = Fma.IsSupported || AdvSimd.IsSupported;
        Func<long, float> chains = (Simd.Widest, fma) switch
        {
            (512, _) => Chains<Float512, Vector512<float>>,
            (256, _) => Chains<Float256, Vector256<float>>,
            (128, true) => Chains<Float128, Vector128<float>>,
            (128, false) => MultiplyAndAddChains<Float128, Vector128<float>>,
            _ => throw new PlatformNotSupportedException("no accelerated vector width"),
        };
        int flopsPerLane = fma ? 2 * 12 : 12;
        const long Iterations = 100_000_000;
        chains(1000);
        for (int threads = 1; threads <= Environment.ProcessorCount; threads++)
        {
            double best = 0;
            for (int rep = 0; rep < 3; rep++)
            {
                double seconds = Timing.Seconds(() => Parallel.For(0, threads, new ParallelOptions { MaxDegreeOfParallelism = threads }, _ => chains(Iterations)));
                best = Math.Max(best, (double)flopsPerLane * (Simd.Widest / 32) * Iterations * threads / seconds / 1e9);
            }
            Console.WriteLine($"{(fma ? "FMA" : "multiply and add")} peak at {Simd.Widest} bits, {threads} thread{(threads > 1 ? "s" : "")}: {best:0.0} GFLOP/s (best of 3)");
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static float Chains<W, V>(long iterations) where W : struct, IFloatVector<V> where V : struct
    {
        V m = W.Create(0.999999f), c = W.Create(1e-7f);
        V a0 = W.Create(1f), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0, a8 = a0, a9 = a0, a10 = a0, a11 = a0;
        for (long i = 0; i < iterations; i++)
        {
            a0 = W.MultiplyAdd(a0, m, c); a1 = W.MultiplyAdd(a1, m, c); a2 = W.MultiplyAdd(a2, m, c);
            a3 = W.MultiplyAdd(a3, m, c); a4 = W.MultiplyAdd(a4, m, c); a5 = W.MultiplyAdd(a5, m, c);
            a6 = W.MultiplyAdd(a6, m, c); a7 = W.MultiplyAdd(a7, m, c); a8 = W.MultiplyAdd(a8, m, c);
            a9 = W.MultiplyAdd(a9, m, c); a10 = W.MultiplyAdd(a10, m, c); a11 = W.MultiplyAdd(a11, m, c);
        }
        return W.Sum(W.Add(W.Add(W.Add(a0, a1), W.Add(a2, a3)), W.Add(W.Add(W.Add(a4, a5), W.Add(a6, a7)), W.Add(W.Add(a8, a9), W.Add(a10, a11)))));
    }

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static float MultiplyAndAddChains<W, V>(long iterations) where W : struct, IFloatVector<V> where V : struct
    {
        V m = W.Create(0.999999f), c = W.Create(1e-7f);
        V p0 = W.Create(1f), p1 = p0, p2 = p0, p3 = p0, p4 = p0, p5 = p0, s0 = p0, s1 = p0, s2 = p0, s3 = p0, s4 = p0, s5 = p0;
        for (long i = 0; i < iterations; i++)
        {
            p0 = W.Multiply(p0, m); p1 = W.Multiply(p1, m); p2 = W.Multiply(p2, m);
            p3 = W.Multiply(p3, m); p4 = W.Multiply(p4, m); p5 = W.Multiply(p5, m);
            s0 = W.Add(s0, c); s1 = W.Add(s1, c); s2 = W.Add(s2, c);
            s3 = W.Add(s3, c); s4 = W.Add(s4, c); s5 = W.Add(s5, c);
        }
        return W.Sum(W.Add(W.Add(W.Add(p0, p1), W.Add(p2, p3)), W.Add(W.Add(W.Add(p4, p5), W.Add(s0, s1)), W.Add(W.Add(s2, s3), W.Add(s4, s5)))));
    }
}
