using FsCheck.Xunit;
using System.Numerics;
using System.Numerics.Tensors;

namespace Bdh.Tensors.Tests;

public class GemmTests
{
    /// <summary>Sizes 1..70: 1, odd, and not multiples of the 8×32 tile or the 16-lane vector.</summary>
    private static int Size(byte raw) => 1 + raw % 70;

    private static (double[] A, double[] B, double[] C0) Operands(int m, int n, int k, int seed)
    {
        var rng = new Rng((ulong)seed);
        return (Naive.Random(rng, m * k), Naive.Random(rng, k * n), Naive.Random(rng, m * n));
    }

    [Property(MaxTest = 80)]
    public void MostlyZeroOperandGoesSparseAndMatchesNaiveForAnyThreadCount(byte mRaw, byte nRaw, byte kRaw, byte densityRaw,
        bool sparseB, bool transA, bool transB, bool accumulate, int seed)
    {
        // A mostly-zero op(A) (xy·decoder, and with B transposed a ReLU's input gradient dC·Wᵀ) or B (a weight gradient
        // Xᵀ·dC), 1% to 4% non-zeros: the density test, which samples rows, takes it sparse (it would up to 16% or 25%, and
        // 4% stays 6σ below 8% in the 64 rows of 16 it may sample; 6% was drawn above 8% once, m=21 n=16 k=1076). Large
        // enough (m·k or k·n ≥ 16384) that Gemm measures it; k far past m, so a thread's chunk of rows can hold more
        // non-zeros than its rows squared (the non-zero lists were once capped there for a transposed A); n from 16 to 165
        // covers the 128-column register tile and the columns after it.
        int m = 16 + mRaw % 120, k = 1024 + kRaw % 64, n = 16 + nRaw % 150;
        double density = 0.01 + densityRaw % 4 / 100.0;
        var rng = new Rng((ulong)seed);
        double[] Sparse(int length) => Naive.Random(rng, length).Select(x => rng.NextDouble() < density ? x : 0).ToArray();
        double[] a = sparseB ? Naive.Random(rng, m * k) : Sparse(m * k), b = sparseB ? Sparse(k * n) : Naive.Random(rng, k * n);
        var c0 = Naive.Random(rng, m * n);
        float[] Stored(double[] x, int rows, int cols, bool transposed) => // [cols, rows] when transposed
            (transposed ? Enumerable.Range(0, rows * cols).Select(i => x[i % rows * cols + i / rows]) : x).Select(v => (float)v).ToArray();
        var aRef = new MatrixRef<float>(Stored(a, m, k, transA), 0, transA ? m : k, transA);
        var bRef = new MatrixRef<float>(Stored(b, k, n, transB), 0, transB ? k : n, transB);
        Assert.True(sparseB ? SparseGemm.IsSparseB(m, n, k, bRef) : SparseGemm.IsSparse(m, n, k, aRef), $"density {density}");
        var expected = Naive.MatMul(a, false, b, false, m, n, k);
        if (accumulate) for (int i = 0; i < expected.Length; i++) expected[i] += c0[i];
        float[] Run(int threads) => Threads.On(threads, () =>
        {
            float[] c = c0.Select(x => (float)x).ToArray();
            Gemm.Multiply(m, n, k, aRef, bRef, new MatrixRef<float>(c, 0, n), accumulate);
            return c;
        });
        float[] one = Run(1);
        Assert.Equal(one, Run(2));
        Assert.Equal(one, Run(3));
        Assert.True(Naive.RelativeError(one, expected) < 1e-5, $"m={m} n={n} k={k} sparseB={sparseB} transA={transA} transB={transB}");
    }

