using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;
using System.Runtime.Intrinsics.X86;
using FsCheck.Xunit;
using Xunit.Abstractions;

namespace Bdh.Tensors.Tests;

/// <summary>
/// Every kernel written over <see cref="IFloatVector{TSelf}"/> at each width this machine accelerates, called
/// directly, not only at the width <see cref="Simd.Widest"/> picks: an AVX-512 machine proves the 512-, 256- and
/// 128-bit forms in one run. The suite run again with the JIT held to a level (.ci/run's legs) proves the dispatch.
/// </summary>
public class VectorWidthTests(ITestOutputHelper output)
{
    private static readonly bool HasFma = Fma.IsSupported || AdvSimd.IsSupported;

    [Fact]
    public void TheWidestWidthHonoursTheJitKnobs()
    {
        // A knob that does nothing (a renamed variable, a runtime that ignores it) would leave a wider path running:
        // the widths are printed for every leg, and a knob this runtime implements is held to its word.
        // .NET 10 took AVX-512's knob as DOTNET_EnableAVX512; its earlier name, DOTNET_EnableAVX512F, does nothing.
        // DOTNET_PreferredVectorBitWidth=128 holds the vectors to 128 bits and keeps FMA: ARM64's shape, where
        // DOTNET_EnableAVX2=0 takes FMA away too.
        string report = $"[vector widths] accelerated: {Simd.Accelerated}; kernels run at {Simd.Widest} bits, " +
            (HasFma ? "with FMA" : "without FMA") + $", in {Simd.VectorRegisters} vector registers";
        output.WriteLine(report);
        static string? Knob(string name) => Environment.GetEnvironmentVariable("DOTNET_" + name);
        static bool Off(string name) => Knob(name) == "0";
        if (Off("EnableAVX512F") && Simd.Widest == 512)
            output.WriteLine("[vector widths] DOTNET_EnableAVX512F=0 has no effect on this runtime: use DOTNET_EnableAVX512=0");
        int limit = Off("EnableHWIntrinsic") ? 0 : Off("EnableAVX2") ? 128 : Off("EnableAVX512") ? 256 : 512;
        if (int.TryParse(Knob("PreferredVectorBitWidth"), out int preferred) && preferred >= 128) limit = Math.Min(limit, preferred);
        Assert.True(Simd.Widest <= limit, $"kernels run at {Simd.Widest} bits although the JIT knobs allow {limit}");
        if (limit == 0) Assert.Equal("none", Simd.Accelerated);
        // AVX-512's encoding gives an x64 JIT 32 vector registers (at any width), without it 16: then the attention's dot
        // tiles take two rows of A at a time, not four. Each knob that turns AVX-512 off must show here.
        bool avx512Off = Off("EnableHWIntrinsic") || Off("EnableAVX2") || Off("EnableAVX512");
        if (avx512Off && !AdvSimd.IsSupported) Assert.Equal(16, Simd.VectorRegisters);
    }

    public static TheoryData<int> Widths => new() { 512, 256, 128 };

    /// <summary>Runs body at the given width, or reports the test skipped where this machine (or a JIT knob) has no such vectors.</summary>
    private static void At(int width, Action<int> body)
    {
        Skip.IfNot(IsAccelerated(width), $"{width}-bit vectors are not accelerated here");
        body(width);
    }

    private static bool IsAccelerated(int width) => width switch { 512 => Float512.IsAccelerated, 256 => Float256.IsAccelerated, _ => Float128.IsAccelerated };

