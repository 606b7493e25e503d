using Bdh.Tensors.Kernels;

namespace Bdh.Benchmarks;

/// <summary>
/// `drift`: how far the reference's float32 RoPE phases, ((t·f) mod 1)·2π, stray from exact ones at
/// long positions. t·f is rounded to float32 before the fraction is taken, so the phase error grows
/// like ulp(t·f) ≈ t·f·2⁻²⁴ cycles.
/// </summary>
public static class PhaseDrift
{
    public static void Run()
    {
        foreach (int n in new[] { 512, 8192 })
        {
            float[] freqs = Rope.Frequencies(n);
            Console.WriteLine($"N = {n}: angle error of float32 phases vs exact (radians), over all neurons");
            foreach (int t in new[] { 1_000, 10_000, 100_000, 1_000_000 })
            {
                double worst = 0, sum = 0;
                foreach (float f in freqs)
                {
                    double angle32 = Rope.Angle(t, f);
                    double exact = t * (double)f;
                    double angleExact = (exact - Math.Floor(exact)) * 2 * Math.PI;
                    double error = Math.Abs(Math.IEEERemainder(angle32 - angleExact, 2 * Math.PI));
                    worst = Math.Max(worst, error);
                    sum += error;
                }
                Console.WriteLine($"  t = {t,9:N0}: max {worst:0.0e+00}  mean {sum / n:0.0e+00}");
            }
        }
    }
}
