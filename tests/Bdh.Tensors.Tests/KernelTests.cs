using Bdh.Tensors.Kernels;
using FsCheck;
using FsCheck.Xunit;

namespace Bdh.Tensors.Tests;

public class KernelTests
{
    private static int Size(byte raw, int max) => 1 + raw % max;

    private static Tensor<double> Random(Rng rng, params int[] shape) => Tensor<double>.Uniform(rng, -1, 1, shape);

    [Property(MaxTest = 100)]
    public void LayerNormMatchesNaive(byte rowsRaw, byte dRaw, int seed)
    {
        int rows = Size(rowsRaw, 9), d = Size(dRaw, 70);
        var x = Naive.Random(new Rng((ulong)seed), rows * d);
        var y = new double[x.Length];
        LayerNorm.Forward<double>(x, y, new double[rows], d, 1e-5);
        Assert.True(Naive.RelativeError(y, Naive.LayerNorm(x, d, 1e-5)) < 1e-12, $"rows={rows} d={d}");
    }

    [Fact]
    public void LayerNormOfAZeroRowIsZero()
    {
        var y = new float[8];
        var rstd = new float[1];
        LayerNorm.Forward<float>(new float[8], y, rstd, 8, 1e-5f);
        Assert.All(y, v => Assert.Equal(0f, v));
        Assert.Equal(1 / MathF.Sqrt(1e-5f), rstd[0], 3);
    }

    [Property(MaxTest = 100)]
    public void RopeMatchesTheReferenceFormula(byte rowsRaw, byte tRaw, byte halfNRaw, int seed)
    {
        int rows = Size(rowsRaw, 3), t = Size(tRaw, 40), n = 2 * Size(halfNRaw, 40);
        var freqs = Rope.Frequencies(n);
        var v = Naive.Random(new Rng((ulong)seed), rows * t * n);
        var y = new double[v.Length];
        Rope.Forward<double>(v, y, Rope.Table(freqs, t));
        // The reference rounds cos/sin to float32 (1 ULP ≈ 6e-8); the naive formula uses exact ones.
        Assert.True(Naive.RelativeError(y, Naive.Rope(v, t, n, freqs)) < 3e-7, $"rows={rows} T={t} N={n}");
    }

    [Property(MaxTest = 100)]
    public void RopeInFloatRoundsAsTheReferenceAndAnyRowSliceAgrees(byte rowsRaw, byte tRaw, byte halfNRaw, byte cutRaw, int seed)
    {
        // The float kernel (16 lanes at a time, then pairs) against the reference's arithmetic written out
        // element by element in float: v·cos + (−v[2i+1], v[2i])·sin, each product rounded. Bit for bit.
        int t = Size(tRaw, 9), n = 2 * Size(halfNRaw, 40), rows = Size(rowsRaw, 3) * t;
        var table = Rope.Table(Rope.Frequencies(n), t);
        var v = Naive.Random(new Rng((ulong)seed), rows * n).Select(x => (float)x).ToArray();
        var expected = new float[v.Length];
        for (int r = 0; r < rows; r++)
            for (int j = 0; j < n; j += 2)
            {
                int at = r * n + j, tab = r % t * n + j;
                expected[at] = v[at] * table.Cos[tab] + -v[at + 1] * table.Sin[tab];
                expected[at + 1] = v[at + 1] * table.Cos[tab + 1] + v[at] * table.Sin[tab + 1];
            }
        var whole = new float[v.Length];
        Rope.Forward<float>(v, whole, table);
        Assert.Equal(expected, whole);
        // The backward rotates by −θ and accumulates: dv + Rᵀ·dy, written out the same way (dy = v, dv = expected).
        var back = (float[])expected.Clone();
        for (int r = 0; r < rows; r++)
            for (int j = 0; j < n; j += 2)
            {
                int at = r * n + j, tab = r % t * n + j;
                back[at] += v[at] * table.Cos[tab] + -v[at + 1] * -table.Sin[tab];
                back[at + 1] += v[at + 1] * table.Cos[tab + 1] + v[at] * -table.Sin[tab + 1];
            }
        var accumulated = (float[])expected.Clone();
        Rope.Backward<float>(v, accumulated, table);
        Assert.Equal(back, accumulated);
        // Rows [cut, rows) alone, told where they start, give the same rows.
        int cut = cutRaw % rows;
        var tail = new float[(rows - cut) * n];
        Rope.Forward<float>(v.AsSpan(cut * n), tail, table, firstRow: cut);
        Assert.Equal(whole.AsSpan(cut * n).ToArray(), tail);
    }