    [Theory]
    [InlineData(128)]   // B [512, 128], 256 KB: in L2, where the bound is higher (MaxDensityCachedB)
    [InlineData(2048)]  // B [512, 2048], 4 MB: MaxDensity at every width
    public void DensityTestIsNotMisledByZeroRowsAtARegularStride(int n)
    {
        // 1024 rows of 512, every 16th row all zeros (as the first token of each sequence has no ys), the others dense
        // enough that all rows together are 2% above the bound: not sparse. Rows read every 16 apart from row 0 would see
        // only the zero rows and call it sparse.
        int m = 1024, k = 512;
        double bound = SparseGemm.MaxDensityFor(n, k, transposedA: false);
        Assert.Equal(n == 128 ? SparseGemm.MaxDensityCachedB : SparseGemm.MaxDensity, bound);
        double above = (bound + 0.02) * 16 / 15, below = bound - 0.03;
        var rng = new Rng(5);
        float[] a = new float[m * k];
        for (int i = 0; i < m; i++)
            for (int p = 0; p < k; p++) a[i * k + p] = i % 16 != 0 && rng.NextDouble() < above ? 1 + (float)rng.NextDouble() : 0;
        Assert.False(SparseGemm.IsSparse(m, n, k, new MatrixRef<float>(a, 0, k)));
        // The same rows thinned to 3% below the bound are sparse.
        for (int i = 0; i < a.Length; i++) if (a[i] != 0 && rng.NextDouble() < 1 - below / above) a[i] = 0;
        Assert.True(SparseGemm.IsSparse(m, n, k, new MatrixRef<float>(a, 0, k)));
    }

    [Property(MaxTest = 200)]
    public void CausalHintsSkipOnlyZeros(byte tRaw, byte nRaw, byte modeRaw, bool transA, bool accumulate, int seed)
    {
        // A square T×T A with the zeros a hint promises (or any A for LowerOutput): the hinted product equals
        // the plain one bit for bit on every value the hint keeps (for LowerOutput, C[i, j] with j < i).
        int t = Size(tRaw), n = Size(nRaw);
        var causal = (Causal)(1 + modeRaw % 3);
        var (a, b, c0) = Operands(t, n, t, seed);
        float[] af = new float[t * t];
        for (int i = 0; i < t; i++)
            for (int p = 0; p < t; p++)
            {
                bool zero = causal == Causal.LowerA ? p >= i : causal == Causal.UpperA && p <= i;
                af[transA ? p * t + i : i * t + p] = zero ? 0 : (float)a[i * t + p];
            }
        float[] bf = b.Select(x => (float)x).ToArray(), plain = c0.Select(x => (float)x).ToArray(), hinted = (float[])plain.Clone();
        var aRef = new MatrixRef<float>(af, 0, t, transA);
        Gemm.Multiply(t, n, t, aRef, new MatrixRef<float>(bf, 0, n), new MatrixRef<float>(plain, 0, n), accumulate);
        Gemm.Multiply(t, n, t, aRef, new MatrixRef<float>(bf, 0, n), new MatrixRef<float>(hinted, 0, n), accumulate, causal: causal);
        for (int i = 0; i < t; i++)
            for (int j = 0; j < n; j++)
                if (causal != Causal.LowerOutput || j < i)
                    Assert.True(plain[i * n + j] == hinted[i * n + j], $"{causal} T={t} n={n}: C[{i},{j}] {hinted[i * n + j]} vs {plain[i * n + j]}");
    }

