namespace Bdh.Tensors.Kernels;

/// <summary>
/// float32 sin and cos computed as PyTorch computes them on a CPU: its vectorized kernels call
/// SLEEF's 1-ULP functions (Sleef_sinf16_u10 / Sleef_cosf16_u10), which differ from the correctly
/// rounded result in about one value in ten. RoPE tables built from these match the reference bit for
/// bit, which float64 parity (1e-9) needs. Only the |x| &lt; 125 range reduction is implemented: RoPE
/// angles lie in [0, 2π). The algorithm: reduce x by a multiple of π in double-float arithmetic
/// (a float pair hi + lo), evaluate an odd polynomial, fix the sign from the quadrant.
/// </summary>
/// <remarks>
/// Every step works on a <see cref="Vector{T}"/> of angles, as SLEEF does, and rounds each lane exactly as the
/// scalar steps would: a generated token needs cos and sin of N angles (8192 on the paper config) on one thread
/// before its first layer, and one angle at a time that took ~0.5 ms of a ~10 ms token.
/// </remarks>
public static class TorchTrig
{
    private const float PiA = 3.1414794921875f, PiB = 0.00011315941810607910156f, PiC = 1.9841872589410058936e-09f;
    private const float InvPi = (float)(1 / Math.PI);
    public const float MaxArgument = 125f;

    /// <summary>sin[i] and cos[i] of x[i] for every i; cos may be x itself (each vector is read before it is written).</summary>
    public static void SinCos(ReadOnlySpan<float> x, Span<float> sin, Span<float> cos)
    {
        if (sin.Length != x.Length || cos.Length != x.Length) throw new ArgumentException("x, sin and cos must have the same length");
        int width = Vector<float>.Count;
        Span<float> last = stackalloc float[width]; // the final partial vector, padded with zeros
        for (int i = 0; i < x.Length; i += width)
        {
            int count = Math.Min(width, x.Length - i);
            last.Clear();
            x.Slice(i, count).CopyTo(last);
            var d = new Vector<float>(last);
            Check(d);
            Sin(d).CopyTo(last);
            last[..count].CopyTo(sin.Slice(i, count));
            Cos(d).CopyTo(last);
            last[..count].CopyTo(cos.Slice(i, count));
        }
    }

    public static float Sin(float d)
    {
        var x = new Vector<float>(d);
        Check(x);
        return Sin(x)[0];
    }

    public static float Cos(float d)
    {
        var x = new Vector<float>(d);
        Check(x);
        return Cos(x)[0];
    }

    private static void Check(Vector<float> d)
    {
        if (!Vector.LessThanAll(Vector.Abs(d), new Vector<float>(MaxArgument))) // false for a NaN too
            throw new ArgumentOutOfRangeException(nameof(d), $"an angle of {d} is not below {MaxArgument} in magnitude: outside the implemented range reduction");
    }

    private static Vector<float> Sin(Vector<float> d)
    {
        var u = Vector.Round(d * InvPi);          // nearest multiple of π (ties to even)
        var q = Vector.ConvertToInt32(u);
        var v = Vector.FusedMultiplyAdd(u, new Vector<float>(-PiA), d);
        var s = Add2(v, u * -PiB);
        s = Add(s, u * -PiC);
        var r = Kernel(s);
        r = NegateWhere(Vector.Equals(q & Vector<int>.One, Vector<int>.One), r); // odd multiple: sin(x) = −sin(x − qπ)
        return Vector.ConditionalSelect(Vector.Equals(d, Vector<float>.Zero), d, r); // keeps the sign of −0
    }

    private static Vector<float> Cos(Vector<float> d)
    {
        // Odd multiple of π/2 nearest to d: cos(d) = ±sin(d − dq·π/2).
        var dq = Vector.FusedMultiplyAdd(Vector.Round(Vector.FusedMultiplyAdd(d, new Vector<float>(InvPi), new Vector<float>(-0.5f))),
            new Vector<float>(2f), Vector<float>.One);
        var q = Vector.ConvertToInt32(dq);
        var s = Add2(d, dq * (-PiA * 0.5f));
        s = Add2(s, dq * (-PiB * 0.5f));
        s = Add2(s, dq * (-PiC * 0.5f));
        var r = Kernel(s);
        return NegateWhere(Vector.Equals(q & new Vector<int>(2), Vector<int>.Zero), r);
    }