    [Property(MaxTest = 100)]
    public void RopeBackwardIsTheTransposeOfForward(byte tRaw, byte halfNRaw, int seed)
    {
        // <rope(v), w> = <v, ropeᵀ(w)> for every v, w: the backward is the adjoint of the forward.
        int t = Size(tRaw, 20), n = 2 * Size(halfNRaw, 20);
        var rng = new Rng((ulong)seed);
        var table = Rope.Table(Rope.Frequencies(n), t);
        double[] v = Naive.Random(rng, t * n), w = Naive.Random(rng, t * n), rv = new double[t * n], rtw = new double[t * n];
        Rope.Forward<double>(v, rv, table);
        Rope.Backward<double>(w, rtw, table);
        double lhs = rv.Zip(w, (a, b) => a * b).Sum(), rhs = v.Zip(rtw, (a, b) => a * b).Sum();
        Assert.Equal(lhs, rhs, 1e-12);
    }

    [Property(MaxTest = 50)]
    public void BackwardKernelsOverwriteWhenNotAccumulating(byte rowsRaw, byte halfDRaw, int seed)
    {
        // Each backward kernel given a slot that writes, over a buffer of NaNs, equals the same kernel given a
        // slot that accumulates, over zeros, bit for bit: a fresh gradient buffer is written, never read.
        int rows = Size(rowsRaw, 9), d = 2 * Size(halfDRaw, 40);
        var rng = new Rng((ulong)seed);
        var x = Tensor<double>.From(Naive.Random(rng, rows * d), rows, d);
        var dy = Tensor<double>.From(Naive.Random(rng, rows * d), rows, d);
        int[] targets = Enumerable.Range(0, rows).Select(_ => rng.NextInt(d)).ToArray();
        int[] ids = Enumerable.Range(0, rows).Select(_ => rng.NextInt(rows)).ToArray(); // repeats: rows summed
        var y = Tensor<double>.Empty(rows, d);
        var rstd = Tensor<double>.Empty(rows);
        LayerNorm.Forward(x, y, rstd, 1e-5);
        var table = Rope.Table(Rope.Frequencies(d), rows);
        var firstRow = Tensor<double>.From(dy.Span[..d].ToArray(), 1, d);
        // The attention as one head of one sequence: Q = x, V = y, T = rows.
        var (q, values, dOutput) = (x.Reshape(1, 1, rows, d), y.Reshape(1, 1, rows, d), dy.Reshape(1, 1, rows, d));
        var scores = Tensor<double>.Empty(1, 1, rows, rows);
        CausalLinearAttention.Forward(q, values, scores, Tensor<double>.Empty(1, 1, rows, d));
        GradSlot<double> AsHead(GradSlot<double> slot) => slot with { Tensor = slot.Tensor.Reshape(1, 1, rows, d) };
        GradSlot<double> Spare() => new(Tensor<double>.Zeros(rows, d), Accumulate: true); // the other output of a two-output kernel
        var kernels = new (string Name, Action<GradSlot<double>> Run)[]
        {
            ("layernorm", dx => LayerNorm.Backward(dy, y, rstd, dx)),
            ("rope", dx => Rope.Backward(dy, dx, table)),
            ("rope of a ReLU's output", dx => Rope.Backward(dy, dx, table, reluOutput: x)),
            ("attention, dQ", dx => CausalLinearAttention.Backward(q, values, scores, dOutput, AsHead(dx), null)),
            ("attention, dV", dx => CausalLinearAttention.Backward(q, values, scores, dOutput, null, AsHead(dx))),
            ("cross-entropy", dx => CrossEntropy.Backward(x, targets, 0.25, dx)),
            ("relu", dx => Elementwise.ReluBackward(x, dy, dx)),
            ("dropout", dx => Elementwise.DropoutBackward(7, 0.25, dy, null, dx)),
            ("dropout of a product", dx => Elementwise.DropoutBackward(7, 0.25, dy, x, dx)),
            ("dropout of a product, both gradients, da", dx => Elementwise.DropoutOfProductBackward(7, 0.25, dy, x, y, dx, Spare())),
            ("dropout of a product, both gradients, db", dx => Elementwise.DropoutOfProductBackward(7, 0.25, dy, x, y, Spare(), dx)),
            ("dropout of ReLU outputs' product, da", dx => Elementwise.DropoutOfProductBackward(7, 0.25, dy, x, y, dx, Spare(), reluInputs: true)),
            ("dropout of ReLU outputs' product, db", dx => Elementwise.DropoutOfProductBackward(7, 0.25, dy, x, y, Spare(), dx, reluInputs: true)),
            ("embedding", dx => Elementwise.EmbeddingBackward(dy, ids, dx)),
            ("broadcast", dx => BroadcastOps.BroadcastInto(firstRow, dx.Tensor, dx.Accumulate)),
            ("sum", dx => BroadcastOps.SumInto(dy, dx.Tensor, dx.Accumulate)),
            ("multiply-sum", dx => BroadcastOps.MultiplySumInto(dy, x, dx.Tensor, dx.Accumulate)),
            ("swap axes", dx => Layout.SwapAxes(dy, 0, 1, dx.Tensor.Reshape(d, rows), dx.Accumulate)),
        };
        foreach (var (name, run) in kernels)
        {
            var accumulated = Tensor<double>.Zeros(rows, d);
            var written = Tensor<double>.From(Enumerable.Repeat(double.NaN, rows * d).ToArray(), rows, d);
            run(new GradSlot<double>(accumulated, Accumulate: true));
            run(new GradSlot<double>(written, Accumulate: false));
            Assert.True(accumulated.Span.SequenceEqual(written.Span), $"{name}, rows={rows} d={d}");
        }
    }