    [Property(MaxTest = 200)]
    public void FloatGemmMatchesNaive(byte mRaw, byte nRaw, byte kRaw, bool transA, bool transB, bool accumulate, int seed)
    {
        int m = Size(mRaw), n = Size(nRaw), k = Size(kRaw);
        var (a, b, c0) = Operands(m, n, k, seed);
        var expected = Naive.MatMul(a, transA, b, transB, m, n, k);
        if (accumulate) for (int i = 0; i < expected.Length; i++) expected[i] += c0[i];
        float[] c = c0.Select(x => (float)x).ToArray();
        Gemm.Multiply(m, n, k, new MatrixRef<float>(a.Select(x => (float)x).ToArray(), 0, transA ? m : k, transA),
            new MatrixRef<float>(b.Select(x => (float)x).ToArray(), 0, transB ? k : n, transB), new MatrixRef<float>(c, 0, n), accumulate);
        // The classic bound for a float dot product of length k: |ĉ − c| ≤ (k + 2)·2u·(|A|·|B| + |C0|),
        // u = 2^-24, the +2 for rounding the inputs to float (doubled for margin). C0 counts as one more term of
        // the sum: a kernel may start its running sum from C0 (the scalar path does), and then C0 passes through
        // all k of its roundings. Relative to |A|·|B|, not |C|, so sums that cancel to nearly zero are judged fairly.
        var bound = Naive.MatMul(a.Select(Math.Abs).ToArray(), transA, b.Select(Math.Abs).ToArray(), transB, m, n, k);
        double u2 = Math.ScaleB(1, -23);
        for (int i = 0; i < c.Length; i++)
        {
            double allowed = (k + 2) * u2 * (bound[i] + (accumulate ? Math.Abs(c0[i]) : 0));
            Assert.True(Math.Abs(c[i] - expected[i]) <= allowed,
                $"m={m} n={n} k={k} transA={transA} transB={transB} accumulate={accumulate}: C[{i}] = {c[i]}, exact {expected[i]}, allowed error {allowed:e2}");
        }
    }

    [Property(MaxTest = 100)]
    public void ReluInTheStoresEqualsReluAfterTheProduct(byte mRaw, byte nRaw, byte kRaw, byte shapeRaw, bool transA, bool accumulate, int seed)
    {
        // relu: true must give max(C, 0) of the plain product bit for bit, on every path: the packed kernel (full and edge
        // tiles; k past one 256-deep slice, where only the last slice's stores apply it), the sparse one (A mostly zero,
        // m·k ≥ 16384), and double's row loop; a NaN in C (accumulate) stays NaN, as TensorPrimitives.Max keeps it.
        bool large = shapeRaw % 2 == 1, sparse = shapeRaw % 4 == 3;
        int m = large ? 64 + mRaw % 100 : Size(mRaw), n = Size(nRaw), k = large ? 256 + kRaw % 300 : Size(kRaw);
        var rng = new Rng((ulong)seed);
        double[] a = [.. Naive.Random(rng, m * k).Select(x => sparse && rng.NextDouble() > 0.05 ? 0 : x)];
        double[] b = Naive.Random(rng, k * n), c0 = Naive.Random(rng, m * n);
        c0[^1] = double.NaN;
        void Check<T>() where T : unmanaged, IFloatingPointIeee754<T>
        {
            T[] At(double[] x) => [.. x.Select(T.CreateTruncating)];
            T[] af = At(transA ? [.. Enumerable.Range(0, m * k).Select(i => a[i % m * k + i / m])] : a), bf = At(b);
            T[] plain = At(c0), fused = At(c0);
            var aRef = new MatrixRef<T>(af, 0, transA ? m : k, transA);
            Gemm.Multiply(m, n, k, aRef, new MatrixRef<T>(bf, 0, n), new MatrixRef<T>(plain, 0, n), accumulate);
            Gemm.Multiply(m, n, k, aRef, new MatrixRef<T>(bf, 0, n), new MatrixRef<T>(fused, 0, n), accumulate, relu: true);
            TensorPrimitives.Max(plain, T.Zero, plain);
            Assert.Equal(plain, fused);
        }
        Check<float>();
        Check<double>();
    }

