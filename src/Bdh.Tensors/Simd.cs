using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Bdh.Tensors;

/// <summary>
/// One register of floats at a fixed width. A kernel is written once, as a method generic over
/// <typeparamref name="TSelf"/>, and runs at 512 bits (AVX-512), 256 (AVX2 + FMA) or 128 (ARM64 AdvSimd, x64
/// SSE): the JIT compiles one copy per width with every call here inlined, so the generic kernel costs nothing
/// over one written with intrinsics. <see cref="Simd.Widest"/> says which width a machine runs.
/// </summary>
internal unsafe interface IFloatVector<TSelf> where TSelf : struct, IFloatVector<TSelf>
{
    /// <summary>Floats per register.</summary>
    static abstract int Count { get; }
    /// <summary>Whether this width runs in hardware here (every method below is then one or two instructions).</summary>
    static abstract bool IsAccelerated { get; }
    static abstract TSelf Zero { get; }
    static abstract TSelf Create(float value);
    static abstract TSelf Load(float* source);
    static abstract void Store(TSelf value, float* destination);
    /// <summary>a·b + c, rounded once where the CPU has FMA (every AVX2 and ARM64 machine); else rounded twice.</summary>
    static abstract TSelf MultiplyAdd(TSelf a, TSelf b, TSelf c);
    static abstract float Sum(TSelf value);
    /// <summary>Count int8 values from <paramref name="source"/>, as floats.</summary>
    static abstract TSelf WidenInt8(sbyte* source);
    /// <summary>1 in the lanes where a &gt; b, else 0.</summary>
    static abstract TSelf GreaterThanAsOne(TSelf a, TSelf b);
    /// <summary>
    /// Writes offset + i for each lane i of <paramref name="value"/> that is not zero, in order, to found; returns how
    /// many. May write up to Count entries past the last one.
    /// </summary>
    static abstract int StoreNonZeroPositions(TSelf value, int offset, int* found);
}

/// <summary>The vector widths a kernel can run at, and the one this machine runs.</summary>
internal static unsafe class Simd
{
    /// <summary>The widest accelerated width in bits (512, 256, 128), or 0 where no vector is accelerated.</summary>
    public static int Widest { get; } =
        Float512.IsAccelerated ? 512 : Float256.IsAccelerated ? 256 : Float128.IsAccelerated ? 128 : 0;

    /// <summary>"512 256 128"-style list of the accelerated widths, for tests and reports.</summary>
    public static string Accelerated => string.Join(' ', new[] { (512, Float512.IsAccelerated), (256, Float256.IsAccelerated), (128, Float128.IsAccelerated) }
        .Where(w => w.Item2).Select(w => w.Item1.ToString())) is { Length: > 0 } s ? s : "none";

    /// <summary>Asks for the cache line at p to be brought into every cache level (x64; a no-op elsewhere).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Prefetch(void* p)
    {
        if (Sse.IsSupported) Sse.Prefetch0(p);
    }

    /// <summary>Asks for the cache line at p without keeping it in the outer caches: data read once (x64; a no-op elsewhere).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void PrefetchNonTemporal(void* p)
    {
        if (Sse.IsSupported) Sse.PrefetchNonTemporal(p);
    }

    /// <summary>Positions of set bits of mask, plus offset, to found: the compaction for widths without a compress instruction.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static int StoreSetBits(uint mask, int offset, int* found)
    {
        int count = 0;
        for (; mask != 0; mask &= mask - 1) found[count++] = offset + BitOperations.TrailingZeroCount(mask);
        return count;
    }
}

