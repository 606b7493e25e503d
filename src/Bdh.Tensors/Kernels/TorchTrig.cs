namespace Bdh.Tensors.Kernels;

/// <summary>
/// float32 sin and cos computed as PyTorch computes them on a CPU: its vectorized kernels call
/// SLEEF's 1-ULP functions (Sleef_sinf16_u10 / Sleef_cosf16_u10), which differ from the correctly
/// rounded result in about one value in ten. RoPE tables built from these match the reference bit for
/// bit, which float64 parity (1e-9) needs. Only the |x| &lt; 125 range reduction is implemented: RoPE
/// angles lie in [0, 2π). The algorithm: reduce x by a multiple of π in double-float arithmetic
/// (a float pair hi + lo), evaluate an odd polynomial, fix the sign from the quadrant.
/// </summary>
public static class TorchTrig
{
    private const float PiA = 3.1414794921875f, PiB = 0.00011315941810607910156f, PiC = 1.9841872589410058936e-09f;
    private const float InvPi = (float)(1 / Math.PI);
    public const float MaxArgument = 125f;

    public static float Sin(float d)
    {
        Check(d);
        float u = MathF.Round(d * InvPi);           // nearest multiple of π (ties to even)
        int q = (int)u;
        float v = MathF.FusedMultiplyAdd(u, -PiA, d);
        var s = Add2(v, u * -PiB);
        s = Add(s, u * -PiC);
        float r = Kernel(s);
        if ((q & 1) == 1) r = -r;
        return d == 0 && float.IsNegative(d) ? d : r;
    }

    public static float Cos(float d)
    {
        Check(d);
        // Odd multiple of π/2 nearest to d: cos(d) = ±sin(d − dq·π/2).
        float dq = MathF.FusedMultiplyAdd(MathF.Round(MathF.FusedMultiplyAdd(d, InvPi, -0.5f)), 2, 1);
        int q = (int)dq;
        var s = Add2(d, dq * (-PiA * 0.5f));
        s = Add2(s, dq * (-PiB * 0.5f));
        s = Add2(s, dq * (-PiC * 0.5f));
        float r = Kernel(s);
        return (q & 2) == 0 ? -r : r;
    }

    private static void Check(float d)
    {
        if (!(MathF.Abs(d) < MaxArgument)) throw new ArgumentOutOfRangeException(nameof(d), $"|{d}| >= {MaxArgument}: outside the implemented range reduction");
    }

    /// <summary>sin of the reduced argument t = (hi, lo), |t| ≤ π/2, to about 1 ULP.</summary>
    private static float Kernel((float Hi, float Lo) t)
    {
        var s = Square(t);
        float u = 2.6083159809786593541503e-06f;
        u = MathF.FusedMultiplyAdd(u, s.Hi, -0.0001981069071916863322258f);
        u = MathF.FusedMultiplyAdd(u, s.Hi, 0.00833307858556509017944336f);
        var x = Add(1f, Mul(Add(-0.166666597127914428710938f, u * s.Hi), s));
        return MulToFloat(t, x);
    }

    // Double-float arithmetic: a value is hi + lo with |lo| ≤ ulp(hi)/2. FMA recovers exact product errors.

    /// <summary>x + y, exact as a pair, for any magnitudes.</summary>
    private static (float Hi, float Lo) Add2(float x, float y)
    {
        float s = x + y, v = s - x;
        return (s, (x - (s - v)) + (y - v));
    }

    private static (float Hi, float Lo) Add2((float Hi, float Lo) x, float y)
    {
        float s = x.Hi + y, v = s - x.Hi;
        float t = (x.Hi - (s - v)) + (y - v);
        return (s, t + x.Lo);
    }

    /// <summary>x + y where |x| ≥ |y|.</summary>
    private static (float Hi, float Lo) Add((float Hi, float Lo) x, float y)
    {
        float s = x.Hi + y;
        return (s, (x.Hi - s) + y + x.Lo);
    }

    private static (float Hi, float Lo) Add(float x, float y)
    {
        float s = x + y;
        return (s, (x - s) + y);
    }

    private static (float Hi, float Lo) Add(float x, (float Hi, float Lo) y)
    {
        float s = x + y.Hi;
        return (s, (x - s) + y.Hi + y.Lo);
    }

    private static (float Hi, float Lo) Square((float Hi, float Lo) x)
    {
        float s = x.Hi * x.Hi;
        return (s, MathF.FusedMultiplyAdd(x.Hi + x.Hi, x.Lo, MathF.FusedMultiplyAdd(x.Hi, x.Hi, -s)));
    }

    private static (float Hi, float Lo) Mul((float Hi, float Lo) x, (float Hi, float Lo) y)
    {
        float s = x.Hi * y.Hi;
        return (s, MathF.FusedMultiplyAdd(x.Hi, y.Lo, MathF.FusedMultiplyAdd(x.Lo, y.Hi, MathF.FusedMultiplyAdd(x.Hi, y.Hi, -s))));
    }

    private static float MulToFloat((float Hi, float Lo) x, (float Hi, float Lo) y) =>
        MathF.FusedMultiplyAdd(x.Hi, y.Hi, MathF.FusedMultiplyAdd(x.Lo, y.Hi, x.Hi * y.Lo));
}
