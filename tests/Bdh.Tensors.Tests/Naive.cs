namespace Bdh.Tensors.Tests;

/// <summary>Plain loops in double: the definitions every fast kernel is tested against.</summary>
public static class Naive
{
    public static double[] Random(Rng rng, int n, double scale = 1.0) => Enumerable.Range(0, n).Select(_ => (rng.NextDouble() * 2 - 1) * scale).ToArray();

    /// <summary>C = op(A)·op(B) with A stored [m,k] (or [k,m] transposed), B [k,n] (or [n,k]).</summary>
    public static double[] MatMul(double[] a, bool transA, double[] b, bool transB, int m, int n, int k)
    {
        var c = new double[m * n];
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                double sum = 0;
                for (int p = 0; p < k; p++)
                    sum += (transA ? a[p * m + i] : a[i * k + p]) * (transB ? b[j * k + p] : b[p * n + j]);
                c[i * n + j] = sum;
            }
        return c;
    }

    public static double[] LayerNorm(double[] x, int d, double eps)
    {
        var y = new double[x.Length];
        for (int r = 0; r < x.Length / d; r++)
        {
            double mean = 0, variance = 0;
            for (int i = 0; i < d; i++) mean += x[r * d + i] / d;
            for (int i = 0; i < d; i++) variance += (x[r * d + i] - mean) * (x[r * d + i] - mean) / d;
            for (int i = 0; i < d; i++) y[r * d + i] = (x[r * d + i] - mean) / Math.Sqrt(variance + eps);
        }
        return y;
    }

    /// <summary>Direct from the reference: phase (t·f mod 1)·2π, pairs rotated as (−v[2i+1], v[2i]).</summary>
    public static double[] Rope(double[] v, int length, int n, float[] freqs)
    {
        var y = new double[v.Length];
        for (int row = 0; row < v.Length / n; row++)
        {
            int t = row % length;
            for (int j = 0; j < n; j++)
            {
                float phase = t * freqs[j];
                double angle = (phase - MathF.Floor(phase)) * (float)(2 * Math.PI);
                double rotated = j % 2 == 0 ? -v[row * n + j + 1] : v[row * n + j - 1];
                y[row * n + j] = v[row * n + j] * Math.Cos(angle) + rotated * Math.Sin(angle);
            }
        }
        return y;
    }

    /// <summary>out[h,b,t,:] = Σ_{s&lt;t} (q[h,b,t]·q[h,b,s]) v[h or 0,b,s,:].</summary>
    public static double[] CausalAttention(double[] q, double[] v, int b, int h, int vHeads, int t, int n, int d)
    {
        var y = new double[b * h * t * d];
        for (int bi = 0; bi < b; bi++)
            for (int hi = 0; hi < h; hi++)
                for (int i = 0; i < t; i++)
                    for (int s = 0; s < i; s++)
                    {
                        double score = 0;
                        for (int j = 0; j < n; j++) score += q[((hi * b + bi) * t + i) * n + j] * q[((hi * b + bi) * t + s) * n + j];
                        int vBase = (((vHeads == 1 ? 0 : hi) * b + bi) * t + s) * d;
                        for (int j = 0; j < d; j++) y[((hi * b + bi) * t + i) * d + j] += score * v[vBase + j];
                    }
        return y;
    }

    public static double CrossEntropy(double[] logits, int[] targets, int vocab)
    {
        double total = 0;
        for (int r = 0; r < targets.Length; r++)
        {
            double max = double.NegativeInfinity, sum = 0;
            for (int j = 0; j < vocab; j++) max = Math.Max(max, logits[r * vocab + j]);
            for (int j = 0; j < vocab; j++) sum += Math.Exp(logits[r * vocab + j] - max);
            total += max + Math.Log(sum) - logits[r * vocab + targets[r]];
        }
        return total / targets.Length;
    }

    /// <summary>max |a − b| / max |b| (0 when both are zero).</summary>
    public static double RelativeError(ReadOnlySpan<double> a, ReadOnlySpan<double> b)
    {
        double worst = 0, scale = 0;
        for (int i = 0; i < a.Length; i++)
        {
            worst = Math.Max(worst, Math.Abs(a[i] - b[i]));
            scale = Math.Max(scale, Math.Abs(b[i]));
        }
        return scale == 0 ? worst : worst / scale;
    }

    public static double RelativeError(ReadOnlySpan<float> a, ReadOnlySpan<double> b) =>
        RelativeError(a.ToArray().Select(x => (double)x).ToArray(), b);
}