    [Property(MaxTest = 50)]
    public void RopeRowIsTheTrigOfEachNeuronsAngle(byte nRaw, DoNotSize<ushort> position, int seed)
    {
        // Row computes whole vectors of angles (the last one padded) and its cos in place of the angles: every
        // entry, for any N, must be the one-angle functions' value of its own angle. Positions up to 65535 (unsized:
        // FsCheck keeps a plain ushort within 100).
        int t = position.Item;
        var rng = new Rng((ulong)seed);
        int n = Size(nRaw, 60);
        var freqs = new float[n];
        for (int j = 0; j < n; j++) freqs[j] = (float)rng.NextDouble();
        float[] cos = new float[n], sin = new float[n];
        Rope.Row(freqs, t, cos, sin);
        for (int j = 0; j < n; j++)
        {
            float angle = Rope.Angle(t, freqs[j]);
            Assert.Equal((TorchTrig.Cos(angle), TorchTrig.Sin(angle)), (cos[j], sin[j]));
        }
    }

    [Fact]
    public void TorchTrigIsWithinSixTenthsOfAnUlpOverItsWholeRange()
    {
        // Rounding adds half an ulp to the polynomial's relative error of 6.05e-9 (0.10 ulp at most): PyTorch's bound, 0.60 ulp
        // measured on its own values. The range reduction keeps it up to |x| = 125, and around multiples of π/2, where
        // the result is small.
        static double Ulps(float ours, double exact) => Math.Abs(ours - exact) / Math.ScaleB(1, Math.ILogB((float)exact) - 23);
        var rng = new Rng(11);
        double worst = 0;
        for (int i = 0; i < 200_000; i++)
        {
            float x = (float)((rng.NextDouble() * 2 - 1) * TorchTrig.MaxArgument);
            if (i % 2 == 0) x = (float)(Math.Round(x / (Math.PI / 2)) * (Math.PI / 2)) * (1 + (float)(rng.NextDouble() - 0.5) * 1e-5f);
            if (x == 0 || Math.Abs(x) >= TorchTrig.MaxArgument) continue; // 0 is checked below
            worst = Math.Max(worst, Math.Max(Ulps(TorchTrig.Cos(x), Math.Cos(x)), Ulps(TorchTrig.Sin(x), Math.Sin(x))));
        }
        Assert.InRange(worst, 0.5, 0.61);
        Assert.Equal(1f, TorchTrig.Cos(0f));
        Assert.Equal(0f, TorchTrig.Sin(0f));
        Assert.True(float.IsNegative(TorchTrig.Sin(-0f)));
        Assert.Throws<ArgumentOutOfRangeException>(() => TorchTrig.Cos(200f));
        Assert.Throws<ArgumentOutOfRangeException>(() => TorchTrig.SinCos([0.5f, float.NaN], new float[2], new float[2])); // a NaN in any lane
    }

