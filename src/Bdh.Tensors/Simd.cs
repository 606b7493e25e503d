using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;
using System.Runtime.Intrinsics.X86;

namespace Bdh.Tensors;

/// <summary>
/// The operations of a register of floats at one width, on its vector type <typeparamref name="V"/>
/// (Vector512&lt;float&gt; etc.). A kernel is written once, as a method generic over a width W and its V, and runs at
/// 512 bits (AVX-512), 256 (AVX2 + FMA) or 128 (ARM64 AdvSimd, x64 SSE): the JIT compiles one copy per width with every
/// call here inlined, so the generic kernel compiles to what one written with that width's intrinsics would.
/// (The kernels hold V itself, not a struct around it: the JIT folds loads into FMAs on raw vectors only.)
/// <see cref="Simd.Widest"/> says which width a machine runs.
/// </summary>
internal unsafe interface IFloatVector<V> where V : struct
{
    /// <summary>Floats per register.</summary>
    static abstract int Count { get; }
    /// <summary>Whether this width runs in hardware here (every method below is then one or two instructions).</summary>
    static abstract bool IsAccelerated { get; }
    static abstract V Create(float value);
    /// <summary>The float at source in every lane: one load, with no shuffle (x64 without AVX2 would otherwise spend a
    /// shuffle, on a floating-point port the GEMM's multiplies and adds need, on every element of A it broadcasts).</summary>
    static abstract V Broadcast(float* source);
    static abstract V Load(float* source);
    static abstract void Store(V value, float* destination);
    /// <summary>a·b + c, rounded once where the CPU has FMA (every AVX2 and ARM64 machine); else rounded twice.</summary>
    static abstract V MultiplyAdd(V a, V b, V c);
    static abstract V Add(V a, V b);
    /// <summary>a·b rounded on its own (no fusing with a later add: kernels that match the reference's rounding use it).</summary>
    static abstract V Multiply(V a, V b);
    static abstract V And(V a, V b);
    /// <summary>The larger of a and b lane by lane, as IEEE 754 maximum (NaN if either is; +0 over −0), like TensorPrimitives.Max.</summary>
    static abstract V Max(V a, V b);
    /// <summary>All bits set in the lanes where a &gt; b, else 0: a mask for <see cref="And"/>.</summary>
    static abstract V GreaterThan(V a, V b);
    /// <summary>(v[1], v[0], v[3], v[2], …): each pair of lanes swapped, as RoPE pairs neurons.</summary>
    static abstract V SwapPairs(V v);
    /// <summary>Bit i set where lane i is not zero.</summary>
    static abstract uint NonZeroBits(V value);
    /// <summary>
    /// All bits set in lane i where the dropout hash of element <paramref name="first"/> + i keeps it
    /// (Elementwise.Dropout says how); 0 where it drops it.
    /// </summary>
    static abstract V DropoutKeeps(uint first, uint low, uint high, uint threshold);
    /// <summary>As <see cref="DropoutKeeps"/> for elements offset + elements[i], lane by lane (Count of them).</summary>
    static abstract V DropoutKeepsAt(int* elements, uint offset, uint low, uint high, uint threshold);
    static abstract float Sum(V value);
    /// <summary>
    /// sums[i] = Sum(ci) for eight vectors at once: their lanes added in a tree of shuffles that ends with the eight sums
    /// side by side (3–4 instructions a vector, where eight Sum calls spend 8–10 each, most of them shuffles).
    /// </summary>
    static abstract void StoreSums(V c0, V c1, V c2, V c3, V c4, V c5, V c6, V c7, float* sums);
    /// <summary>
    /// Rows of C in a GEMM micro-kernel tile of two vectors per row: as many as leave room, beside their 2·rows
    /// accumulators, for the two vectors of B and a broadcast of A.
    /// </summary>
    static abstract int GemmRows { get; }
    /// <summary>Count int8 values from <paramref name="source"/>, as floats.</summary>
    static abstract V WidenInt8(sbyte* source);
    /// <summary>
    /// Writes offset + i for each lane i of <paramref name="value"/> that is not zero, in order, to found; returns how
    /// many. May write up to Count entries past the last one.
    /// </summary>
    static abstract int StoreNonZeroPositions(V value, int offset, int* found);
}

