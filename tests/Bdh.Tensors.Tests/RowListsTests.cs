using Bdh.Tensors.Kernels;
using FsCheck.Xunit;

namespace Bdh.Tensors.Tests;

/// <summary>
/// The lists of a mostly-zero tensor's non-zeros (<see cref="RowLists"/>): the dropout kernels that write BDH's xy and
/// dys list exactly their non-zeros, and every product that reads the lists instead of the tensor gives the same bits
/// as the product that scans it.
/// </summary>
public class RowListsTests
{
    /// <summary>Sizes 1..70: 1, odd, and not multiples of a vector.</summary>
    private static int Size(byte raw) => 1 + raw % 70;

    /// <summary>Each row's entries are its non-zeros, in order of column, with their values.</summary>
    private static void AssertListsTheNonZeros(Tensor<float> t)
    {
        var lists = t.NonZeroRows!;
        int cols = t.Shape[^1];
        Assert.Equal((t.Length / cols, cols), (lists.Rows, lists.Cols));
        for (int r = 0; r < lists.Rows; r++)
        {
            var row = t.Span.Slice(r * cols, cols).ToArray();
            int[] expected = Enumerable.Range(0, cols).Where(j => row[j] != 0).ToArray();
            Assert.Equal(expected, lists.Index.AsSpan(lists.Start[r], lists.Count[r]).ToArray());
            Assert.Equal(expected.Select(j => row[j]).ToArray(), lists.Value.AsSpan(lists.Start[r], lists.Count[r]).ToArray());
        }
    }

    [Property(MaxTest = 60)]
    public void DropoutKernelsListExactlyTheNonZerosOfEachRow(byte rowsRaw, byte colsRaw, byte densityRaw, int seed)
    {
        // xy = dropout(xs ⊙ ys) and its gradient dys = [ys > 0]·dropout(dxy ⊙ xs), rows of 1..70 (the vectors' tails),
        // up to 560 rows (more than one thread's slice), factors 0% to 60% non-zero.
        int rows = 8 * Size(rowsRaw), cols = Size(colsRaw);
        double density = densityRaw % 61 / 100.0;
        var rng = new Rng((ulong)seed);
        Tensor<float> Sparse() => Tensor<float>.From(Naive.Random(rng, rows * cols).Select(v => rng.NextDouble() < density ? (float)Math.Abs(v) : 0).ToArray(), rows, cols);
        var (xs, ys, dy) = (Sparse(), Sparse(), Tensor<float>.From(Naive.Random(rng, rows * cols).Select(v => (float)v).ToArray(), rows, cols));
        foreach (int threads in new[] { 1, 2, 3 })
            Threads.On(threads, () =>
            {
                using var xy = Tensor<float>.Empty(rows, cols);
                Elementwise.Dropout(11, 0.25, xs, ys, xy, listNonZeros: true, factorValuesUpTo: 1);
                AssertListsTheNonZeros(xy);
                var places = xy.NonZeroRows!;
                // No factors' values where xy has more non-zeros than the bound; all of them where every row has at most it.
                using (var xyBounded = Tensor<float>.Empty(rows, cols))
                    foreach (double bound in new[] { 0.005, 0.02, 0.1 })
                    {
                        Elementwise.Dropout(11, 0.25, xs, ys, xyBounded, listNonZeros: true, factorValuesUpTo: bound);
                        int kept = xyBounded.NonZeroRows!.FactorValues.Length;
                        if (places.NonZeros(0, rows) > bound * rows * cols) Assert.Equal(0, kept);
                        if (Enumerable.Range(0, rows).All(r => places.Count[r] <= bound * cols)) Assert.Equal(2, kept);
                    }
                for (int r = 0; r < rows; r++) // the factors' values at each listed place
                    for (int e = places.Start[r]; e < places.Start[r] + places.Count[r]; e++)
                    {
                        Assert.Equal(xs.Span[r * cols + places.Index[e]], places.FactorValues[0][e]);
                        Assert.Equal(ys.Span[r * cols + places.Index[e]], places.FactorValues[1][e]);
                    }
                using var dxs = Tensor<float>.Empty(rows, cols);
                using var dys = Tensor<float>.Empty(rows, cols);
                Elementwise.DropoutOfProductBackward(11, 0.25, dy, xs, ys, new(dxs, false), new(dys, false), reluInputs: true, listNonZeros: true);
                AssertListsTheNonZeros(dys);
                Assert.Null(dxs.NonZeroRows);

                // A dy given only at xy's places (BDH's dxy), as lists: the gradients from the lists alone are the whole
                // pass's, there and everywhere else (0).
                var dyListed = places.AtSamePlaces();
                for (int r = 0; r < rows; r++)
                    for (int e = places.Start[r]; e < places.Start[r] + places.Count[r]; e++) dyListed.Value[e] = dy.Span[r * cols + places.Index[e]];
                using var dyAtPlaces = Tensor<float>.Empty(rows, cols);
                dyAtPlaces.NonZeroRows = dyListed;
                dyAtPlaces.WriteListedValues();
                using var dxsWhole = Tensor<float>.Empty(rows, cols);
                using var dysWhole = Tensor<float>.Empty(rows, cols);
                Elementwise.DropoutOfProductBackward(11, 0.25, dyAtPlaces, xs, ys, new(dxsWhole, false), new(dysWhole, false), reluInputs: true);
                var (dxsLists, dysLists) = Elementwise.DropoutOfProductBackward(0.25, dyListed, places);
                foreach (var (whole, lists) in new[] { (dxsWhole, dxsLists), (dysWhole, dysLists) })
                {
                    Assert.True(lists.IsOnlyCopy && lists.HasPlacesOf(places));
                    using var fromLists = Tensor<float>.Empty(rows, cols);
                    fromLists.NonZeroRows = lists;
                    fromLists.WriteListedValues();
                    Assert.True(whole.Span.SequenceEqual(fromLists.Span), $"{rows}x{cols}, {threads} threads");
                }
                // A gradient that is added to holds more than this pass wrote: no lists.
                Elementwise.DropoutOfProductBackward(11, 0.25, dy, xs, ys, new(dxs, true), new(dys, true), reluInputs: true, listNonZeros: true);
                Assert.Null(dys.NonZeroRows);
            });
        // Without the flag, or in double, none; a disposed tensor gives its lists back.
        using var plain = Tensor<float>.Empty(rows, cols);
        Elementwise.Dropout(11, 0.25, xs, ys, plain);
        Assert.Null(plain.NonZeroRows);
        using var inDouble = Tensor<double>.Empty(rows, cols);
        Elementwise.Dropout(11, 0.25, xs.Convert<double>(), ys.Convert<double>(), inDouble, listNonZeros: true);
        Assert.Null(inDouble.NonZeroRows);
        var listed = Tensor<float>.Empty(rows, cols);
        Elementwise.Dropout(11, 0.25, xs, ys, listed, listNonZeros: true);
        listed.Dispose();
        Assert.Null(listed.NonZeroRows);
    }