    [Property(MaxTest = 100)]
    public void CausalAttentionMatchesNaive(byte bRaw, byte hRaw, byte tRaw, byte nRaw, byte dRaw, bool vPerHead, int seed)
    {
        int b = Size(bRaw, 2), h = Size(hRaw, 3), t = Size(tRaw, 20), n = Size(nRaw, 40), d = Size(dRaw, 9), vh = vPerHead ? h : 1;
        var rng = new Rng((ulong)seed);
        using var q = Random(rng, h, b, t, n);
        using var v = Random(rng, vh, b, t, d);
        using var scores = Tensor<double>.Empty(h, b, t, t);
        using var y = Tensor<double>.Empty(h, b, t, d);
        CausalLinearAttention.Forward(q, v, scores, y);
        var expected = Naive.CausalAttention(q.Span.ToArray(), v.Span.ToArray(), b, h, vh, t, n, d);
        Assert.True(Naive.RelativeError(y.Span, expected) < 1e-12, $"B={b} H={h} T={t} N={n} D={d} vHeads={vh}");
        // Row 0 attends to nothing: exactly zero (LayerNorm of it must cope).
        for (int j = 0; j < d; j++) Assert.Equal(0.0, y[0, 0, 0, j]);
    }

    [Theory]
    [InlineData(2, 2, 70, 40, 9, false)]
    [InlineData(1, 3, 67, 33, 5, true)]
    [InlineData(1, 2, 70, 1000, 9, false)] // Q's blocks above the dot-product tiles' limit: its scores by the GEMM
    public void FloatAttentionSkipsNoScoreItReads(int b, int h, int t, int n, int d, bool vPerHead)
    {
        // At T = 70 the float products skip whole tiles above the diagonal at every vector width. The scores start as NaN,
        // and so do pooled arrays of their size (the backward's dS comes from the pool): a score left unwritten that a
        // later product read would turn the float results to NaN; they must match the float64 ones instead.
        Assert.Equal(t * n > CausalLinearAttention.DotProductLimit, n == 1000);
        int vh = vPerHead ? h : 1;
        var rng = new Rng(7);
        using var q = Random(rng, h, b, t, n);
        using var v = Random(rng, vh, b, t, d);
        using var dOut = Random(rng, h, b, t, d);
        var (y, dq, dv) = (Tensor<double>.Empty(h, b, t, d), Tensor<double>.Empty(h, b, t, n), Tensor<double>.Empty(vh, b, t, d));
        using (var scores = Tensor<double>.Empty(h, b, t, t))
        {
            CausalLinearAttention.Forward(q, v, scores, y);
            CausalLinearAttention.Backward(q, v, scores, dOut, new GradSlot<double>(dq, false), new GradSlot<double>(dv, false));
        }
        float[][] poisoned = [.. Enumerable.Range(0, 4).Select(_ => TensorPool<float>.Rent(h * b * t * t))];
        foreach (var array in poisoned) { Array.Fill(array, float.NaN); TensorPool<float>.Return(array); }
        using var qf = q.Convert<float>();
        using var vf = v.Convert<float>();
        using var dOutF = dOut.Convert<float>();
        using var scoresF = Tensor<float>.From(Enumerable.Repeat(float.NaN, h * b * t * t).ToArray(), h, b, t, t);
        var (yf, dqf, dvf) = (Tensor<float>.Empty(h, b, t, d), Tensor<float>.Empty(h, b, t, n), Tensor<float>.Empty(vh, b, t, d));
        CausalLinearAttention.Forward(qf, vf, scoresF, yf);
        CausalLinearAttention.Backward(qf, vf, scoresF, dOutF, new GradSlot<float>(dqf, false), new GradSlot<float>(dvf, false));
        Assert.True(Naive.RelativeError(yf.Span, y.Span) < 1e-5, $"output, {Simd.Accelerated}");
        Assert.True(Naive.RelativeError(dqf.Span, dq.Span) < 1e-5, $"dQ, {Simd.Accelerated}");
        Assert.True(Naive.RelativeError(dvf.Span, dv.Span) < 1e-5, $"dV, {Simd.Accelerated}");
    }