    [Fact]
    public void TheLastTileStoresOnlyTheRowsOfC()
    {
        // C as a block of a larger array (stride past n, rows after m): the last row tile of an m that the tile's rows
        // (6 at AVX2 and 128 bits on x64, 8 elsewhere) do not divide is stored row by row from the kernel's registers, and
        // must write C's rows and nothing else, with the sums of the naive product, accumulated and through the ReLU.
        const float Sentinel = -12345f; // negative: a stray store of a row past m (a zero row's sum added to it) turns it to 0 through the ReLU
        foreach (int m in new[] { 1, 2, 5, 7, 13, 64 })
            foreach (int n in new[] { 16, 32, 64 })
            {
                int k = 40, stride = n + 3;
                var rng = new Rng((ulong)(m * 100 + n));
                double[] a = Naive.Random(rng, m * k), b = Naive.Random(rng, k * n), c0 = Naive.Random(rng, m * n);
                float[] c = Enumerable.Repeat(Sentinel, (m + 8) * stride).ToArray(); // 8 rows past m: a whole tile's overrun lands in the array
                for (int i = 0; i < m; i++)
                    for (int j = 0; j < n; j++) c[i * stride + j] = (float)c0[i * n + j];
                Gemm.Multiply(m, n, k, new MatrixRef<float>([.. a.Select(x => (float)x)], 0, k), new MatrixRef<float>([.. b.Select(x => (float)x)], 0, n),
                    new MatrixRef<float>(c, 0, stride), accumulate: true, relu: true);
                var expected = Naive.MatMul(a, false, b, false, m, n, k);
                for (int i = 0; i < c.Length; i++)
                {
                    int row = i / stride, col = i % stride;
                    if (row >= m || col >= n) Assert.True(c[i] == Sentinel, $"m={m} n={n}: wrote C[{row}, {col}] outside the matrix");
                    else Assert.Equal(Math.Max(expected[row * n + col] + c0[row * n + col], 0), c[i], 1e-4);
                }
            }
    }

    [Fact]
    public void ReluIsRefusedWithACausalHint() =>
        Assert.Throws<ArgumentException>(() => Gemm.Multiply(3, 3, 3, new MatrixRef<float>(new float[9], 0, 3), new MatrixRef<float>(new float[9], 0, 3),
            new MatrixRef<float>(new float[9], 0, 3), false, causal: Causal.LowerOutput, relu: true));

    [Property(MaxTest = 100)]
    public void DoubleGemmMatchesNaive(byte mRaw, byte nRaw, byte kRaw, bool transA, bool transB, bool accumulate, int seed)
    {
        int m = Size(mRaw), n = Size(nRaw), k = Size(kRaw);
        var (a, b, c0) = Operands(m, n, k, seed);
        var expected = Naive.MatMul(a, transA, b, transB, m, n, k);
        if (accumulate) for (int i = 0; i < expected.Length; i++) expected[i] += c0[i];
        var c = (double[])c0.Clone();
        Gemm.Multiply(m, n, k, new MatrixRef<double>(a, 0, transA ? m : k, transA), new MatrixRef<double>(b, 0, transB ? k : n, transB),
            new MatrixRef<double>(c, 0, n), accumulate);
        Assert.True(Naive.RelativeError(c, expected) < 1e-13, $"m={m} n={n} k={k} transA={transA} transB={transB}");
    }

    [Theory]
    [InlineData(300, 517, 600, false, false)] // k spans three KC slices; several row and column blocks
    [InlineData(257, 129, 513, true, false)]
    [InlineData(129, 300, 257, false, true)]
    [InlineData(64, 2048, 128, true, true)]
    [InlineData(1, 300, 256, false, false)] // fewer rows than a micro-kernel sliver
    [InlineData(3, 517, 70, true, false)]
    public void LargeBlockedProductsMatchNaiveAndAreThreadCountIndependent(int m, int n, int k, bool transA, bool transB)
    {
        var (a, b, _) = Operands(m, n, k, 7);
        var expected = Naive.MatMul(a, transA, b, transB, m, n, k);
        float[] af = a.Select(x => (float)x).ToArray(), bf = b.Select(x => (float)x).ToArray();
        float[] Run(int threads) => Threads.On(threads, () =>
        {
            var c = new float[m * n];
            Gemm.Multiply(m, n, k, new MatrixRef<float>(af, 0, transA ? m : k, transA), new MatrixRef<float>(bf, 0, transB ? k : n, transB),
                new MatrixRef<float>(c, 0, n), false);
            return c;
        });
        var one = Run(1);
        Assert.True(Naive.RelativeError(one, expected) < 1e-5);
        Assert.Equal(one, Run(2));
        Assert.Equal(one, Run(3));
    }