    /// <summary>The sparse product's definition in float: each output adds its terms in order of p, one FMA per term.</summary>
    private static float[] SequentialFma(float[] a, float[] b, float[] c0, int m, int n, int k, bool accumulate)
    {
        var c = new float[m * n];
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                float sum = accumulate ? c0[i * n + j] : 0;
                for (int p = 0; p < k; p++)
                    if (a[i * k + p] != 0) sum = MathF.FusedMultiplyAdd(a[i * k + p], b[p * n + j], sum);
                c[i * n + j] = sum;
            }
        return c;
    }

    private static float[] Floats(Rng rng, int count, double density = 1) =>
        Naive.Random(rng, count).Select(v => rng.NextDouble() < density ? (float)v : 0f).ToArray();

    [SkippableTheory, MemberData(nameof(Widths))]
    public void SparseProductGivesTheSequentialFmaBits(int width) => At(width, w =>
    {
        // n covers whole 8-register tiles at every width (up to 128 columns), one-register strips and the scalar tail.
        var rng = new Rng((ulong)w);
        foreach (var (m, n, k) in new[] { (1, 1, 1), (7, 300, 33), (40, 129, 64), (3, 37, 200) })
            foreach (bool accumulate in new[] { false, true })
            {
                float[] a = Floats(rng, m * k, 0.1), b = Floats(rng, k * n), c0 = Floats(rng, m * n), c = (float[])c0.Clone();
                var (ar, br, cr) = (new MatrixRef<float>(a, 0, k), new MatrixRef<float>(b, 0, n), new MatrixRef<float>(c, 0, n));
                switch (w)
                {
                    case 512: SparseGemm.Multiply<Float512, Vector512<float>>(m, n, k, ar, br, cr, accumulate, parallel: true); break;
                    case 256: SparseGemm.Multiply<Float256, Vector256<float>>(m, n, k, ar, br, cr, accumulate, parallel: true); break;
                    default: SparseGemm.Multiply<Float128, Vector128<float>>(m, n, k, ar, br, cr, accumulate, parallel: true); break;
                }
                var expected = SequentialFma(a, b, c0, m, n, k, accumulate);
                if (HasFma) Assert.Equal(expected, c);
                else Assert.True(Naive.RelativeError(c, expected.Select(v => (double)v).ToArray()) < 1e-5, $"{w} bits, m={m} n={n} k={k}");
            }
    });

    [SkippableTheory, MemberData(nameof(Widths))]
    public unsafe void EightSumsAtOnceAreEachVectorsSum(int width) => At(width, w =>
    {
        // StoreSums adds the lanes in a tree of shuffles, Sum in its own order: the same sums to float rounding.
        var rng = new Rng(20 + (ulong)w);
        float[] lanes = Floats(rng, 8 * w / 32);
        float[] sums = new float[8];
        fixed (float* l = lanes, s = sums)
            switch (w)
            {
                case 512: StoreSums<Float512, Vector512<float>>(l, s); break;
                case 256: StoreSums<Float256, Vector256<float>>(l, s); break;
                default: StoreSums<Float128, Vector128<float>>(l, s); break;
            }
        int count = w / 32;
        for (int i = 0; i < 8; i++)
            Assert.Equal(lanes.Skip(i * count).Take(count).Sum(v => (double)v), sums[i], 1e-5);
    });

    private static unsafe void StoreSums<W, V>(float* l, float* sums) where W : struct, IFloatVector<V> where V : struct
    {
        V Vector(int i) => W.Load(l + i * W.Count);
        W.StoreSums(Vector(0), Vector(1), Vector(2), Vector(3), Vector(4), Vector(5), Vector(6), Vector(7), sums);
    }

    [SkippableTheory, MemberData(nameof(Widths))]
    public void AttentionScoresMatchTheirDefinition(int width) => At(width, w =>
    {
        // tril(A·Bᵀ, −1) by 4×4 tiles of dot products: t covers whole tiles and the rows left after them, k no whole
        // vector, whole vectors and a tail; every score on and above the diagonal is exactly zero.
        var rng = new Rng(30 + (ulong)w);
        foreach (int t in new[] { 1, 4, 7, 13 })
            foreach (int k in new[] { 1, 5, 16, 37, 64 })
            {
                float[] a = Floats(rng, t * k), b = Floats(rng, t * k), s = Enumerable.Repeat(float.NaN, t * t).ToArray();
                Kernels.CausalLinearAttention.StrictlyLowerProduct(t, k, new MatrixRef<float>(a, 0, k), new MatrixRef<float>(b, 0, k),
                    new MatrixRef<float>(s, 0, t), w);
                var expected = Naive.MatMul(a.Select(v => (double)v).ToArray(), false, b.Select(v => (double)v).ToArray(), true, t, t, k)
                    .Select((v, ij) => ij % t < ij / t ? v : 0).ToArray();
                Assert.True(Naive.RelativeError(s, expected) < 1e-5, $"{w} bits, t={t} k={k}");
                for (int i = 0; i < t; i++)
                    for (int j = i; j < t; j++) Assert.Equal(0f, s[i * t + j]);
            }
    });

    [SkippableTheory, MemberData(nameof(Widths))]
    public unsafe void OneTokenAndMaskedProductsMatchTheirDefinitions(int width) => At(width, w =>
    {
        var rng = new Rng(10 + (ulong)w);
        foreach (var (k, n) in new[] { (1, 1), (5, 3), (64, 300), (257, 131) })
        {
            // y = x·W over x's non-zeros: the same bits as the sequential definition.
            float[] x = Floats(rng, k, 0.5), wk = Floats(rng, k * n), y = Enumerable.Repeat(float.NaN, n).ToArray();
            switch (w)
            {
                case 512: Gemv.RowTimesMatrix<Float512, Vector512<float>>(x, wk, y); break;
                case 256: Gemv.RowTimesMatrix<Float256, Vector256<float>>(x, wk, y); break;
                default: Gemv.RowTimesMatrix<Float128, Vector128<float>>(x, wk, y); break;
            }
            var expected = SequentialFma(x, wk, new float[n], 1, n, k, false);
            if (HasFma) Assert.Equal(expected, y);
            else Assert.True(Naive.RelativeError(y, expected.Select(v => (double)v).ToArray()) < 1e-5);

            // y[i] = W[i, :]·x on the masked rows (dots in W.Count partial sums: float rounding of the double result), 0 elsewhere:
            // one token's product (streamed) and three rows of a masked product, each row with its own mask.
            foreach (int rows in new[] { 1, 3 })
            {
                float[] wm = Floats(rng, n * k), xd = Floats(rng, rows * k), mask = Floats(rng, rows * n, 0.5), ym = Enumerable.Repeat(float.NaN, rows * n).ToArray();
                fixed (float* wp = wm, xp = xd, mp = mask, yp = ym)
                    switch (w)
                    {
                        case 512: Gemv.MaskedRows<Float512, Vector512<float>>(rows, n, k, xp, k, wp, mp, n, yp, n, relu: false, streamed: rows == 1); break;
                        case 256: Gemv.MaskedRows<Float256, Vector256<float>>(rows, n, k, xp, k, wp, mp, n, yp, n, relu: false, streamed: rows == 1); break;
                        default: Gemv.MaskedRows<Float128, Vector128<float>>(rows, n, k, xp, k, wp, mp, n, yp, n, relu: false, streamed: rows == 1); break;
                    }
                var dots = Naive.MatMul(xd.Select(v => (double)v).ToArray(), false, wm.Select(v => (double)v).ToArray(), true, rows, n, k);
                Assert.True(Naive.RelativeError(ym, dots.Select((v, i) => mask[i] == 0 ? 0 : v).ToArray()) < 1e-5, $"{w} bits, {rows} rows, n={n} k={k}");
                // The same places read from the mask's lists (xy's, in the masked dxy): the same bits.
                using var lists = new RowLists(rows, n);
                float[] yl = Enumerable.Repeat(float.NaN, rows * n).ToArray();
                fixed (float* wp = wm, xp = xd, mp = mask, yp = yl)
                {
                    lists.ListRows(0, rows, mp);
                    lists.Seal();
                    switch (w)
                    {
                        case 512: Gemv.MaskedRows<Float512, Vector512<float>>(rows, n, k, xp, k, wp, null, n, yp, n, relu: false, streamed: false, lists); break;
                        case 256: Gemv.MaskedRows<Float256, Vector256<float>>(rows, n, k, xp, k, wp, null, n, yp, n, relu: false, streamed: false, lists); break;
                        default: Gemv.MaskedRows<Float128, Vector128<float>>(rows, n, k, xp, k, wp, null, n, yp, n, relu: false, streamed: false, lists); break;
                    }
                }
                Assert.Equal(ym, yl);
            }
        }
    });

    [SkippableTheory, MemberData(nameof(Widths))]
    public unsafe void Int8ScreenMarksExactlyTheColumnsAboveTheBound(int width) => At(width, w =>
    {
        // One 128-column panel of int8 rows; ScreenColumns covers 8 registers' worth of it per call.
        var rng = new Rng(20 + (ulong)w);
        foreach (int k in new[] { 1, 3, 256 })
        {
            var q = Enumerable.Range(0, k * 128).Select(_ => (sbyte)(rng.NextDouble() * 255 - 127)).ToArray();
            var x = Floats(rng, k);
            float threshold = -0.5f * x.Sum(MathF.Abs);
            var candidates = Enumerable.Repeat(float.NaN, 128).ToArray();
            fixed (float* xp = x, cp = candidates)
            fixed (sbyte* qp = q)
                for (int j = 0; j < 128; j += 8 * (w / 32))
                    switch (w)
                    {
                        case 512: ScreenedReluProduct.ScreenColumns<Float512, Vector512<float>>(xp, k, qp + j, threshold, cp + j); break;
                        case 256: ScreenedReluProduct.ScreenColumns<Float256, Vector256<float>>(xp, k, qp + j, threshold, cp + j); break;
                        default: ScreenedReluProduct.ScreenColumns<Float128, Vector128<float>>(xp, k, qp + j, threshold, cp + j); break;
                    }
            for (int j = 0; j < 128; j++)
            {
                double r = 0, scale = 0;
                for (int d = 0; d < k; d++) (r, scale) = (r + x[d] * (double)q[d * 128 + j], scale + Math.Abs(x[d] * (double)q[d * 128 + j]));
                if (Math.Abs(r - threshold) > 1e-5 * scale) // away from the bound, float and double agree on the side
                    Assert.True(candidates[j] == (r > threshold ? 1 : 0), $"{w} bits, k={k}, column {j}: r = {r}, bound {threshold}, marked {candidates[j]}");
            }
        }
    });

    [Property(MaxTest = 30)]
    public void EveryWidthListsTheSameNonZeros(int seed)
    {
        // Positions by each width's compaction (AVX-512 compress; below it a table's row per register's mask), through the sparse product of a
        // row with the identity: y[j] = x[j] exactly where x is non-zero, so a missed, extra or misplaced position shows.
        var rng = new Rng((ulong)seed);
        int k = 1 + (int)(rng.NextDouble() * 150);
        var x = Floats(rng, k, rng.NextDouble());
        var identity = new float[k * k];
        for (int i = 0; i < k; i++) identity[i * k + i] = 1;
        foreach (int w in new[] { 512, 256, 128 }.Where(IsAccelerated))
        {
            var y = Enumerable.Repeat(float.NaN, k).ToArray();
            switch (w)
            {
                case 512: Gemv.RowTimesMatrix<Float512, Vector512<float>>(x, identity, y); break;
                case 256: Gemv.RowTimesMatrix<Float256, Vector256<float>>(x, identity, y); break;
                default: Gemv.RowTimesMatrix<Float128, Vector128<float>>(x, identity, y); break;
            }
            Assert.Equal(x, y);
        }
    }

    [Fact]
    public unsafe void TheCompactionTableStoresTheSetLanesOfEveryMask()
    {
        // AVX2 and 128 bits store a register's non-zero positions from Simd's table, a row for each register's mask: every mask of 8
        // lanes and of 4, at an offset, against its bits read one by one (entries past the count are free to hold anything).
        int[] found = new int[12];
        foreach (int lanes in new[] { 4, 8 })
            for (uint mask = 0; mask < 1u << lanes; mask++)
            {
                int count;
                fixed (int* f = found) count = Simd.StoreSetBits(mask, lanes, 100, f);
                int[] expected = [.. Enumerable.Range(0, lanes).Where(lane => (mask >> lane & 1) != 0).Select(lane => 100 + lane)];
                Assert.Equal(expected, found[..count]);
            }
    }

    [SkippableTheory, MemberData(nameof(Widths))]
    public void ElementwiseKernelsGiveTheScalarLoopsBits(int width) => At(width, w =>
    {
        // Lengths cover no whole vector, whole vectors at every width, and a tail; each kernel at width w must
        // give the bits of its scalar loop (width 0), which the naive tests in KernelTests check against their definitions.
        var rng = new Rng((ulong)w + 7);
        foreach (int length in new[] { 1, 3, 16, 37, 260 })
            foreach (bool accumulate in new[] { false, true })
            {
                float[] y = Floats(rng, length, 0.5), dy = Floats(rng, length), start = Floats(rng, length);
                float[] vector = (float[])start.Clone(), scalar = (float[])start.Clone();
                Kernels.Elementwise.ReluBackward<float>(y, dy, vector, accumulate, w);
                Kernels.Elementwise.ReluBackward<float>(y, dy, scalar, accumulate, 0);
                Assert.Equal(scalar, vector);

                foreach (float[] factor in new[] { [], y })
                {
                    (vector, scalar) = ((float[])start.Clone(), (float[])start.Clone());
                    Kernels.Elementwise.Dropout<float>(0x1234_5678_9abc_def0UL, 0.3, dy, factor, vector, start: 11, accumulate, w);
                    Kernels.Elementwise.Dropout<float>(0x1234_5678_9abc_def0UL, 0.3, dy, factor, scalar, start: 11, accumulate, 0);
                    Assert.Equal(scalar, vector);
                }
                // Both gradients of dropout(dy-shaped a ⊙ b) in one pass, as the product's backward runs it: each output
                // has the bits of its own one-output scalar pass, followed with reluFactors by the ReLU backward of its input.
                foreach (bool reluFactors in new[] { false, true })
                {
                    float[] a = Floats(rng, length, 0.5), da = (float[])start.Clone(), db = (float[])start.Clone();
                    float[] daAlone = (float[])start.Clone(), dbAlone = (float[])start.Clone();
                    Kernels.Elementwise.Dropout<float>(0x1234_5678_9abc_def0UL, 0.3, dy, y, da, accumulate, a, db, accumulate, 11, w, reluFactors);
                    Kernels.Elementwise.Dropout<float>(0x1234_5678_9abc_def0UL, 0.3, dy, y, daAlone, start: 11, accumulate, 0);
                    Kernels.Elementwise.Dropout<float>(0x1234_5678_9abc_def0UL, 0.3, dy, a, dbAlone, start: 11, accumulate, 0);
                    if (reluFactors)
                    {
                        Kernels.Elementwise.ReluBackward<float>(a, daAlone, daAlone, accumulate: false, 0);
                        Kernels.Elementwise.ReluBackward<float>(y, dbAlone, dbAlone, accumulate: false, 0);
                    }
                    Assert.Equal(daAlone, da);
                    Assert.Equal(dbAlone, db);
                }

                Assert.Equal(Kernels.Elementwise.CountNonZeros<float>(y, 0), Kernels.Elementwise.CountNonZeros<float>(y, w));
            }
    });

    [SkippableTheory, MemberData(nameof(Widths))]
    public void LayerNormBackwardGivesTheScalarLoopsBits(int width) => At(width, w =>
    {
        var rng = new Rng((ulong)w + 13);
        foreach (int d in new[] { 1, 3, 16, 37, 130 })
            foreach (bool accumulate in new[] { false, true })
            {
                float[] dy = Floats(rng, 3 * d), y = Floats(rng, 3 * d), rstd = Floats(rng, 3), start = Floats(rng, 3 * d);
                float[] vector = (float[])start.Clone(), scalar = (float[])start.Clone();
                Kernels.LayerNorm.Backward<float>(dy, y, rstd, vector, d, accumulate, w);
                Kernels.LayerNorm.Backward<float>(dy, y, rstd, scalar, d, accumulate, 0);
                Assert.Equal(scalar, vector);
            }
    });

    [SkippableTheory, MemberData(nameof(Widths))]
    public void RopeGivesTheScalarLoopsBits(int width) => At(width, w =>
    {
        var rng = new Rng((ulong)w + 11);
        foreach (int n in new[] { 2, 6, 32, 66 })
        {
            var table = Kernels.Rope.Table(Kernels.Rope.Frequencies(n), 5);
            float[] v = Floats(rng, 3 * 5 * n), start = Floats(rng, v.Length);
            float[] reluOutput = Floats(rng, v.Length, 0.5);
            foreach (int sinSign in new[] { 1, -1 })
                foreach (bool accumulate in new[] { false, true })
                {
                    float[] vector = (float[])start.Clone(), scalar = (float[])start.Clone();
                    Kernels.Rope.Rotate<float>(v, vector, table, sinSign, accumulate, firstRow: 2, w);
                    Kernels.Rope.Rotate<float>(v, scalar, table, sinSign, accumulate, firstRow: 2, 0);
                    Assert.Equal(scalar, vector);
                    // The backward of a ReLU's output: the rotation, then the ReLU's backward, in one pass.
                    Kernels.Rope.Rotate<float>(v, vector, table, sinSign, accumulate, firstRow: 2, w, reluOutput);
                    Kernels.Rope.Rotate<float>(v, scalar, table, sinSign, accumulate, firstRow: 2, 0);
                    Kernels.Elementwise.ReluBackward<float>(reluOutput, scalar, scalar, accumulate: false, 0);
                    Assert.Equal(scalar, vector);
                }
        }
    });
}