/// <summary>The vector widths a kernel can run at, and the one this machine runs.</summary>
public static unsafe class Simd
{
    /// <summary>The width every kernel runs at, in bits: the widest accelerated one (512, 256, 128), or 0 where none is.</summary>
    public static int Widest { get; } =
        Float512.IsAccelerated ? 512 : Float256.IsAccelerated ? 256 : Float128.IsAccelerated ? 128 : 0;

    /// <summary>"512 256 128"-style list of the accelerated widths, for tests and reports.</summary>
    public static string Accelerated => string.Join(' ', new[] { (512, Float512.IsAccelerated), (256, Float256.IsAccelerated), (128, Float128.IsAccelerated) }
        .Where(w => w.Item2).Select(w => w.Item1.ToString())) is { Length: > 0 } s ? s : "none";

    /// <summary>Asks for the cache line at p to be brought into every cache level (x64; a no-op elsewhere).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void Prefetch(void* p)
    {
        if (Sse.IsSupported) Sse.Prefetch0(p);
    }

    /// <summary>
    /// Asks for every cache line of the floats [start, start + count) with <see cref="Prefetch"/>: a run read soon. One a
    /// 16 floats, and the last float's: a run need not start on a line.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void PrefetchRun(float* start, nint count)
    {
        for (float* line = start, end = start + count; line < end; line += 16) Prefetch(line);
        if (count > 0) Prefetch(start + count - 1);
    }

    /// <summary>Asks for the cache line at p without keeping it in the outer caches: data read once (x64; a no-op elsewhere).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void PrefetchNonTemporal(void* p)
    {
        if (Sse.IsSupported) Sse.PrefetchNonTemporal(p);
    }

    /// <summary>
    /// How many vector registers the JIT allocates: 32 on ARM64 and where AVX-512 is on (its encoding reaches xmm16–31 and
    /// ymm16–31 too, whatever width a kernel runs at), else 16.
    /// </summary>
    internal static int VectorRegisters => AdvSimd.Arm64.IsSupported || Avx512F.VL.IsSupported ? 32 : 16;

    /// <summary>Whether <see cref="Transpose4x4"/> runs here: x64 (SSE) and ARM64 have the two-register shuffles it needs.</summary>
    internal static bool CanTranspose4x4 => Sse.IsSupported || AdvSimd.Arm64.IsSupported;

    /// <summary>
    /// dst[i·dstStride + j] (+)= src[j·srcStride + i] for a 4×4 block of floats: four loads, eight shuffles, four stores
    /// (only where <see cref="CanTranspose4x4"/>).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void Transpose4x4(float* src, nint srcStride, float* dst, nint dstStride, bool accumulate = false)
    {
        Vector128<float> r0 = Vector128.Load(src), r1 = Vector128.Load(src + srcStride),
            r2 = Vector128.Load(src + 2 * srcStride), r3 = Vector128.Load(src + 3 * srcStride);
        Vector128<float> o0, o1, o2, o3;
        if (Sse.IsSupported) // interleave rows pairwise (a0 b0 a1 b1 …), then take 64-bit halves
        {
            Vector128<float> t0 = Sse.UnpackLow(r0, r1), t1 = Sse.UnpackLow(r2, r3), t2 = Sse.UnpackHigh(r0, r1), t3 = Sse.UnpackHigh(r2, r3);
            (o0, o1, o2, o3) = (Sse.MoveLowToHigh(t0, t1), Sse.MoveHighToLow(t1, t0), Sse.MoveLowToHigh(t2, t3), Sse.MoveHighToLow(t3, t2));
        }
        else // the same on ARM64: zip 32-bit lanes, then 64-bit ones
        {
            Vector128<ulong> t0 = AdvSimd.Arm64.ZipLow(r0, r1).AsUInt64(), t1 = AdvSimd.Arm64.ZipLow(r2, r3).AsUInt64(),
                t2 = AdvSimd.Arm64.ZipHigh(r0, r1).AsUInt64(), t3 = AdvSimd.Arm64.ZipHigh(r2, r3).AsUInt64();
            (o0, o1, o2, o3) = (AdvSimd.Arm64.ZipLow(t0, t1).AsSingle(), AdvSimd.Arm64.ZipHigh(t0, t1).AsSingle(),
                AdvSimd.Arm64.ZipLow(t2, t3).AsSingle(), AdvSimd.Arm64.ZipHigh(t2, t3).AsSingle());
        }
        if (accumulate)
            (o0, o1, o2, o3) = (o0 + Vector128.Load(dst), o1 + Vector128.Load(dst + dstStride),
                o2 + Vector128.Load(dst + 2 * dstStride), o3 + Vector128.Load(dst + 3 * dstStride));
        o0.Store(dst);
        o1.Store(dst + dstStride);
        o2.Store(dst + 2 * dstStride);
        o3.Store(dst + 3 * dstStride);
    }

