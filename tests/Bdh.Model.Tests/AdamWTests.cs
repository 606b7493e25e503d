using FsCheck;
using FsCheck.Xunit;

namespace Bdh.Model.Tests;

public class AdamWTests
{
    /// <summary>
    /// AdamW's vector loop gives, bit for bit, torch.optim.AdamW's single-tensor arithmetic written element by element
    /// (below): over lengths of 1, odd sizes, lengths past a whole vector with a tail, and lengths that split over
    /// threads (from 2^15 elements), on 1, 2 and 3 threads, for three steps, with both of torch.lerp's branches.
    /// </summary>
    [Property(MaxTest = 30)]
    public void UpdatesEveryElementAsTorchDoesInItsOrder(DoNotSize<ushort> lengthRaw, bool large, bool lowBeta1, int seed)
    {
        // Unsized: FsCheck keeps a plain ushort within its size (100 at most), which would leave most large lengths out.
        int length = large ? (1 << 15) + lengthRaw.Item % 4099 : 1 + lengthRaw.Item % 67;
        double lr = 3e-3, weightDecay = 0.1, beta1 = lowBeta1 ? 0.3 : 0.9, beta2 = 0.999, eps = 1e-8;
        var rng = new Rng((ulong)seed);
        float[] start = Tensor<float>.Uniform(rng, -1, 1, length).Span.ToArray(), grads = Tensor<float>.Uniform(rng, -1, 1, 3 * length).Span.ToArray();

        float[] expected = (float[])start.Clone(), m = new float[length], v = new float[length];
        for (int step = 1; step <= 3; step++)
        {
            float decay = (float)(1 - lr * weightDecay), w = (float)(1 - beta1), b2 = (float)beta2, oneMinusB2 = (float)(1 - beta2);
            float stepSize = (float)(lr / (1 - Math.Pow(beta1, step))), bc2 = (float)Math.Sqrt(1 - Math.Pow(beta2, step)), e = (float)eps;
            for (int j = 0; j < length; j++)
            {
                float g = grads[(step - 1) * length + j];
                expected[j] *= decay;
                m[j] = w < 0.5f ? m[j] + w * (g - m[j]) : g - (g - m[j]) * (1 - w);
                v[j] = v[j] * b2 + oneMinusB2 * g * g;
                expected[j] += -stepSize * (m[j] / (MathF.Sqrt(v[j]) / bc2 + e));
            }
        }

        foreach (int threads in new[] { 1, 2, 3 })
        {
            float[] actual = Threads.On(threads, () =>
            {
                var param = Var<float>.Parameter(Tensor<float>.From((float[])start.Clone(), length));
                var adam = new AdamW([param], lr, weightDecay, beta1, beta2, eps);
                for (int step = 0; step < 3; step++)
                {
                    grads.AsSpan(step * length, length).CopyTo(param.Grad!.Span);
                    adam.Update();
                }
                return param.Value.Span.ToArray();
            });
            Assert.True(expected.AsSpan().SequenceEqual(actual), $"length {length}, {threads} threads: first difference at {expected.AsSpan().CommonPrefixLength(actual)}");
        }
    }
}