    [Theory]
    [InlineData(37, 45, 300, 1024, false)] // a last tile with fewer rows than any width's tile; k past one 256-deep slice
    [InlineData(130, 33, 64, 2048, false)] // several row blocks
    [InlineData(70, 50, 70, 1024, true)]   // with the UpperA hint, as attention's dV = Sᵀ·dOut takes this path at T = 1024
    [InlineData(45, 600, 300, 1024, false)] // three column blocks: one copy of A for the whole product, that every item reads
    [InlineData(70, 300, 70, 1024, true)]
    public void TransposedAReadFromItsCopyGivesTheBitsOfAPlainA(int m, int n, int k, int stride, bool upperA)
    {
        var causal = upperA ? Causal.UpperA : Causal.None;
        // A transposed A is read from a copy of each row block, a plain one where it lies: where A is read changes, not
        // the arithmetic, so the product has the same bits from A stored plain, transposed tight (stride m) or
        // transposed at a stride of whole 4 KB pages.
        var rng = new Rng(5);
        var a = Naive.Random(rng, m * k); // op(A) [m, k]
        if (causal == Causal.UpperA) for (int i = 0; i < m; i++) for (int p = 0; p <= Math.Min(i, k - 1); p++) a[i * k + p] = 0;
        float[] b = Naive.Random(rng, k * n).Select(x => (float)x).ToArray(), plain = a.Select(x => (float)x).ToArray();
        float[] paged = new float[k * stride], tight = new float[k * m];
        for (int p = 0; p < k; p++)
            for (int i = 0; i < m; i++) paged[p * stride + i] = tight[p * m + i] = (float)a[i * k + p];
        float[] Run(MatrixRef<float> stored, int threads) => Threads.On(threads, () =>
        {
            var c = new float[m * n];
            Gemm.Multiply(m, n, k, stored, new MatrixRef<float>(b, 0, n), new MatrixRef<float>(c, 0, n), false, causal: causal);
            return c;
        });
        var expected = Run(new MatrixRef<float>(plain, 0, k), 1);
        Assert.True(Naive.RelativeError(expected, Naive.MatMul(a, false, b.Select(x => (double)x).ToArray(), false, m, n, k)) < 1e-5);
        Assert.Equal(expected, Run(new MatrixRef<float>(tight, 0, m, Transposed: true), 1));
        Assert.Equal(expected, Run(new MatrixRef<float>(paged, 0, stride, Transposed: true), 1));
        Assert.Equal(expected, Run(new MatrixRef<float>(paged, 0, stride, Transposed: true), 2));
    }

    [Property(MaxTest = 60)]
    public void RowTimesMatrixMatchesNaive(int seed)
    {
        // x half zeros; n up to 300 covers the 128-column register tiles of the float kernel and the columns after them.
        var rng = new Rng((ulong)seed);
        int k = 1 + (int)(rng.NextDouble() * 200), n = 1 + (int)(rng.NextDouble() * 300);
        var x = Naive.Random(rng, k).Select(v => rng.NextDouble() < 0.5 ? v : 0).ToArray();
        var w = Naive.Random(rng, k * n);
        var expected = Naive.MatMul(x, false, w, false, 1, n, k);
        var y = new float[n];
        Gemv.RowTimesMatrix<float>(x.Select(v => (float)v).ToArray(), w.Select(v => (float)v).ToArray(), y);
        Assert.True(Naive.RelativeError(y, expected) < 1e-5, $"k={k} n={n}");
        var yDouble = new double[n];
        Gemv.RowTimesMatrix<double>(x, w, yDouble);
        Assert.True(Naive.RelativeError(yDouble, expected) < 1e-12, $"k={k} n={n}: double");
    }