    /// <summary>
    /// Positions of the set bits of a mask of <paramref name="lanes"/> bits (4 or 8), plus offset, to found, in order (up
    /// to 8 entries past the last written): the compaction for widths without a compress instruction, one store of the
    /// mask's row of <see cref="SetLanes"/> widened to ints (AVX2: one vpmovzxbd from the table; 8 lanes run only where AVX2
    /// does, the portable widening serves the table's test elsewhere). No branch depends on the data: a loop over the set
    /// bits mispredicted its exit about once a register.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static int StoreSetBits(uint mask, int lanes, int offset, int* found)
    {
        byte* row = SetLanes + 8 * mask;
        if (lanes == 8)
            ((Avx2.IsSupported ? Avx2.ConvertToVector256Int32(row) : Vector256.WidenLower(Vector256.WidenLower(Vector256.CreateScalarUnsafe(*(ulong*)row).AsByte())).AsInt32())
                + Vector256.Create(offset)).Store(found);
        else (Vector128.WidenLower(Vector128.WidenLower(Vector128.CreateScalarUnsafe(*(uint*)row).AsByte())).AsInt32() + Vector128.Create(offset)).Store(found);
        return BitOperations.PopCount(mask);
    }

    /// <summary>
    /// Row m, 8 bytes: the lanes of the set bits of the 8-bit mask m, in order, then zeros (a 4-bit mask's row is the
    /// first four). 2 KB, allocated once for the process and never moved, so kernels read it by address.
    /// </summary>
    private static readonly byte* SetLanes = BuildSetLanes();

    private static byte* BuildSetLanes()
    {
        byte* table = (byte*)NativeMemory.AllocZeroed(256 * 8);
        for (int mask = 0; mask < 256; mask++)
        {
            int count = 0;
            for (int lane = 0; lane < 8; lane++)
                if ((mask >> lane & 1) != 0) table[8 * mask + count++] = (byte)lane;
        }
        return table;
    }
}