    [Property(MaxTest = 40)]
    public void AMaskedProductListedAtItsMaskGivesTheDropoutTheWholePassGives(byte hRaw, byte mRaw, byte nRaw, byte kRaw, byte densityRaw, int seed)
    {
        // BDH's ys = relu(ln(a)·encoder_v) where xs fires, as lists at xs's places holding xs's values (its only copy),
        // then xy = dropout(xs ⊙ ys) from those lists alone: ys written out, xy, xy's lists and their factors' values are
        // those of the whole masked product and the whole dropout pass, for any thread count. h heads of [m, n] (each
        // under the size a masked product counts its mask's density from, so each goes by dots), xs 0% to 30% non-zero.
        int h = 1 + hRaw % 3, m = Size(mRaw), n = Size(nRaw), k = Size(kRaw);
        double density = densityRaw % 31 / 100.0;
        var rng = new Rng((ulong)seed);
        Tensor<float> Dense(params int[] shape) => Tensor<float>.From(Naive.Random(rng, shape.Aggregate(1, (a, b) => a * b)).Select(v => (float)v).ToArray(), shape);
        var xs = Tensor<float>.From(Naive.Random(rng, h * m * n).Select(v => rng.NextDouble() < density ? (float)Math.Abs(v) : 0).ToArray(), h, 1, m, n);
        var (lnA, encoderVRows) = (Dense(1, 1, m, k), Dense(h, 1, n, k));
        using var ysWhole = Tensor<float>.Empty(h, 1, m, n);
        MatMul.Multiply(lnA, false, encoderVRows, true, ysWhole, accumulate: false, relu: true, where: xs);
        using var xyWhole = Tensor<float>.Empty(h, 1, m, n);
        foreach (int threads in new[] { 1, 2, 3 })
            Threads.On(threads, () =>
            {
                using var ys = Tensor<float>.From(Enumerable.Repeat(float.NaN, h * m * n).ToArray(), h, 1, m, n);
                MatMul.Multiply(lnA, false, encoderVRows, true, ys, accumulate: false, relu: true, xs, listAtWhere: true);
                var ysLists = ys.NonZeroRows!;
                Assert.True(ysLists.IsOnlyCopy && ReferenceEquals(xs, ysLists.PlacesOf));
                Assert.True(ys.Span.ToArray().All(float.IsNaN)); // the storage is not written
                for (int r = 0; r < h * m; r++)
                {
                    var entries = Enumerable.Range(ysLists.Start[r], ysLists.Count[r]).ToArray();
                    Assert.Equal(Enumerable.Range(0, n).Where(j => xs.Span[r * n + j] != 0), entries.Select(e => ysLists.Index[e]));
                    Assert.Equal(entries.Select(e => xs.Span[r * n + ysLists.Index[e]]), entries.Select(e => ysLists.FactorValues[0][e]));
                }
                foreach (double bound in new[] { 0.0, 0.05, 1.0 })
                {
                    Elementwise.Dropout(11, 0.25, xs, ysWhole, xyWhole, listNonZeros: true, factorValuesUpTo: 1);
                    using var xy = Tensor<float>.Empty(h, 1, m, n);
                    Elementwise.DropoutOfProduct(11, 0.25, ysLists, xy, bound);
                    var (lists, whole) = (xy.NonZeroRows!, xyWhole.NonZeroRows!);
                    bool listsOnly = whole.NonZeros(0, h * m) <= bound * h * m * n;
                    Assert.Equal(listsOnly, lists.IsOnlyCopy);
                    Assert.Equal(listsOnly ? 2 : 0, lists.FactorValues.Length);
                    Assert.Equal(whole.NonZeros(0, h * m), lists.NonZeros(0, h * m));
                    for (int r = 0; r < h * m; r++)
                        for (int e = 0; e < whole.Count[r]; e++)
                        {
                            int we = whole.Start[r] + e, le = lists.Start[r] + e;
                            Assert.Equal((whole.Index[we], whole.Value[we]), (lists.Index[le], lists.Value[le]));
                            if (listsOnly) Assert.Equal((whole.FactorValues[0][we], whole.FactorValues[1][we]), (lists.FactorValues[0][le], lists.FactorValues[1][le]));
                        }
                    xy.WriteListedValues();
                    Assert.True(xyWhole.Span.SequenceEqual(xy.Span), $"xy: h={h} m={m} n={n}, {threads} threads, bound {bound}");
                }
                ys.WriteListedValues();
                Assert.True(ysWhole.Span.SequenceEqual(ys.Span), $"ys: h={h} m={m} n={n} k={k}, {threads} threads");
            });
        // A head whose mask is too dense for dots (one large head, 60% non-zero) leaves the whole product, with no lists.
        var denseMask = Tensor<float>.From(Naive.Random(rng, 256 * 128).Select(v => rng.NextDouble() < 0.6 ? 1f : 0).ToArray(), 1, 1, 256, 128);
        using var whole2 = Tensor<float>.Empty(1, 1, 256, 128);
        MatMul.Multiply(Dense(1, 1, 256, 8), false, Dense(1, 1, 128, 8), true, whole2, accumulate: false, relu: true, denseMask, listAtWhere: true);
        Assert.Null(whole2.NonZeroRows);
    }

