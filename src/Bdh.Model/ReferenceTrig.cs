using Bdh.Tensors.Kernels;

namespace Bdh.Model;

/// <summary>
/// The reference's own float32 cos and sin of rope phases, read from a file such as
/// ../shared/fixtures/torch-float32-trig.safetensors (tensors angle, cos, sin [count], sorted by the angle's bits),
/// and looked up by the angle's exact bits. PyTorch's float32 trig differs from ours in the last bit of a few
/// percent of the angles (its CPU build calls MKL), so a float64 model built on these values checks the
/// arithmetic alone. A check, never the model's trig: an angle that is not in the file is an error.
/// </summary>
public sealed class ReferenceTrig
{
    public const string FileName = "torch-float32-trig.safetensors";

    public string Path { get; }
    private readonly int[] _angleBits; // ascending: phases are ≥ 0, so their bits sort as the values do
    private readonly float[] _angles, _cos, _sin;

    /// <summary>Every angle in the file, ascending.</summary>
    public ReadOnlySpan<float> Angles => _angles;

    private ReferenceTrig(string path, float[] angles, float[] cos, float[] sin)
    {
        Path = path;
        _angles = angles;
        _cos = cos;
        _sin = sin;
        _angleBits = Array.ConvertAll(angles, BitConverter.SingleToInt32Bits);
        for (int i = 1; i < _angleBits.Length; i++)
            if (_angleBits[i] <= _angleBits[i - 1])
                throw new SafetensorsException($"{path}: 'angle' is not sorted by its bits (value {i}, {angles[i]:R}, after {angles[i - 1]:R})");
    }

    public static ReferenceTrig Read(string path)
    {
        var file = SafetensorsFile.Read(path);
        float[] Vector(string name)
        {
            using var t = file.ReadTensor<float>(name);
            if (t.Shape.Length != 1) throw new SafetensorsException($"{path}: '{name}' is {Tensor<float>.Format(t.Shape)}, not one vector");
            return t.Span.ToArray();
        }
        float[] angles = Vector("angle"), cos = Vector("cos"), sin = Vector("sin");
        if (cos.Length != angles.Length || sin.Length != angles.Length)
            throw new SafetensorsException($"{path}: 'angle', 'cos' and 'sin' have {angles.Length}, {cos.Length} and {sin.Length} values");
        return new ReferenceTrig(path, angles, cos, sin);
    }

    /// <summary>A <see cref="SinCosKernel"/>: sin[i], cos[i] of x[i] from the file; cos may be x itself.</summary>
    public void SinCos(ReadOnlySpan<float> x, Span<float> sin, Span<float> cos)
    {
        if (sin.Length != x.Length || cos.Length != x.Length) throw new ArgumentException("x, sin and cos must have the same length");
        for (int i = 0; i < x.Length; i++)
        {
            int k = IndexOf(x[i]);
            sin[i] = _sin[k];
            cos[i] = _cos[k];
        }
    }

    private int IndexOf(float angle)
    {
        int k = Array.BinarySearch(_angleBits, BitConverter.SingleToInt32Bits(angle));
        return k >= 0 ? k
            : throw new SafetensorsException($"{Path}: no rope phase {angle:R} (bits 0x{BitConverter.SingleToInt32Bits(angle):X8}); the file must hold every phase the fixture uses");
    }

    /// <summary>How <paramref name="ours"/> differs from the file on the given angles (each angle must be in the file).</summary>
    public TrigComparison Compare(ReadOnlySpan<float> angles, SinCosKernel ours)
    {
        var (ourSin, ourCos, sin, cos) = (new float[angles.Length], new float[angles.Length], new float[angles.Length], new float[angles.Length]);
        SinCos(angles, sin, cos);
        ours(angles, ourSin, ourCos);
        var (cosDiffer, cosUlps) = Differences(ourCos, cos);
        var (sinDiffer, sinUlps) = Differences(ourSin, sin);
        return new TrigComparison(System.IO.Path.GetFileName(Path), angles.Length, cosDiffer, cosUlps, sinDiffer, sinUlps);
    }

    private static (int Count, long MaxUlps) Differences(float[] ours, float[] reference)
    {
        int count = 0;
        long max = 0;
        for (int i = 0; i < ours.Length; i++)
        {
            long ulps = Math.Abs(OrderedBits(ours[i]) - OrderedBits(reference[i]));
            if (ulps != 0) count++;
            max = Math.Max(max, ulps);
        }
        return (count, max);
    }

    /// <summary>The float's place on the line of all floats: neighbours differ by 1, and −0 and +0 are both 0.</summary>
    internal static long OrderedBits(float x)
    {
        int bits = BitConverter.SingleToInt32Bits(x);
        return bits >= 0 ? bits : -(long)(bits & int.MaxValue);
    }
}

/// <summary>How many of <see cref="Values"/> cos and sin values differ from a reference trig file's, and by how many ulps at most.</summary>
public sealed record TrigComparison(string File, int Values, int CosDiffer, long CosMaxUlps, int SinDiffer, long SinMaxUlps)
{
    public override string ToString() =>
        $"our rope cos/sin against {File}, {Values} values: cos differs on {CosDiffer} (max {CosMaxUlps} ulp), sin on {SinDiffer} (max {SinMaxUlps} ulp)";
}
