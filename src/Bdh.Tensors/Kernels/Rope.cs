using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace Bdh.Tensors.Kernels;

/// <summary>
/// Rotary position embedding with the reference's exact float32 semantics. Neuron pairs (2i, 2i+1)
/// share a frequency; the phase of position t is <c>((t·f) mod 1)·2π</c> computed in float32;
/// the rotated vector is <c>v·cos + (−v[2i+1], v[2i])·sin</c>.
/// </summary>
public static class Rope
{
    public const float Theta = 65536f; // 2^16, as the reference

    /// <summary>get_freqs(n, θ): f_j = 1 / θ^(2⌊j/2⌋ / n) / 2π, in float32 as PyTorch computes it.</summary>
    public static float[] Frequencies(int n, float theta = Theta)
    {
        var f = new float[n];
        for (int j = 0; j < n; j++)
            f[j] = 1f / MathF.Pow(theta, (j & ~1) / (float)n) / (float)(2 * Math.PI);
        return f;
    }

    /// <summary>The rotation angle of position t at frequency f: ((t·f) mod 1)·2π, every step in float32 as the reference.</summary>
    public static float Angle(int t, float f)
    {
        float phase = t * f;
        return (phase - MathF.Floor(phase)) * (float)(2 * Math.PI);
    }

    /// <summary>
    /// cos and sin of the phase of every position t &lt; length and neuron j: two float32 tables [length, n],
    /// by <see cref="TorchTrig"/> unless <paramref name="sinCos"/> is given.
    /// </summary>
    public static RopeTable Table(ReadOnlySpan<float> freqs, int length, SinCosKernel? sinCos = null)
    {
        int n = freqs.Length;
        var cos = new float[length * n];
        var sin = new float[length * n];
        for (int t = 0; t < length; t++) Row(freqs, t, cos.AsSpan(t * n, n), sin.AsSpan(t * n, n), sinCos);
        return new RopeTable(cos, sin, length, n);
    }

    /// <summary>cos and sin [N] of position t (one row of a table; generation computes them token by token).</summary>
    public static void Row(ReadOnlySpan<float> freqs, int t, Span<float> cos, Span<float> sin, SinCosKernel? sinCos = null)
    {
        for (int j = 0; j < freqs.Length; j++) cos[j] = Angle(t, freqs[j]); // the angles, then their cos in place
        if (sinCos is null) TorchTrig.SinCos(cos, sin, cos); // the default calls TorchTrig directly: training and generation never go through a delegate
        else sinCos(cos, sin, cos);
    }

    /// <summary>y = rope(v) for v of [..., table.Length, table.N], rows split over the cores.</summary>
    public static void Forward<T>(Tensor<T> v, Tensor<T> y, RopeTable table) where T : unmanaged, IFloatingPointIeee754<T> =>
        Parallelism.ForSlices(y.Length, table.N, (s, n) => Forward<T>(v.Span.Slice(s, n), y.Span.Slice(s, n), table, s / table.N));

    /// <summary>
    /// y = rope(v) for v of [rows, table.Length, table.N], or a slice of it that starts at row
    /// <paramref name="firstRow"/>. Products are rounded before the sum, as the reference computes
    /// them, so float32 results match it exactly.
    /// </summary>
    public static void Forward<T>(ReadOnlySpan<T> v, Span<T> y, RopeTable table, int firstRow = 0) where T : unmanaged, IFloatingPointIeee754<T> =>
        Rotate(v, y, table, sinSign: 1, accumulate: false, firstRow, Simd.Widest);

    /// <summary>
    /// dv (+)= Rᵀ dy: the transpose of a rotation is the rotation by −θ, i.e. sin negated. Rows split over the cores. With
    /// <paramref name="reluOutput"/> (v, when it is a ReLU's output), dv is then stored zero wherever v is not positive: the
    /// ReLU's backward folded in.
    /// </summary>
    public static void Backward<T>(Tensor<T> dy, GradSlot<T> dv, RopeTable table, Tensor<T>? reluOutput = null) where T : unmanaged, IFloatingPointIeee754<T> =>
        Parallelism.ForSlices(dy.Length, table.N, (s, n) => Backward<T>(dy.Span.Slice(s, n), dv.Tensor.Span.Slice(s, n), table, s / table.N, dv.Accumulate,
            reluOutput is null ? default : reluOutput.Span.Slice(s, n)));

    internal static void Backward<T>(ReadOnlySpan<T> dy, Span<T> dv, RopeTable table, int firstRow = 0, bool accumulate = true,
        ReadOnlySpan<T> reluOutput = default) where T : unmanaged, IFloatingPointIeee754<T> =>
        Rotate(dy, dv, table, sinSign: -1, accumulate, firstRow, Simd.Widest, reluOutput);