/// <summary>16 floats: AVX-512.</summary>
internal readonly unsafe struct Float512 : IFloatVector<Vector512<float>>
{
    public static int Count => 16;
    public static bool IsAccelerated => Vector512.IsHardwareAccelerated && Avx512F.IsSupported;
    public static Vector512<float> Create(float value) => Vector512.Create(value);
    public static Vector512<float> Broadcast(float* source) => Vector512.Create(*source);
    public static Vector512<float> Load(float* source) => Vector512.Load(source);
    public static void Store(Vector512<float> value, float* destination) => value.Store(destination);
    public static Vector512<float> MultiplyAdd(Vector512<float> a, Vector512<float> b, Vector512<float> c) => Vector512.FusedMultiplyAdd(a, b, c);
    public static Vector512<float> Add(Vector512<float> a, Vector512<float> b) => a + b;
    public static Vector512<float> Multiply(Vector512<float> a, Vector512<float> b) => a * b;
    public static Vector512<float> And(Vector512<float> a, Vector512<float> b) => a & b;
    public static Vector512<float> Max(Vector512<float> a, Vector512<float> b) => Vector512.Max(a, b);
    public static Vector512<float> GreaterThan(Vector512<float> a, Vector512<float> b) => Vector512.GreaterThan(a, b);
    public static Vector512<float> SwapPairs(Vector512<float> v) => (Vector512.ShiftLeft(v.AsUInt64(), 32) | Vector512.ShiftRightLogical(v.AsUInt64(), 32)).AsSingle();
    public static uint NonZeroBits(Vector512<float> value) => (uint)~Vector512.Equals(value, Vector512<float>.Zero).ExtractMostSignificantBits() & 0xFFFF;
    public static Vector512<float> DropoutKeeps(uint first, uint low, uint high, uint threshold) =>
        Keeps(Vector512.Create(first) + Vector512<uint>.Indices, low, high, threshold);
    public static Vector512<float> DropoutKeepsAt(int* elements, uint offset, uint low, uint high, uint threshold) =>
        Keeps(Vector512.Load((uint*)elements) + Vector512.Create(offset), low, high, threshold);
    private static Vector512<float> Keeps(Vector512<uint> elements, uint low, uint high, uint threshold)
    {
        var hash = Mix(Mix(elements + Vector512.Create(low)) ^ Vector512.Create(high));
        return Vector512.GreaterThanOrEqual(hash, Vector512.Create(threshold)).AsSingle();

        static Vector512<uint> Mix(Vector512<uint> x) // Elementwise.Mix lane by lane
        {
            x ^= x >> 16; x *= Kernels.Elementwise.HashMultiplier1;
            x ^= x >> 15; x *= Kernels.Elementwise.HashMultiplier2;
            return x ^ (x >> 16);
        }
    }
    public static float Sum(Vector512<float> value) => Vector512.Sum(value);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] // called at the end of a kernel, whose accumulators are its arguments
    public static void StoreSums(Vector512<float> c0, Vector512<float> c1, Vector512<float> c2, Vector512<float> c3, Vector512<float> c4,
        Vector512<float> c5, Vector512<float> c6, Vector512<float> c7, float* sums)
    {
        // Four levels, each adding two vectors' lanes in pairs: 256-bit halves, 128-bit quarters, 64-bit pairs, lanes.
        // Eight inputs fill half of the last level, which adds a vector's lanes to its own: its 128-bit quarters then hold
        // the sums of c0 and c2, c4 and c6, c1 and c3, c5 and c7 (each twice), and one permute puts the eight in order.
        var sums2 = Pairs(Quarters(Halves(c0, c4), Halves(c1, c5)), Quarters(Halves(c2, c6), Halves(c3, c7)));
        Avx512F.PermuteVar16x32(Lanes(sums2, sums2), Vector512.Create(0, 8, 1, 9, 4, 12, 5, 13, 0, 0, 0, 0, 0, 0, 0, 0)).GetLower().Store(sums);

        static Vector512<float> Halves(Vector512<float> a, Vector512<float> b) =>
            Avx512F.Shuffle4x128(a, b, 0b01_00_01_00) + Avx512F.Shuffle4x128(a, b, 0b11_10_11_10);
        static Vector512<float> Quarters(Vector512<float> a, Vector512<float> b) =>
            Avx512F.Shuffle4x128(a, b, 0b10_00_10_00) + Avx512F.Shuffle4x128(a, b, 0b11_01_11_01);
        static Vector512<float> Pairs(Vector512<float> a, Vector512<float> b) =>
            Avx512F.UnpackLow(a.AsDouble(), b.AsDouble()).AsSingle() + Avx512F.UnpackHigh(a.AsDouble(), b.AsDouble()).AsSingle();
        static Vector512<float> Lanes(Vector512<float> a, Vector512<float> b) =>
            Avx512F.Shuffle(a, b, 0b10_00_10_00) + Avx512F.Shuffle(a, b, 0b11_01_11_01);
    }
    public static int GemmRows => 8; // 16 of 32 zmm
    public static Vector512<float> WidenInt8(sbyte* source) => Avx512F.ConvertToVector512Single(Avx512F.ConvertToVector512Int32(Vector128.Load(source)));

    /// <summary>
    /// AVX-512 compresses the positions in one instruction, with no branch per lane. The comparison is written twice, not
    /// kept in a local: the JIT then computes it once into a mask register for both uses, where a local made it store the
    /// mask in a vector and convert it back before each (0.67x the time a register of a row at 3% non-zeros, 0.8x at 21%, on a Zen 4).
    /// </summary>
    public static int StoreNonZeroPositions(Vector512<float> value, int offset, int* found)
    {
        Avx512F.Compress(Vector512<int>.Zero, ~Vector512.Equals(value, Vector512<float>.Zero).AsInt32(), Vector512<int>.Indices + Vector512.Create(offset)).Store(found);
        return BitOperations.PopCount((uint)Vector512.ExtractMostSignificantBits(~Vector512.Equals(value, Vector512<float>.Zero)));
    }
}

