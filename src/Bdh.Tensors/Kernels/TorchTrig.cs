namespace Bdh.Tensors.Kernels;

/// <summary>
/// float32 sin and cos with the bits of current PyTorch's CPU build (libtorch 2.10, the fixtures' 2.11; its CPU kernels
/// hand float cos/sin to MKL's vector math, most likely where these bits come from): equal to every one of the
/// 476,059 cos and sin values in ../shared/fixtures/torch-float32-trig.safetensors. RoPE tables built from these
/// match the reference bit for bit.
/// The algorithm: in double, reduce x by the nearest multiple of π (sin) or the nearest odd multiple of π/2 (cos)
/// to t in [−π/2, π/2], evaluate t·P(t²), flip the sign by the multiple, round to float once. P is the degree-4
/// polynomial with P(0) = 1 for which t·P(t²) has the least maximum relative error to sin t on [0, π/2] (a Remez
/// exchange: the error equioscillates at t ≈ 0.441, 0.927, 1.282, 1.498 and π/2 with 6.05e-9, a tenth of a float ulp).
/// That error, not the arithmetic, decides the last bit: it leaves 3–5% of the values 1 ulp from correctly rounded,
/// the same values as PyTorch's.
/// </summary>
/// <remarks>
/// Every step works on a <see cref="Vector{T}"/> of angles, widened to two vectors of doubles; each lane does the
/// same IEEE operations whatever the vector width. A generated token needs cos and sin of N angles (8192 on the
/// paper config) on one thread before its first layer.
/// </remarks>
public static class TorchTrig
{
    // t·(1 + s·(C1 + s·(C2 + s·(C3 + s·C4)))), s = t²: the relative minimax coefficients, rounded to double.
    private const double C1 = -0.16666659550428997, C2 = 0.008333066246118265, C3 = -0.00019809602904246866, C4 = 2.6057806421480516e-06;
    // π = PiHi + PiLo to 107 bits: x − m·π keeps its relative accuracy even when x is the float nearest to m·π.
    private const double PiHi = Math.PI, PiLo = 1.2246467991473532e-16, InvPi = 1 / Math.PI;
    private const double RoundingShift = 6755399441055744.0; // 1.5·2^52
    public const float MaxArgument = 125f;

    /// <summary>sin[i] and cos[i] of x[i] for every i; cos may be x itself (each vector is read before it is written).</summary>
    public static void SinCos(ReadOnlySpan<float> x, Span<float> sin, Span<float> cos)
    {
        if (sin.Length != x.Length || cos.Length != x.Length) throw new ArgumentException("x, sin and cos must have the same length");
        int width = Vector<float>.Count, i = 0;
        for (; i <= x.Length - width; i += width)
        {
            var d = new Vector<float>(x.Slice(i));
            Check(d);
            var (s, c) = SinCos(d);
            s.CopyTo(sin.Slice(i));
            c.CopyTo(cos.Slice(i));
        }
        if (i == x.Length) return;
        Span<float> last = stackalloc float[width]; // the final partial vector, padded with zeros
        int count = x.Length - i;
        x.Slice(i, count).CopyTo(last);
        var padded = new Vector<float>(last);
        Check(padded);
        var (lastSin, lastCos) = SinCos(padded);
        lastSin.CopyTo(last);
        last[..count].CopyTo(sin.Slice(i, count));
        lastCos.CopyTo(last);
        last[..count].CopyTo(cos.Slice(i, count));
    }

    public static float Sin(float d)
    {
        var x = new Vector<float>(d);
        Check(x);
        return SinCos(x).Sin[0];
    }

    public static float Cos(float d)
    {
        var x = new Vector<float>(d);
        Check(x);
        return SinCos(x).Cos[0];
    }

    private static void Check(Vector<float> d)
    {
        if (!Vector.LessThanAll(Vector.Abs(d), new Vector<float>(MaxArgument))) // false for a NaN too
            throw new ArgumentOutOfRangeException(nameof(d), $"an angle of {d} is not below {MaxArgument} in magnitude: outside the implemented range reduction");
    }

    private static (Vector<float> Sin, Vector<float> Cos) SinCos(Vector<float> x)
    {
        Vector.Widen(x, out var low, out var high);
        var (sinLow, cosLow) = SinCos(low);
        var (sinHigh, cosHigh) = SinCos(high);
        var sin = Vector.Narrow(sinLow, sinHigh); // the one rounding to float
        return (Vector.ConditionalSelect(Vector.Equals(x, Vector<float>.Zero), x, sin), Vector.Narrow(cosLow, cosHigh)); // sin keeps the sign of −0
    }

    private static (Vector<double> Sin, Vector<double> Cos) SinCos(Vector<double> x)
    {
        // Adding 1.5·2^52 rounds a double below 2^51 to an integer (ties to even) and leaves that integer's low bits at
        // the bottom of the sum's bits: the rounded value and, from its last bit, its parity, without a conversion.
        var turns = x * InvPi;
        var roundedK = turns + new Vector<double>(RoundingShift);                                     // k = nearest integer to x/π
        var roundedN = (turns - new Vector<double>(0.5)) + new Vector<double>(RoundingShift);        // n = ⌊x/π⌋
        var k = roundedK - new Vector<double>(RoundingShift);
        var n = roundedN - new Vector<double>(RoundingShift);
        // sin x = (−1)^k sin(x − kπ).
        var sin = Kernel(Reduce(x, k, PiHi, PiLo)) ^ SignOfParity(roundedK.As<double, long>());
        // cos x = −(−1)^n sin(x − (2n+1)π/2): (2n+1)π/2 is the odd multiple of π/2 nearest to x.
        var cos = Kernel(Reduce(x, 2 * n + Vector<double>.One, PiHi / 2, PiLo / 2)) ^ SignOfParity(roundedN.As<double, long>() + Vector<long>.One);
        return (sin, cos);
    }

    /// <summary>x − m·(hi + lo), each product and sum rounded once.</summary>
    private static Vector<double> Reduce(Vector<double> x, Vector<double> m, double hi, double lo) =>
        Vector.FusedMultiplyAdd(-m, new Vector<double>(lo), Vector.FusedMultiplyAdd(-m, new Vector<double>(hi), x));

    /// <summary>The sign bit of a double where the integer in the low bits of <paramref name="bits"/> is odd.</summary>
    private static Vector<double> SignOfParity(Vector<long> bits) => (bits << 63).As<long, double>();

    /// <summary>sin t for |t| ≤ π/2: t·P(t²), relative error at most 6.05e-9.</summary>
    private static Vector<double> Kernel(Vector<double> t)
    {
        var s = t * t;
        var p = Vector.FusedMultiplyAdd(s, new Vector<double>(C4), new Vector<double>(C3));
        p = Vector.FusedMultiplyAdd(s, p, new Vector<double>(C2));
        p = Vector.FusedMultiplyAdd(s, p, new Vector<double>(C1));
        return Vector.FusedMultiplyAdd(t * s, p, t);
    }
}