    [Property(MaxTest = 100)]
    public void CrossEntropyMatchesNaive(byte rowsRaw, byte vocabRaw, int seed)
    {
        int rows = Size(rowsRaw, 9), vocab = Size(vocabRaw, 70);
        var rng = new Rng((ulong)seed);
        var logits = Naive.Random(rng, rows * vocab, 10);
        var targets = Enumerable.Range(0, rows).Select(_ => rng.NextInt(vocab)).ToArray();
        Assert.Equal(Naive.CrossEntropy(logits, targets, vocab), CrossEntropy.Forward(Tensor<double>.From(logits, rows, vocab), targets), 1e-12);
        var floatLoss = CrossEntropy.Forward(Tensor<float>.From(logits.Select(x => (float)x).ToArray(), rows, vocab), targets);
        Assert.Equal(Naive.CrossEntropy(logits, targets, vocab), floatLoss, 1e-4);
    }

    [Fact]
    public void CrossEntropyRejectsTargetsOutsideTheVocabulary() =>
        Assert.Throws<ArgumentOutOfRangeException>(() => CrossEntropy.Forward(Tensor<float>.From(new float[4], 1, 4), [4]));

    [Property(MaxTest = 100)]
    public void CountNonZerosMatchesACountedLoop(byte nRaw, byte zeroRaw, int seed)
    {
        // Lengths 1..70 (vector and tail), from no zeros to all zeros; -0 counts as zero.
        var rng = new Rng((ulong)seed);
        double zeroShare = zeroRaw / 255.0;
        var x = Naive.Random(rng, Size(nRaw, 70)).Select(v => rng.NextDouble() < zeroShare ? (v < 0 ? -0.0 : 0.0) : v).ToArray();
        int expected = x.Count(v => v != 0);
        Assert.Equal(expected, Elementwise.CountNonZeros<double>(x));
        Assert.Equal(expected, Elementwise.CountNonZeros<float>(x.Select(v => (float)v).ToArray()));
    }

    [Property(MaxTest = 100)]
    public void ReluAndItsBackwardMatchNaive(byte nRaw, int seed)
    {
        var x = Naive.Random(new Rng((ulong)seed), Size(nRaw, 70));
        var dy = Naive.Random(new Rng((ulong)seed + 1), x.Length);
        var y = new double[x.Length];
        var dx = Enumerable.Repeat(1.0, x.Length).ToArray();
        Elementwise.Relu<double>(x, y);
        Elementwise.ReluBackward<double>(y, dy, dx);
        Assert.Equal(x.Select(v => Math.Max(v, 0)), y);
        Assert.Equal(x.Select((v, i) => 1 + (v > 0 ? dy[i] : 0)), dx); // accumulated
        // In place, without accumulating (the fused matmul + relu turns dy into dC this way).
        var inPlace = (double[])dy.Clone();
        Elementwise.ReluBackward<double>(y, inPlace, inPlace, accumulate: false);
        Assert.Equal(x.Select((v, i) => v > 0 ? dy[i] : 0), inPlace);
    }

    [Property(MaxTest = 100)]
    public void EmbeddingMatchesNaiveGatherAndScatter(byte vocabRaw, byte dRaw, byte countRaw, int seed)
    {
        int vocab = Size(vocabRaw, 9), d = Size(dRaw, 9), count = Size(countRaw, 20);
        var rng = new Rng((ulong)seed);
        var weight = Naive.Random(rng, vocab * d);
        var ids = Enumerable.Range(0, count).Select(_ => rng.NextInt(vocab)).ToArray();
        var y = new double[count * d];
        Elementwise.EmbeddingForward<double>(weight, ids, y, d);
        var dy = Naive.Random(rng, count * d);
        var dWeight = new double[vocab * d];
        Elementwise.EmbeddingBackward<double>(dy, ids, dWeight, d);
        var expectedGrad = new double[vocab * d];
        for (int i = 0; i < count; i++)
            for (int j = 0; j < d; j++)
            {
                Assert.Equal(weight[ids[i] * d + j], y[i * d + j]);
                expectedGrad[ids[i] * d + j] += dy[i * d + j];
            }
        Assert.Equal(expectedGrad, dWeight);
    }