    [Property(MaxTest = 60)]
    public void MaskedProductComputesTheMaskedPlacesAndZerosTheRestForAnyThreadCount(byte mRaw, byte nRaw, byte kRaw, byte hRaw,
        byte densityRaw, bool relu, int seed)
    {
        // [1, B·m, k]·[H, 1, n, k]ᵀ where a mask [H, B·m, n] says, as ys = relu(ln(a)·encoder_v) where xs fires: sizes 1..70
        // (the eight-dot groups and the vectors' tails), 0% to 30% of the places (the masked kernel's whole range).
        int m = Size(mRaw), n = Size(nRaw), k = Size(kRaw), h = 1 + hRaw % 3;
        double density = densityRaw % 31 / 100.0;
        var rng = new Rng((ulong)seed);
        double[] a = Naive.Random(rng, m * k), b = Naive.Random(rng, h * n * k);
        double[] mask = Enumerable.Range(0, h * m * n).Select(_ => rng.NextDouble() < density ? 1.0 : 0).ToArray();
        var expected = new double[h * m * n];
        for (int head = 0; head < h; head++)
        {
            var product = Naive.MatMul(a, false, b[(head * n * k)..((head + 1) * n * k)], true, m, n, k);
            for (int i = 0; i < m * n; i++)
                expected[head * m * n + i] = mask[head * m * n + i] == 0 ? 0 : relu ? Math.Max(product[i], 0) : product[i];
        }
        T[] Run<T>(int threads) where T : unmanaged, IFloatingPointIeee754<T> => Threads.On(threads, () =>
        {
            using var c = Tensor<T>.From(Enumerable.Repeat(T.NaN, h * m * n).ToArray(), h, 1, m, n); // every place written
            MatMul.Multiply(Tensor<T>.From(a.Select(T.CreateTruncating).ToArray(), 1, 1, m, k), false,
                Tensor<T>.From(b.Select(T.CreateTruncating).ToArray(), h, 1, n, k), true, c, accumulate: false, relu,
                where: Tensor<T>.From(mask.Select(T.CreateTruncating).ToArray(), h, 1, m, n));
            return c.Span.ToArray();
        });
        float[] one = Run<float>(1);
        Assert.Equal(one, Run<float>(2));
        Assert.True(Naive.RelativeError(one, expected) < 1e-5, $"m={m} n={n} k={k} h={h} density {density}");
        Assert.All(Enumerable.Range(0, one.Length).Where(i => mask[i] == 0), i => Assert.Equal(0f, one[i]));
        Assert.True(Naive.RelativeError(Run<double>(2), expected) < 1e-12, $"double: m={m} n={n} k={k} h={h}");
    }

    [Fact]
    public void MaskedProductAboveItsDensityRunsTheWholeProduct()
    {
        // A mask past MaskedMaxDensity, large enough to be measured (m·n ≥ 16384): the whole product is faster, and every
        // place then holds it, the GEMM's bits; below the bound the dots where the mask says and 0 elsewhere.
        int m = 256, n = 128, k = 40;
        var rng = new Rng(5);
        var a = Tensor<float>.From(Naive.Random(rng, m * k).Select(v => (float)v).ToArray(), m, k);
        var b = Tensor<float>.From(Naive.Random(rng, n * k).Select(v => (float)v).ToArray(), n, k);
        using var whole = Tensor<float>.Empty(m, n);
        MatMul.Multiply(a, false, b, true, whole, accumulate: false);
        foreach (double density in new[] { Gemm.MaskedMaxDensity + 0.05, Gemm.MaskedMaxDensity - 0.05 })
        {
            var mask = Tensor<float>.From(Enumerable.Range(0, m * n).Select(_ => rng.NextDouble() < density ? 1f : 0).ToArray(), m, n);
            using var c = Tensor<float>.Empty(m, n);
            MatMul.Multiply(a, false, b, true, c, accumulate: false, where: mask);
            if (density > Gemm.MaskedMaxDensity) Assert.Equal(whole.Span.ToArray(), c.Span.ToArray());
            else
                for (int i = 0; i < m * n; i++) // the dots' sums, in their own order, where the mask says; exactly 0 elsewhere
                    Assert.Equal(mask.Span[i] == 0 ? 0 : whole.Span[i], c.Span[i], 1e-4);
        }
        // Two heads' products summed into one c: a masked product writes each into its own block, so it refuses.
        var heads = Tensor<float>.From(Naive.Random(rng, 2 * n * k).Select(v => (float)v).ToArray(), 2, n, k);
        using var summed = Tensor<float>.Empty(m, n);
        var anyMask = Tensor<float>.From(Enumerable.Repeat(1f, m * n).ToArray(), m, n);
        Assert.Throws<ArgumentException>(() => MatMul.Multiply(a, false, heads, true, summed, accumulate: false, where: anyMask));
    }