/// <summary>8 floats: AVX2 with FMA.</summary>
internal readonly unsafe struct Float256 : IFloatVector<Vector256<float>>
{
    public static int Count => 8;
    public static bool IsAccelerated => Vector256.IsHardwareAccelerated && Avx2.IsSupported && Fma.IsSupported;
    public static Vector256<float> Create(float value) => Vector256.Create(value);
    public static Vector256<float> Broadcast(float* source) => Vector256.Create(*source);
    public static Vector256<float> Load(float* source) => Vector256.Load(source);
    public static void Store(Vector256<float> value, float* destination) => value.Store(destination);
    public static Vector256<float> MultiplyAdd(Vector256<float> a, Vector256<float> b, Vector256<float> c) => Vector256.FusedMultiplyAdd(a, b, c);
    public static Vector256<float> Add(Vector256<float> a, Vector256<float> b) => a + b;
    public static Vector256<float> Multiply(Vector256<float> a, Vector256<float> b) => a * b;
    public static Vector256<float> And(Vector256<float> a, Vector256<float> b) => a & b;
    public static Vector256<float> Max(Vector256<float> a, Vector256<float> b) => Vector256.Max(a, b);
    public static Vector256<float> GreaterThan(Vector256<float> a, Vector256<float> b) => Vector256.GreaterThan(a, b);
    public static Vector256<float> SwapPairs(Vector256<float> v) => (Vector256.ShiftLeft(v.AsUInt64(), 32) | Vector256.ShiftRightLogical(v.AsUInt64(), 32)).AsSingle();
    public static uint NonZeroBits(Vector256<float> value) => (uint)~Vector256.Equals(value, Vector256<float>.Zero).ExtractMostSignificantBits() & 0xFF;
    public static Vector256<float> DropoutKeeps(uint first, uint low, uint high, uint threshold) =>
        Keeps(Vector256.Create(first) + Vector256<uint>.Indices, low, high, threshold);
    public static Vector256<float> DropoutKeepsAt(int* elements, uint offset, uint low, uint high, uint threshold) =>
        Keeps(Vector256.Load((uint*)elements) + Vector256.Create(offset), low, high, threshold);
    private static Vector256<float> Keeps(Vector256<uint> elements, uint low, uint high, uint threshold)
    {
        var hash = Mix(Mix(elements + Vector256.Create(low)) ^ Vector256.Create(high));
        return Vector256.GreaterThanOrEqual(hash, Vector256.Create(threshold)).AsSingle();

        static Vector256<uint> Mix(Vector256<uint> x) // Elementwise.Mix lane by lane
        {
            x ^= x >> 16; x *= Kernels.Elementwise.HashMultiplier1;
            x ^= x >> 15; x *= Kernels.Elementwise.HashMultiplier2;
            return x ^ (x >> 16);
        }
    }
    public static float Sum(Vector256<float> value) => Vector256.Sum(value);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] // called at the end of a kernel, whose accumulators are its arguments
    public static void StoreSums(Vector256<float> c0, Vector256<float> c1, Vector256<float> c2, Vector256<float> c3, Vector256<float> c4,
        Vector256<float> c5, Vector256<float> c6, Vector256<float> c7, float* sums)
    {
        // Three levels (128-bit halves, 64-bit pairs, lanes): lane 4h + s of the last holds the sum of the input fed in as
        // the (h + 2s)-th.
        Lanes(Pairs(Halves(c0, c4), Halves(c1, c5)), Pairs(Halves(c2, c6), Halves(c3, c7))).Store(sums);

        static Vector256<float> Halves(Vector256<float> a, Vector256<float> b) => Avx.Permute2x128(a, b, 0x20) + Avx.Permute2x128(a, b, 0x31);
        static Vector256<float> Pairs(Vector256<float> a, Vector256<float> b) =>
            Avx.UnpackLow(a.AsDouble(), b.AsDouble()).AsSingle() + Avx.UnpackHigh(a.AsDouble(), b.AsDouble()).AsSingle();
        static Vector256<float> Lanes(Vector256<float> a, Vector256<float> b) => Avx.Shuffle(a, b, 0b10_00_10_00) + Avx.Shuffle(a, b, 0b11_01_11_01);
    }
    public static int GemmRows => 6; // 12 of 16 ymm
    public static Vector256<float> WidenInt8(sbyte* source) => Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(source));
    public static int StoreNonZeroPositions(Vector256<float> value, int offset, int* found) => Simd.StoreSetBits(NonZeroBits(value), 8, offset, found);
}