    /// <summary>
    /// dst (+)= src·cos + (−src[2i+1], src[2i])·(±sin), pair by pair, row by row, float32 with vectors of
    /// <paramref name="width"/> bits (0: the scalar loop alone): the same bits at every width. Where
    /// <paramref name="reluMask"/> is given, dst is stored zero wherever the mask is not positive.
    /// </summary>
    internal static void Rotate<T>(ReadOnlySpan<T> src, Span<T> dst, RopeTable table, int sinSign, bool accumulate, int firstRow, int width,
        ReadOnlySpan<T> reluMask = default) where T : unmanaged, IFloatingPointIeee754<T>
    {
        var (cos, sin, length, n) = table;
        T sign = T.CreateTruncating(sinSign);
        for (int row = 0; row < src.Length / n; row++)
        {
            int t = (firstRow + row) % length;
            ReadOnlySpan<T> s = src.Slice(row * n, n), mask = reluMask.IsEmpty ? default : reluMask.Slice(row * n, n);
            Span<T> d = dst.Slice(row * n, n);
            int j = typeof(T) == typeof(float)
                ? RotateVectors(MemoryMarshal.Cast<T, float>(s), MemoryMarshal.Cast<T, float>(d), cos.AsSpan(t * n, n), sin.AsSpan(t * n, n), sinSign, accumulate,
                    MemoryMarshal.Cast<T, float>(mask), width)
                : 0;
            for (; j < n; j += 2)
            {
                T c0 = T.CreateTruncating(cos[t * n + j]), s0 = sign * T.CreateTruncating(sin[t * n + j]);
                T c1 = T.CreateTruncating(cos[t * n + j + 1]), s1 = sign * T.CreateTruncating(sin[t * n + j + 1]);
                T even = s[j] * c0 + (-s[j + 1]) * s0, odd = s[j + 1] * c1 + s[j] * s1;
                even = accumulate ? d[j] + even : even;
                odd = accumulate ? d[j + 1] + odd : odd;
                d[j] = mask.IsEmpty || mask[j] > T.Zero ? even : T.Zero;
                d[j + 1] = mask.IsEmpty || mask[j + 1] > T.Zero ? odd : T.Zero;
            }
        }
    }

    /// <summary>
    /// The same rotation a vector of pairs at a time: the pair swap is a shuffle and the sign of
    /// (−v[2i+1], v[2i]) moves onto sin (v[2i+1]·(−sin) is exactly −(v[2i+1]·sin)). Returns how many elements it did.
    /// </summary>
    private static unsafe int RotateVectors(ReadOnlySpan<float> src, Span<float> dst, ReadOnlySpan<float> cos, ReadOnlySpan<float> sin, int sinSign, bool accumulate,
        ReadOnlySpan<float> reluMask, int width)
    {
        fixed (float* s = src, d = dst, c = cos, si = sin, m = reluMask)
            return width switch
            {
                512 => RotateVectors<Float512, Vector512<float>>(s, d, c, si, src.Length, sinSign, accumulate, m),
                256 => RotateVectors<Float256, Vector256<float>>(s, d, c, si, src.Length, sinSign, accumulate, m),
                128 => RotateVectors<Float128, Vector128<float>>(s, d, c, si, src.Length, sinSign, accumulate, m),
                _ => 0,
            };
    }

    /// <summary>−1, 1, −1, 1, …: the sign of each lane's swapped partner, for any width up to 512 bits.</summary>
    private static ReadOnlySpan<float> PairSigns => [-1f, 1f, -1f, 1f, -1f, 1f, -1f, 1f, -1f, 1f, -1f, 1f, -1f, 1f, -1f, 1f];

    private static unsafe int RotateVectors<W, V>(float* src, float* dst, float* cos, float* sin, int n, int sinSign, bool accumulate, float* reluMask)
        where W : struct, IFloatVector<V> where V : struct
    {
        V signs;
        fixed (float* p = PairSigns) signs = W.Multiply(W.Load(p), W.Create(sinSign));
        int j = 0;
        for (; j <= n - W.Count; j += W.Count)
        {
            var v = W.Load(src + j);
            var rotated = W.Add(W.Multiply(v, W.Load(cos + j)), W.Multiply(W.SwapPairs(v), W.Multiply(W.Load(sin + j), signs)));
            var value = accumulate ? W.Add(W.Load(dst + j), rotated) : rotated;
            W.Store(reluMask == null ? value : W.And(value, W.GreaterThan(W.Load(reluMask + j), W.Create(0f))), dst + j);
        }
        return j;
    }
}

/// <summary>
/// float32 sin[i] and cos[i] of every angle x[i]; cos may be x itself. <see cref="TorchTrig.SinCos(ReadOnlySpan{float}, Span{float}, Span{float})"/> is one; a reference
/// check passes another (the reference's own values) to separate the float64 arithmetic from the trig's last bits.
/// </summary>
public delegate void SinCosKernel(ReadOnlySpan<float> x, Span<float> sin, Span<float> cos);

/// <summary>Rotation tables for positions [0, Length) and N neurons: Cos, Sin are [Length, N] float32.</summary>
public sealed record RopeTable(float[] Cos, float[] Sin, int Length, int N);