    [Fact]
    public void DropoutIsSeededDropsAboutPAndAnySliceDrawsTheSameMask()
    {
        static float[] Mask(ulong seed, int length, int start)
        {
            var mask = new float[length];
            Elementwise.Dropout<float>(seed, 0.1, Enumerable.Repeat(1f, length).ToArray(), [], mask, start, accumulate: false);
            return mask;
        }
        var a = Mask(5, 100_003, 0);
        double dropped = a.Count(x => x == 0) / (double)a.Length;
        Assert.InRange(dropped, 0.098, 0.102);
        Assert.All(a.Where(x => x != 0), x => Assert.Equal(1f / 0.9f, x));
        // Slices at odd offsets (vector and scalar paths meet at other places) give the same elements,
        // as does the double path; another seed gives another mask.
        Assert.Equal(a.AsSpan(12_345, 50_001).ToArray(), Mask(5, 50_001, 12_345));
        var doubles = new double[1000];
        Elementwise.Dropout<double>(5, 0.1, Enumerable.Repeat(1.0, 1000).ToArray(), [], doubles, 7, accumulate: false);
        Assert.Equal(a.Skip(7).Take(1000).Select(x => (double)(x == 0 ? 0 : (float)(1 / 0.9))), doubles.Select(x => (double)(float)x));
        var other = Mask(6, a.Length, 0);
        Assert.InRange(a.Zip(other).Count(p => (p.First == 0) != (p.Second == 0)) / (double)a.Length, 0.17, 0.19); // independent: 2·0.1·0.9
        // Neighbouring elements are independent too: pairs both dropped at about p².
        double both = Enumerable.Range(0, a.Length - 1).Count(i => a[i] == 0 && a[i + 1] == 0) / (double)(a.Length - 1);
        Assert.InRange(both, 0.008, 0.012);
        // accumulate adds x ⊙ mask onto y.
        var y = Enumerable.Repeat(2f, 40).ToArray();
        Elementwise.Dropout<float>(5, 0.1, Enumerable.Repeat(1f, 40).ToArray(), [], y, 0, accumulate: true);
        Assert.Equal(a.Take(40).Select(m => 2f + m), y);
        // A factor multiplies x before the mask: dropout(x ⊙ f) = (x·f)·mask.
        float[] x = [.. Enumerable.Range(0, 40).Select(i => 0.25f * i - 3)], f = [.. Enumerable.Range(0, 40).Select(i => 1.5f - 0.125f * i)];
        var product = new float[40];
        Elementwise.Dropout<float>(5, 0.1, x, f, product, 0, accumulate: false);
        Assert.Equal(a.Take(40).Select((m, i) => m == 0 ? 0f : x[i] * f[i] * (float)(1 / 0.9)), product);
    }

    [Fact]
    public void EmbeddingRejectsIdsOutsideTheVocabulary()
    {
        float[] weight = [0, 1, 10, 11, 20, 21];
        var y = new float[2];
        Assert.Throws<ArgumentOutOfRangeException>(() => Elementwise.EmbeddingForward<float>(weight, [3], y, 2));
    }