/// <summary>4 floats: ARM64 AdvSimd, or x64 without AVX2.</summary>
internal readonly unsafe struct Float128 : IFloatVector<Vector128<float>>
{
    public static int Count => 4;
    public static bool IsAccelerated => Vector128.IsHardwareAccelerated;
    public static Vector128<float> Create(float value) => Vector128.Create(value);
    public static Vector128<float> Broadcast(float* source) =>
        Avx.IsSupported ? Avx.BroadcastScalarToVector128(source) : AdvSimd.IsSupported ? AdvSimd.LoadAndReplicateToVector128(source) : Vector128.Create(*source);
    public static Vector128<float> Load(float* source) => Vector128.Load(source);
    public static void Store(Vector128<float> value, float* destination) => value.Store(destination);
    public static Vector128<float> MultiplyAdd(Vector128<float> a, Vector128<float> b, Vector128<float> c) =>
        Fma.IsSupported || AdvSimd.IsSupported ? Vector128.FusedMultiplyAdd(a, b, c) : Vector128.MultiplyAddEstimate(a, b, c);
    public static Vector128<float> Add(Vector128<float> a, Vector128<float> b) => a + b;
    public static Vector128<float> Multiply(Vector128<float> a, Vector128<float> b) => a * b;
    public static Vector128<float> And(Vector128<float> a, Vector128<float> b) => a & b;
    public static Vector128<float> Max(Vector128<float> a, Vector128<float> b) => Vector128.Max(a, b);
    public static Vector128<float> GreaterThan(Vector128<float> a, Vector128<float> b) => Vector128.GreaterThan(a, b);
    public static Vector128<float> SwapPairs(Vector128<float> v) => (Vector128.ShiftLeft(v.AsUInt64(), 32) | Vector128.ShiftRightLogical(v.AsUInt64(), 32)).AsSingle();
    public static uint NonZeroBits(Vector128<float> value) => (uint)~Vector128.Equals(value, Vector128<float>.Zero).ExtractMostSignificantBits() & 0xF;
    public static Vector128<float> DropoutKeeps(uint first, uint low, uint high, uint threshold) =>
        Keeps(Vector128.Create(first) + Vector128<uint>.Indices, low, high, threshold);
    public static Vector128<float> DropoutKeepsAt(int* elements, uint offset, uint low, uint high, uint threshold) =>
        Keeps(Vector128.Load((uint*)elements) + Vector128.Create(offset), low, high, threshold);
    private static Vector128<float> Keeps(Vector128<uint> elements, uint low, uint high, uint threshold)
    {
        var hash = Mix(Mix(elements + Vector128.Create(low)) ^ Vector128.Create(high));
        return Vector128.GreaterThanOrEqual(hash, Vector128.Create(threshold)).AsSingle();

        static Vector128<uint> Mix(Vector128<uint> x) // Elementwise.Mix lane by lane
        {
            x ^= x >> 16; x *= Kernels.Elementwise.HashMultiplier1;
            x ^= x >> 15; x *= Kernels.Elementwise.HashMultiplier2;
            return x ^ (x >> 16);
        }
    }
    public static float Sum(Vector128<float> value) => Vector128.Sum(value);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] // called at the end of a kernel, whose accumulators are its arguments
    public static void StoreSums(Vector128<float> c0, Vector128<float> c1, Vector128<float> c2, Vector128<float> c3, Vector128<float> c4,
        Vector128<float> c5, Vector128<float> c6, Vector128<float> c7, float* sums)
    {
        // Two levels of pairwise sums per four inputs, which leave them in order.
        Pairwise(Pairwise(c0, c1), Pairwise(c2, c3)).Store(sums);
        Pairwise(Pairwise(c4, c5), Pairwise(c6, c7)).Store(sums + 4);
    }

    /// <summary>(a0 + a1, a2 + a3, b0 + b1, b2 + b3): ARM64's addp, two shuffles and an add on x64.</summary>
    private static Vector128<float> Pairwise(Vector128<float> a, Vector128<float> b) =>
        AdvSimd.Arm64.IsSupported ? AdvSimd.Arm64.AddPairwise(a, b)
        : Sse.IsSupported ? Sse.Shuffle(a, b, 0b10_00_10_00) + Sse.Shuffle(a, b, 0b11_01_11_01)
        : Vector128.Create(a[0] + a[1], a[2] + a[3], b[0] + b[1], b[2] + b[3]);
    public static int GemmRows => AdvSimd.IsSupported ? 8 : 6; // 16 of ARM64's 32 q registers; 12 of x64's 16 xmm
    public static Vector128<float> WidenInt8(sbyte* source) =>
        Vector128.ConvertToSingle(Vector128.WidenLower(Vector128.WidenLower(Vector128.CreateScalarUnsafe(*(int*)source).AsSByte())));
    public static int StoreNonZeroPositions(Vector128<float> value, int offset, int* found) => Simd.StoreSetBits(NonZeroBits(value), 4, offset, found);
}