    /// <summary>−x in the lanes where mask is set, x elsewhere.</summary>
    private static Vector<float> NegateWhere(Vector<int> mask, Vector<float> x) => Vector.ConditionalSelect(mask, -x, x);

    /// <summary>sin of the reduced argument t = (hi, lo), |t| ≤ π/2, to about 1 ULP.</summary>
    private static Vector<float> Kernel((Vector<float> Hi, Vector<float> Lo) t)
    {
        var s = Square(t);
        var u = new Vector<float>(2.6083159809786593541503e-06f);
        u = Vector.FusedMultiplyAdd(u, s.Hi, new Vector<float>(-0.0001981069071916863322258f));
        u = Vector.FusedMultiplyAdd(u, s.Hi, new Vector<float>(0.00833307858556509017944336f));
        var x = Add(Vector<float>.One, Mul(Add(new Vector<float>(-0.166666597127914428710938f), u * s.Hi), s));
        return MulToFloat(t, x);
    }

    // Double-float arithmetic: a value is hi + lo with |lo| ≤ ulp(hi)/2. FMA recovers exact product errors.

    /// <summary>x + y, exact as a pair, for any magnitudes.</summary>
    private static (Vector<float> Hi, Vector<float> Lo) Add2(Vector<float> x, Vector<float> y)
    {
        var s = x + y;
        var v = s - x;
        return (s, (x - (s - v)) + (y - v));
    }

    private static (Vector<float> Hi, Vector<float> Lo) Add2((Vector<float> Hi, Vector<float> Lo) x, Vector<float> y)
    {
        var s = x.Hi + y;
        var v = s - x.Hi;
        var t = (x.Hi - (s - v)) + (y - v);
        return (s, t + x.Lo);
    }

    /// <summary>x + y where |x| ≥ |y|.</summary>
    private static (Vector<float> Hi, Vector<float> Lo) Add((Vector<float> Hi, Vector<float> Lo) x, Vector<float> y)
    {
        var s = x.Hi + y;
        return (s, (x.Hi - s) + y + x.Lo);
    }

    private static (Vector<float> Hi, Vector<float> Lo) Add(Vector<float> x, Vector<float> y)
    {
        var s = x + y;
        return (s, (x - s) + y);
    }

    private static (Vector<float> Hi, Vector<float> Lo) Add(Vector<float> x, (Vector<float> Hi, Vector<float> Lo) y)
    {
        var s = x + y.Hi;
        return (s, (x - s) + y.Hi + y.Lo);
    }

    private static (Vector<float> Hi, Vector<float> Lo) Square((Vector<float> Hi, Vector<float> Lo) x)
    {
        var s = x.Hi * x.Hi;
        return (s, Vector.FusedMultiplyAdd(x.Hi + x.Hi, x.Lo, Vector.FusedMultiplyAdd(x.Hi, x.Hi, -s)));
    }

    private static (Vector<float> Hi, Vector<float> Lo) Mul((Vector<float> Hi, Vector<float> Lo) x, (Vector<float> Hi, Vector<float> Lo) y)
    {
        var s = x.Hi * y.Hi;
        return (s, Vector.FusedMultiplyAdd(x.Hi, y.Lo, Vector.FusedMultiplyAdd(x.Lo, y.Hi, Vector.FusedMultiplyAdd(x.Hi, y.Hi, -s))));
    }

    private static Vector<float> MulToFloat((Vector<float> Hi, Vector<float> Lo) x, (Vector<float> Hi, Vector<float> Lo) y) =>
        Vector.FusedMultiplyAdd(x.Hi, y.Hi, Vector.FusedMultiplyAdd(x.Lo, y.Hi, x.Hi * y.Lo));
}