    [Property(MaxTest = 200)]
    public void BatchedMatMulMatchesLoopsForEveryBroadcastPattern(byte b0Raw, byte b1Raw, byte mRaw, byte kRaw, byte nRaw, byte pattern,
        bool transA, bool transB, int seed)
    {
        // Two batch dimensions; each operand holds each of them in full or as 1 (bits of pattern), and the
        // output may be smaller (summed), as for the gradient of a broadcast operand. This covers the
        // folded forms: [B,m,k]·[1,k,n] (x @ encoder) and [B,k,m]ᵀ·[B,k,n] summed over B (its weight gradient).
        int[] batch = [Size(b0Raw, 3), Size(b1Raw, 4)];
        int m = Size(mRaw, 17), k = Size(kRaw, 17), n = Size(nRaw, 40);
        int[] Dims(int bits) => [(bits & 1) != 0 ? batch[0] : 1, (bits & 2) != 0 ? batch[1] : 1];
        int[] aBatch = Dims(pattern), bBatch = Dims(pattern >> 2);
        int[] full = [Math.Max(aBatch[0], bBatch[0]), Math.Max(aBatch[1], bBatch[1])];
        int[] cBatch = [(pattern & 16) != 0 ? 1 : full[0], (pattern & 32) != 0 ? 1 : full[1]];
        var rng = new Rng((ulong)seed);
        using var a = Random(rng, [.. aBatch, transA ? k : m, transA ? m : k]);
        using var b = Random(rng, [.. bBatch, transB ? n : k, transB ? k : n]);
        using var c = Random(rng, [.. cBatch, m, n]);
        var expected = c.Span.ToArray(); // accumulate onto what c holds
        for (int i0 = 0; i0 < full[0]; i0++)
            for (int i1 = 0; i1 < full[1]; i1++)
            {
                int Block(int[] dims, int size) => ((dims[0] == 1 ? 0 : i0) * dims[1] + (dims[1] == 1 ? 0 : i1)) * size;
                var product = Naive.MatMul(a.Span.Slice(Block(aBatch, m * k), m * k).ToArray(), transA,
                    b.Span.Slice(Block(bBatch, k * n), k * n).ToArray(), transB, m, n, k);
                for (int j = 0; j < product.Length; j++) expected[Block(cBatch, m * n) + j] += product[j];
            }
        MatMul.Multiply(a, transA, b, transB, c, accumulate: true);
        Assert.True(Naive.RelativeError(c.Span, expected) < 1e-12);
    }

    [Fact]
    public void BroadcastAddMultiplyAndSumBack()
    {
        using var a = Tensor<double>.From([1, 2, 3, 4, 5, 6], 2, 3);
        using var row = Tensor<double>.From([10, 20, 30], 1, 3);
        using var col = Tensor<double>.From([2, 3], 2, 1);
        Assert.Equal([11.0, 22, 33, 14, 25, 36], BroadcastOps.Add(a, row).Span.ToArray());
        Assert.Equal([2.0, 4, 6, 12, 15, 18], BroadcastOps.Multiply(a, col).Span.ToArray());
        Assert.Equal([2.0, 4, 6, 12, 15, 18], BroadcastOps.Multiply(col, a).Span.ToArray());
        using var rowSum = Tensor<double>.From([double.NaN, double.NaN, double.NaN], 1, 3); // written over, not added to
        BroadcastOps.SumInto(a, rowSum, accumulate: false);
        Assert.Equal([5.0, 7, 9], rowSum.Span.ToArray());
        BroadcastOps.SumInto(a, rowSum, accumulate: true);
        Assert.Equal([10.0, 14, 18], rowSum.Span.ToArray());
        using var colSum = Tensor<double>.From([double.NaN, double.NaN], 2, 1);
        BroadcastOps.SumInto(a, colSum, accumulate: false);
        Assert.Equal([6.0, 15], colSum.Span.ToArray());
        using var same = Tensor<double>.From([double.NaN, 0, 0, 0, 0, 0], 2, 3);
        BroadcastOps.SumInto(a, same, accumulate: false);
        Assert.Equal(a.Span.ToArray(), same.Span.ToArray());
        Assert.Throws<ArgumentException>(() => Broadcast.Shape([2, 3], [4]));
    }