/// <summary>16 floats: AVX-512.</summary>
internal readonly unsafe struct Float512(Vector512<float> v) : IFloatVector<Float512>
{
    private readonly Vector512<float> _v = v;
    public static int Count => 16;
    public static bool IsAccelerated => Vector512.IsHardwareAccelerated && Avx512F.IsSupported;
    public static Float512 Zero => default;
    public static Float512 Create(float value) => new(Vector512.Create(value));
    public static Float512 Load(float* source) => new(Vector512.Load(source));
    public static void Store(Float512 value, float* destination) => value._v.Store(destination);
    public static Float512 MultiplyAdd(Float512 a, Float512 b, Float512 c) => new(Vector512.MultiplyAddEstimate(a._v, b._v, c._v));
    public static float Sum(Float512 value) => Vector512.Sum(value._v);
    public static Float512 WidenInt8(sbyte* source) => new(Avx512F.ConvertToVector512Single(Avx512F.ConvertToVector512Int32(Vector128.Load(source))));
    public static Float512 GreaterThanAsOne(Float512 a, Float512 b) => new(Vector512.GreaterThan(a._v, b._v) & Vector512<float>.One);

    /// <summary>AVX-512 compresses the positions in one instruction, with no branch per lane.</summary>
    public static int StoreNonZeroPositions(Float512 value, int offset, int* found)
    {
        var keep = ~Vector512.Equals(value._v, Vector512<float>.Zero).AsInt32();
        Avx512F.Compress(Vector512<int>.Zero, keep, Vector512<int>.Indices + Vector512.Create(offset)).Store(found);
        return BitOperations.PopCount(keep.ExtractMostSignificantBits());
    }
}

/// <summary>8 floats: AVX2 with FMA.</summary>
internal readonly unsafe struct Float256(Vector256<float> v) : IFloatVector<Float256>
{
    private readonly Vector256<float> _v = v;
    public static int Count => 8;
    public static bool IsAccelerated => Vector256.IsHardwareAccelerated && Avx2.IsSupported;
    public static Float256 Zero => default;
    public static Float256 Create(float value) => new(Vector256.Create(value));
    public static Float256 Load(float* source) => new(Vector256.Load(source));
    public static void Store(Float256 value, float* destination) => value._v.Store(destination);
    public static Float256 MultiplyAdd(Float256 a, Float256 b, Float256 c) => new(Vector256.MultiplyAddEstimate(a._v, b._v, c._v));
    public static float Sum(Float256 value) => Vector256.Sum(value._v);
    public static Float256 WidenInt8(sbyte* source) => new(Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(source)));
    public static Float256 GreaterThanAsOne(Float256 a, Float256 b) => new(Vector256.GreaterThan(a._v, b._v) & Vector256<float>.One);
    public static int StoreNonZeroPositions(Float256 value, int offset, int* found) =>
        Simd.StoreSetBits(~Vector256.Equals(value._v, Vector256<float>.Zero).ExtractMostSignificantBits() & 0xFF, offset, found);
}

/// <summary>4 floats: ARM64 AdvSimd, or x64 without AVX2.</summary>
internal readonly unsafe struct Float128(Vector128<float> v) : IFloatVector<Float128>
{
    private readonly Vector128<float> _v = v;
    public static int Count => 4;
    public static bool IsAccelerated => Vector128.IsHardwareAccelerated;
    public static Float128 Zero => default;
    public static Float128 Create(float value) => new(Vector128.Create(value));
    public static Float128 Load(float* source) => new(Vector128.Load(source));
    public static void Store(Float128 value, float* destination) => value._v.Store(destination);
    public static Float128 MultiplyAdd(Float128 a, Float128 b, Float128 c) => new(Vector128.MultiplyAddEstimate(a._v, b._v, c._v));
    public static float Sum(Float128 value) => Vector128.Sum(value._v);
    public static Float128 WidenInt8(sbyte* source) =>
        new(Vector128.ConvertToSingle(Vector128.WidenLower(Vector128.WidenLower(Vector128.CreateScalarUnsafe(*(int*)source).AsSByte()))));
    public static Float128 GreaterThanAsOne(Float128 a, Float128 b) => new(Vector128.GreaterThan(a._v, b._v) & Vector128<float>.One);
    public static int StoreNonZeroPositions(Float128 value, int offset, int* found) =>
        Simd.StoreSetBits(~Vector128.Equals(value._v, Vector128<float>.Zero).ExtractMostSignificantBits() & 0xF, offset, found);
}