    /// <summary>A copy of t with lists of its rows' non-zeros, listed in two parts as two threads would.</summary>
    private static unsafe Tensor<float> Listed(Tensor<float> t, int split)
    {
        var copy = t.Clone();
        int cols = t.Shape[^1], rows = t.Length / cols;
        split = Math.Min(split, rows);
        copy.NonZeroRows = new RowLists(rows, cols);
        fixed (float* p = copy.Span)
        {
            copy.NonZeroRows.ListRows(0, split, p);
            copy.NonZeroRows.ListRows(split, rows - split, p + split * cols);
        }
        copy.NonZeroRows.Seal();
        return copy;
    }

    [Property(MaxTest = 40)]
    public void ProductsThatReadTheListsGiveTheScansBits(byte mRaw, byte nRaw, byte kRaw, byte hRaw, byte splitRaw, byte densityRaw, int seed)
    {
        // BDH's products over xy [H, 1, m, k] and dys: xy·decoder (a plain sparse A), dDecoder = xyᵀ·dY (a transposed
        // sparse A), dEncoder_v = ln(a)ᵀ·dys (a sparse B), and the masked dxy = dY·decoderᵀ where xy ≠ 0; k = 1024..1087
        // so each is large enough to be measured, 1% to 4% non-zero (a transposed xy listed by columns from its lists) or
        // 11% to 14% (turned by blocks, as without lists), so each goes sparse. Each with the lists equals the same product
        // scanning the tensor, bit for bit, for any thread count.
        int m = 16 + mRaw % 100, k = 1024 + kRaw % 64, n = 1 + nRaw % 40, h = 1 + hRaw % 3;
        double density = (densityRaw % 8 < 4 ? 0.01 : 0.11) + densityRaw % 4 / 100.0;
        var rng = new Rng((ulong)seed);
        Tensor<float> Dense(params int[] shape) => Tensor<float>.From(Naive.Random(rng, shape.Aggregate(1, (a, b) => a * b)).Select(v => (float)v).ToArray(), shape);
        var xy = Tensor<float>.From(Naive.Random(rng, h * m * k).Select(v => rng.NextDouble() < density ? (float)v : 0).ToArray(), h, 1, m, k);
        using var xyListed = Listed(xy, splitRaw % (h * m + 1));
        var (decoder, dY, lnA) = (Dense(h, 1, k, n), Dense(1, 1, m, n), Dense(1, 1, m, n));
        var products = new (string Name, Func<Tensor<float>, Tensor<float>> Run)[]
        {
            ("xy·decoder", a => Product(a, false, decoder, false, [1, 1, m, n])),
            ("xyᵀ·dY", a => Product(a, true, dY, false, [h, 1, k, n])),
            ("ln(a)ᵀ·dys", b => Product(lnA, true, b, false, [h, 1, n, k])),
            ("dY·decoderᵀ where xy ≠ 0", mask => Product(dY, false, decoder, true, [h, 1, m, k], mask)),
        };
        foreach (var (name, run) in products)
        {
            using var scanned = Threads.On(1, () => run(xy));
            foreach (int threads in new[] { 1, 2, 3 })
            {
                using var listed = Threads.On(threads, () => run(xyListed));
                Assert.True(scanned.Span.SequenceEqual(listed.Span), $"{name}: m={m} n={n} k={k} h={h}, {threads} threads");
            }
        }
        // The masked dxy into lists at xy's places that are its only copy (xy's gradient, read as lists by its backward):
        // the same dots, and nothing written into the tensor's storage.
        using var maskedDense = Product(dY, false, decoder, true, [h, 1, m, k], xy);
        foreach (int threads in new[] { 1, 2, 3 })
        {
            using var intoLists = Tensor<float>.From(Enumerable.Repeat(float.NaN, h * m * k).ToArray(), h, 1, m, k);
            intoLists.NonZeroRows = xyListed.NonZeroRows!.AtSamePlaces();
            Threads.On(threads, () => MatMul.Multiply(dY, false, decoder, true, intoLists, accumulate: false, where: xyListed));
            Assert.True(intoLists.Span.ToArray().All(float.IsNaN));
            intoLists.WriteListedValues();
            Assert.True(maskedDense.Span.SequenceEqual(intoLists.Span), $"masked dxy into lists: m={m} n={n} k={k} h={h}, {threads} threads");
        }
        // The lists decide the density too: counted, where the scan samples.
        var heads = xyListed.Matrix(0, k);
        Assert.True(SparseGemm.IsSparse(m, n, k, heads));
        Assert.Same(xyListed.NonZeroRows, heads.Lists);
    }

    /// <summary>op(a)·op(b) summed to shape, or with a mask (its shape) where the mask says.</summary>
    private static Tensor<float> Product(Tensor<float> a, bool transA, Tensor<float> b, bool transB, int[] shape, Tensor<float>? where = null)
    {
        var c = Tensor<float>.Empty(shape);
        MatMul.Multiply(a, transA, b, transB, c, accumulate: false, where: where);
        return c;
    }
}