    [Property(MaxTest = 100)]
    public void TransposeMatchesTheNaiveLoopOnStridedBlocks(byte rowsRaw, byte colsRaw, byte innerRaw, byte padRaw, bool accumulate, int seed)
    {
        // Sizes 1..100 cross the 16×16 tiles and their 4×4 blocks; offsets and strides past the rows' ends, as a matrix inside a larger array.
        int rows = 1 + rowsRaw % 100, cols = 1 + colsRaw % 100, inner = 1 + innerRaw % 3, pad = padRaw % 5;
        int srcOffset = pad, srcStride = cols * inner + pad, dstOffset = 2 * pad, dstStride = rows * inner + pad;
        var rng = new Rng((ulong)seed);
        float[] src = Naive.Random(rng, srcOffset + rows * srcStride).Select(x => (float)x).ToArray();
        float[] dst = Naive.Random(rng, dstOffset + cols * dstStride).Select(x => (float)x).ToArray(), expected = (float[])dst.Clone();
        for (int a = 0; a < rows; a++)
            for (int b = 0; b < cols; b++)
                for (int v = 0; v < inner; v++)
                {
                    int x = srcOffset + a * srcStride + b * inner + v, y = dstOffset + b * dstStride + a * inner + v;
                    expected[y] = accumulate ? expected[y] + src[x] : src[x];
                }
        Layout.Transpose<float>(rows, cols, inner, src, srcOffset, srcStride, dst, dstOffset, dstStride, accumulate);
        Assert.Equal(expected, dst);
    }

    [Fact]
    public void SwapAxesTransposesTheMiddleDims()
    {
        using var x = Tensor<double>.From(Enumerable.Range(0, 24).Select(i => (double)i).ToArray(), 2, 3, 4);
        using var y = Tensor<double>.Empty(2, 4, 3);
        Layout.SwapAxes(x, 1, 2, y, accumulate: false);
        for (int a = 0; a < 2; a++) for (int b = 0; b < 3; b++) for (int c = 0; c < 4; c++) Assert.Equal(x[a, b, c], y[a, c, b]);
    }
}

public class TensorAndRngTests
{
    [Fact]
    public void RngIsReproducibleAndItsStateRoundTrips()
    {
        var a = new Rng(42);
        a.NextUInt64();
        var state = a.State;
        var expected = Enumerable.Range(0, 5).Select(_ => a.NextUInt64()).ToArray();
        var b = new Rng(0) { State = state };
        Assert.Equal(expected, Enumerable.Range(0, 5).Select(_ => b.NextUInt64()).ToArray());
        Assert.NotEqual(new Rng(1).NextUInt64(), new Rng(2).NextUInt64());
    }

    [Fact]
    public void NormalSamplesHaveTheRequestedMoments()
    {
        using var t = Tensor<double>.Normal(new Rng(9), 0.02, 200_000);
        double mean = t.Span.ToArray().Average(), std = Math.Sqrt(t.Span.ToArray().Select(x => (x - mean) * (x - mean)).Average());
        Assert.InRange(mean, -2e-4, 2e-4);
        Assert.InRange(std, 0.0198, 0.0202);
    }

    [Fact]
    public void ReshapeIsAViewAndChecksTheElementCount()
    {
        using var t = Tensor<float>.Zeros(2, 6);
        var v = t.Reshape(3, -1);
        Assert.Equal([3, 4], v.Shape);
        v[1, 0] = 5;
        Assert.Equal(5, t[0, 4]);
        Assert.Throws<ArgumentException>(() => t.Reshape(5, 2));
    }

    [Fact]
    public void PooledStorageIsReused()
    {
        var first = Tensor<float>.Empty(12345);
        var array = first.Array;
        first.Dispose();
        using var second = Tensor<float>.Empty(12345);
        Assert.Same(array, second.Array);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(17)]
    [InlineData(1000)]
    [InlineData(300_001)] // large-object heap
    public void PooledTensorsStartOnACacheLineThatStaysPut(int length)
    {
        using var floats = Tensor<float>.Empty(length);
        using var doubles = Tensor<double>.Empty(length);
        nint floatStart = Address(floats.Span), doubleStart = Address(doubles.Span);
        Assert.Equal(0, floatStart % TensorPool<float>.Alignment);
        Assert.Equal(0, doubleStart % TensorPool<double>.Alignment);
        Assert.True(floats.Offset + length <= floats.Array.Length && doubles.Offset + length <= doubles.Array.Length);
        Assert.Equal(floatStart, Address(floats.Reshape(1, length).Span)); // a view starts where its tensor does
        GC.Collect(2, GCCollectionMode.Forced, blocking: true, compacting: true);
        Assert.Equal(floatStart, Address(floats.Span)); // pinned: the offset stays right
        Assert.Equal(doubleStart, Address(doubles.Span));
    }

    private static unsafe nint Address<T>(Span<T> span) where T : unmanaged
    {
        fixed (T* first = span) return (nint)first;
    }
}