    [Property(MaxTest = 60)]
    public void MatrixTimesVectorMatchesNaiveOnTheMaskedRows(int seed)
    {
        // Rows where the mask is zero must come out 0 whatever W holds; k up to 200 covers the 16-lane loop and its tail,
        // m's masked count is rarely a multiple of eight (the kernel reads eight rows at a time).
        var rng = new Rng((ulong)seed);
        int m = 1 + (int)(rng.NextDouble() * 100), k = 1 + (int)(rng.NextDouble() * 200);
        var w = Naive.Random(rng, m * k);
        var x = Naive.Random(rng, k);
        var mask = Naive.Random(rng, m).Select(v => rng.NextDouble() < 0.5 ? v : 0).ToArray();
        var expected = Naive.MatMul(w, false, x, false, m, 1, k).Select((v, i) => mask[i] == 0 ? 0 : v).ToArray();
        var y = Enumerable.Repeat(float.NaN, m).ToArray();
        Gemv.MatrixTimesVector<float>(w.Select(v => (float)v).ToArray(), x.Select(v => (float)v).ToArray(), y, mask.Select(v => (float)v).ToArray());
        Assert.True(Naive.RelativeError(y, expected) < 1e-5, $"m={m} k={k}");
        var yDouble = Enumerable.Repeat(double.NaN, m).ToArray();
        Gemv.MatrixTimesVector<double>(w, x, yDouble, mask);
        Assert.True(Naive.RelativeError(yDouble, expected) < 1e-12, $"m={m} k={k}: double");
    }

    [Fact]
    public void StridedSubmatricesAreReadInPlace()
    {
        // A 3×4 block inside a 5×9 array (stride 9, offset 11), times a 4×2 block of a 6×7 array.
        var rng = new Rng(3);
        var big = Naive.Random(rng, 45);
        var other = Naive.Random(rng, 42);
        var a = new double[12];
        var b = new double[8];
        for (int i = 0; i < 3; i++) for (int p = 0; p < 4; p++) a[i * 4 + p] = big[11 + i * 9 + p];
        for (int p = 0; p < 4; p++) for (int j = 0; j < 2; j++) b[p * 2 + j] = other[8 + p * 7 + j];
        var c = new float[3 * 5];
        Gemm.Multiply(3, 2, 4, new MatrixRef<float>(big.Select(x => (float)x).ToArray(), 11, 9), new MatrixRef<float>(other.Select(x => (float)x).ToArray(), 8, 7),
            new MatrixRef<float>(c, 1, 5), false);
        var expected = Naive.MatMul(a, false, b, false, 3, 2, 4);
        for (int i = 0; i < 3; i++)
            for (int j = 0; j < 2; j++)
                Assert.Equal(expected[i * 2 + j], c[1 + i * 5 + j], 5);
        Assert.Equal(0f, c[0]); // outside the block: untouched
    }
}
