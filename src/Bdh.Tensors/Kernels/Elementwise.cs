using System.Runtime.Intrinsics;

namespace Bdh.Tensors.Kernels;

/// <summary>
/// ReLU, dropout and embedding gather: the small kernels, each with its backward. The entry points that take
/// tensors split the work over the cores; the span forms beneath them do one slice.
/// </summary>
public static class Elementwise
{
    /// <summary>y = max(x, 0); y may be x itself.</summary>
    public static void Relu<T>(Tensor<T> x, Tensor<T> y) where T : unmanaged, IFloatingPointIeee754<T> =>
        Parallelism.ForSlices(y.Length, 1, (s, n) => Relu<T>(x.Span.Slice(s, n), y.Span.Slice(s, n)));

    public static void Relu<T>(ReadOnlySpan<T> x, Span<T> y) where T : unmanaged, IFloatingPointIeee754<T> =>
        TP.Max(x, T.Zero, y);

    /// <summary>dx (+)= dy where y &gt; 0, y = relu(x); a slot that writes may hold dy itself (in place).</summary>
    public static void ReluBackward<T>(Tensor<T> y, Tensor<T> dy, GradSlot<T> dx) where T : unmanaged, IFloatingPointIeee754<T> =>
        Parallelism.ForSlices(y.Length, 1, (s, n) => ReluBackward<T>(y.Span.Slice(s, n), dy.Span.Slice(s, n), dx.Tensor.Span.Slice(s, n), dx.Accumulate));

    /// <summary>
    /// dx (+)= dy where y &gt; 0. Using the output keeps ReLU's backward free of its input. Vectorized as
    /// a masked add: the signs of trained activations are close to random, so a branch per element
    /// would mispredict half the time. Without <paramref name="accumulate"/>, dx may be dy itself (in place).
    /// </summary>
    internal static void ReluBackward<T>(ReadOnlySpan<T> y, ReadOnlySpan<T> dy, Span<T> dx, bool accumulate = true) where T : unmanaged, IFloatingPointIeee754<T> =>
        ReluBackward(y, dy, dx, accumulate, Simd.Widest);

    /// <summary>ReluBackward with float32 vectors of <paramref name="width"/> bits (0: the scalar loop alone), the same bits at every width.</summary>
    internal static unsafe void ReluBackward<T>(ReadOnlySpan<T> y, ReadOnlySpan<T> dy, Span<T> dx, bool accumulate, int width) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int i = 0;
        if (typeof(T) == typeof(float))
            fixed (T* yP = y, dyP = dy, dxP = dx)
                i = width switch
                {
                    512 => ReluBackwardVectors<Float512, Vector512<float>>((float*)yP, (float*)dyP, (float*)dxP, y.Length, accumulate),
                    256 => ReluBackwardVectors<Float256, Vector256<float>>((float*)yP, (float*)dyP, (float*)dxP, y.Length, accumulate),
                    128 => ReluBackwardVectors<Float128, Vector128<float>>((float*)yP, (float*)dyP, (float*)dxP, y.Length, accumulate),
                    _ => 0,
                };
        for (; i < y.Length; i++)
        {
            T passed = y[i] > T.Zero ? dy[i] : T.Zero;
            dx[i] = accumulate ? dx[i] + passed : passed;
        }
    }

    /// <summary>ReluBackward's whole vectors; returns how many elements it did.</summary>
    private static unsafe int ReluBackwardVectors<W, V>(float* y, float* dy, float* dx, int length, bool accumulate)
        where W : struct, IFloatVector<V> where V : struct
    {
        int i = 0;
        for (; i <= length - W.Count; i += W.Count)
        {
            var passed = W.And(W.Load(dy + i), W.GreaterThan(W.Load(y + i), W.Create(0f)));
            W.Store(accumulate ? W.Add(W.Load(dx + i), passed) : passed, dx + i);
        }
        return i;
    }

    /// <summary>How many elements of x are not zero (a vector compared at a time).</summary>
    public static int CountNonZeros<T>(ReadOnlySpan<T> x) where T : unmanaged, IFloatingPointIeee754<T> => CountNonZeros(x, Simd.Widest);

    /// <summary>CountNonZeros with float32 vectors of <paramref name="width"/> bits (0: the scalar loop alone).</summary>
    internal static unsafe int CountNonZeros<T>(ReadOnlySpan<T> x, int width) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int nonZero = 0, i = 0;
        if (typeof(T) == typeof(float))
            fixed (T* p = x)
                (nonZero, i) = width switch
                {
                    512 => CountNonZerosVectors<Float512, Vector512<float>>((float*)p, x.Length),
                    256 => CountNonZerosVectors<Float256, Vector256<float>>((float*)p, x.Length),
                    128 => CountNonZerosVectors<Float128, Vector128<float>>((float*)p, x.Length),
                    _ => (0, 0),
                };
        for (; i < x.Length; i++) if (x[i] != T.Zero) nonZero++;
        return nonZero;
    }

    /// <summary>Non-zeros among CountNonZeros' whole vectors, and how many elements those are.</summary>
    private static unsafe (int NonZero, int Done) CountNonZerosVectors<W, V>(float* x, int length) where W : struct, IFloatVector<V> where V : struct
    {
        int nonZero = 0, i = 0;
        for (; i <= length - W.Count; i += W.Count) nonZero += BitOperations.PopCount(W.NonZeroBits(W.Load(x + i)));
        return (nonZero, i);
    }

    /// <summary>
    /// y = dropout(x), or dropout(x ⊙ factor) with a factor: a mask drawn from <paramref name="seed"/> (see the span form).
    /// BDH's xy = dropout(xs ⊙ ys) is one pass: the undropped product is never stored. With <paramref name="listNonZeros"/>
    /// (y mostly zeros, as a product of ReLU outputs is), float also lists the non-zeros of each row of y for the products
    /// that read it (<see cref="RowLists"/>).
    /// </summary>
    public static void Dropout<T>(ulong seed, double p, Tensor<T> x, Tensor<T>? factor, Tensor<T> y, bool listNonZeros = false)
        where T : unmanaged, IFloatingPointIeee754<T> => Dropout(seed, p, x, factor, y, listNonZeros, factorValuesUpTo: 0);

    /// <summary>
    /// <see cref="Dropout{T}(ulong, double, Tensor{T}, Tensor{T}?, Tensor{T}, bool)"/>, and with a factor, where y has at
    /// most <paramref name="factorValuesUpTo"/> of its elements non-zero, x's and the factor's values at its listed places
    /// (<see cref="RowLists.FactorValues"/>) for its backward (<see cref="DropoutOfProductBackward(double, RowLists, RowLists)"/>).
    /// </summary>
    internal static void Dropout<T>(ulong seed, double p, Tensor<T> x, Tensor<T>? factor, Tensor<T> y, bool listNonZeros, double factorValuesUpTo)
        where T : unmanaged, IFloatingPointIeee754<T>
        => WriteListing(y, listNonZeros, (s, n) =>
            Dropout<T>(seed, p, x.Span.Slice(s, n), factor is null ? default : factor.Span.Slice(s, n), y.Span.Slice(s, n), s, accumulate: false),
            factor is null || factorValuesUpTo <= 0 ? [] : [x, factor], factorValuesUpTo);

    /// <summary>
    /// dx (+)= dropout(dy ⊙ factor), the forward's mask drawn again from the same seed: the gradient of dropout(x ⊙ factor)
    /// with respect to x (no factor: of dropout(x)).
    /// </summary>
    public static void DropoutBackward<T>(ulong seed, double p, Tensor<T> dy, Tensor<T>? factor, GradSlot<T> dx) where T : unmanaged, IFloatingPointIeee754<T> =>
        Parallelism.ForSlices(dy.Length, 1, (s, n) => Dropout<T>(seed, p, dy.Span.Slice(s, n), factor is null ? default : factor.Span.Slice(s, n),
            dx.Tensor.Span.Slice(s, n), s, dx.Accumulate));

    /// <summary>
    /// The gradients of dropout(a ⊙ b) in one pass, which reads dy and draws the mask once: da (+)= dropout(dy ⊙ b),
    /// db (+)= dropout(dy ⊙ a). With <paramref name="reluInputs"/>, a and b are ReLU outputs and their ReLUs' backward is
    /// folded in: da is stored as [a &gt; 0]·da, db as [b &gt; 0]·db. With <paramref name="listNonZeros"/> (db mostly
    /// zeros: BDH's dys, non-zero only where xy is), float also lists the non-zeros of each row of a db that is written,
    /// not added to (<see cref="Dropout{T}(ulong, double, Tensor{T}, Tensor{T}?, Tensor{T}, bool)"/>).
    /// </summary>
    public static void DropoutOfProductBackward<T>(ulong seed, double p, Tensor<T> dy, Tensor<T> a, Tensor<T> b, GradSlot<T> da, GradSlot<T> db,
        bool reluInputs = false, bool listNonZeros = false) where T : unmanaged, IFloatingPointIeee754<T>
        => WriteListing(db.Tensor, listNonZeros && !db.Accumulate, (s, n) =>
            Dropout<T>(seed, p, dy.Span.Slice(s, n), b.Span.Slice(s, n), da.Tensor.Span.Slice(s, n), da.Accumulate,
                a.Span.Slice(s, n), db.Tensor.Span.Slice(s, n), db.Accumulate, s, Simd.Widest, reluInputs));

    /// <summary>
    /// The gradients of dropout(a ⊙ b), a and b ReLU outputs, from a dy that is non-zero at most where the product is
    /// (<paramref name="dy"/>: lists that are its only copy, at the places of the product's lists <paramref name="product"/>,
    /// which hold a's and b's values there: BDH's dxy at xy's non-zeros). There the mask kept the element and both factors
    /// are positive, so da = (dy·b)·scale and db = (dy·a)·scale, the values the whole pass computes there, and both are 0
    /// everywhere else: returned as lists at the same places, from the lists alone (a trained model's xy is 3% non-zero).
    /// </summary>
    internal static (RowLists Da, RowLists Db) DropoutOfProductBackward(double p, RowLists dy, RowLists product)
    {
        if (!dy.HasPlacesOf(product) || product.FactorValues.Length != 2)
            throw new ArgumentException("dy's lists are to be at the product's places, which hold its two factors' values");
        float scale = (float)(1.0 / (1.0 - p));
        var (da, db) = (dy.AtSamePlaces(), dy.AtSamePlaces());
        float[] dyValues = dy.Value, aValues = product.FactorValues[0], bValues = product.FactorValues[1], daValues = da.Value, dbValues = db.Value;
        Parallelism.ForSlices((int)dy.NonZeros(0, dy.Rows), 1, (s, n) =>
        {
            for (int e = s; e < s + n; e++)
            {
                daValues[e] = dyValues[e] * bValues[e] * scale;
                dbValues[e] = dyValues[e] * aValues[e] * scale;
            }
        });
        return (da, db);
    }

    /// <summary>
    /// y = dropout(a ⊙ b) from b's lists at a's non-zeros, which hold a's values there (<see cref="RowLists.AtNonZerosOf"/>:
    /// BDH's ys, computed only where xs fires): a ⊙ b is 0 everywhere else, so the mask is drawn at those places only (a
    /// fifth of a trained model's, where the whole pass draws it for every element: its hash is that pass's work). The
    /// same values as <see cref="Dropout{T}(ulong, double, Tensor{T}, Tensor{T}?, Tensor{T}, bool)"/> with a factor, and
    /// the same lists of y's non-zeros, made from the lists alone; they carry a's and b's values at each entry and are y's
    /// only copy (<see cref="RowLists.IsOnlyCopy"/>) where at most <paramref name="factorValuesUpTo"/> of y's elements are
    /// non-zero. Past that y is written whole and its lists carry no factors' values, as the whole pass leaves them.
    /// </summary>
    internal static unsafe void DropoutOfProduct(ulong seed, double p, RowLists b, Tensor<float> y, double factorValuesUpTo)
    {
        if (b.PlacesOf is null || b.FactorValues.Length != 1 || y.Length != b.Rows * b.Cols)
            throw new ArgumentException("dropout of a listed product takes a masked product's lists, with its mask's values, of y's size");
        var key = DropoutKey.For(seed, p, start: 0);
        var product = new RowLists(b.Rows, b.Cols, factors: 2, factorRoom: b.Rows * b.Cols);
        Parallelism.ForRowRanges(b.Rows, parallel: b.NonZeros(0, b.Rows) >= 1 << 15, (r0, r1) =>
        {
            switch (Simd.Widest)
            {
                case 512: DropoutOfListedRows<Float512, Vector512<float>>(key, b, product, r0, r1); break;
                case 256: DropoutOfListedRows<Float256, Vector256<float>>(key, b, product, r0, r1); break;
                default: DropoutOfListedRows<Float128, Vector128<float>>(key, b, product, r0, r1); break;
            }
        });
        bool listsOnly = product.NonZeros(0, product.Rows) <= factorValuesUpTo * y.Length;
        if (!listsOnly) product.DropFactorValues();
        product.Seal();
        product.IsOnlyCopy = true;
        y.NonZeroRows = product;
        if (!listsOnly) y.WriteListedValues();
    }

    /// <summary>
    /// <see cref="DropoutOfProduct(ulong, double, RowLists, Tensor{float}, double)"/> for rows [r0, r1) at width W: each row's
    /// dropped products at b's entries, then their non-zeros (each with its column and a's and b's values), one row after
    /// another in the product's room from the entry where b's row r0 starts (each row has at most b's entries, so the
    /// rows of other calls are not reached), for <see cref="RowLists.Seal"/> to move as one run.
    /// </summary>
    private static unsafe void DropoutOfListedRows<W, V>(DropoutKey key, RowLists b, RowLists product, int r0, int r1)
        where W : struct, IFloatVector<V> where V : struct
    {
        int cols = b.Cols;
        float[] droppedRow = TensorPool<float>.Rent(cols);
        int[] keptRow = TensorPool<int>.Rent(cols + 16);
        var scale = W.Create(key.Scale);
        fixed (int* index = b.Index, productIndex = product.Index, kept = keptRow)
        fixed (float* aValues = b.FactorValues[0], bValues = b.Value, dropped = droppedRow, productValues = product.Value,
            productA = product.FactorValues[0], productB = product.FactorValues[1])
            for (int r = r0, at = r0 < r1 ? b.Start[r0] : 0; r < r1; r++)
            {
                int start = b.Start[r], count = b.Count[r], e = 0;
                uint rowElement = (uint)(r * cols); // the element index of the row's column 0 in the whole tensor
                if (W.IsAccelerated)
                    for (; e <= count - W.Count; e += W.Count)
                    {
                        var keeps = W.DropoutKeepsAt(index + start + e, rowElement, key.Low, key.High, key.Threshold);
                        W.Store(W.And(W.Multiply(W.Multiply(W.Load(aValues + start + e), W.Load(bValues + start + e)), scale), keeps), dropped + e);
                    }
                for (; e < count; e++)
                    dropped[e] = key.Keeps(rowElement + (uint)index[start + e]) ? aValues[start + e] * bValues[start + e] * key.Scale : 0f;
                int nonZero = SparseGemm.NonZeros<W, V>(dropped, count, kept);
                for (int q = 0; q < nonZero; q++)
                {
                    int from = start + kept[q];
                    (productIndex[at + q], productValues[at + q]) = (index[from], dropped[kept[q]]);
                    (productA[at + q], productB[at + q]) = (aValues[from], bValues[from]);
                }
                product.ListedRow(r, at, nonZero);
                at += nonZero;
            }
        TensorPool<float>.Return(droppedRow);
        TensorPool<int>.Return(keptRow);
    }

    /// <summary>
    /// write(start, length) over slices of <paramref name="written"/>'s elements in parallel; with
    /// <paramref name="listNonZeros"/> and a float tensor, the slices are whole rows (of the last dimension), each thread
    /// writes its slice a block of <see cref="ListingBlock"/> floats at a time and lists the non-zeros of each block's rows
    /// while they are in its caches, with the <paramref name="factors"/>' values there until the rows listed so far hold more
    /// than <paramref name="factorValuesUpTo"/> of their elements (then none: a tensor that dense keeps no factors' values,
    /// and one just under the bound may lose them too, to blocks denser than the rest); the sealed lists become the
    /// tensor's. Else it has none.
    /// </summary>
    private static unsafe void WriteListing<T>(Tensor<T> written, bool listNonZeros, Action<int, int> write, Tensor<T>[]? factors = null,
        double factorValuesUpTo = 0) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int cols = written.Rank > 0 ? written.Shape[^1] : 0;
        factors ??= [];
        int blockRows = Math.Max(1, ListingBlock / cols), blockLength = blockRows * cols;
        // Room for the factors' values up to the bound, and the blocks each thread may list past it before it stops.
        int factorRoom = (int)Math.Min(written.Length, factorValuesUpTo * written.Length + Parallelism.Threads * blockLength);
        var lists = listNonZeros && typeof(T) == typeof(float) && cols > 0 ? new RowLists(written.Length / cols, cols, factors.Length, factorRoom) : null;
        if (lists is null)
        {
            Parallelism.ForSlices(written.Length, 1, write);
            written.NonZeroRows = null;
            return;
        }
        long entriesListed = 0, elementsListed = 0;
        bool takingFactors = factors.Length > 0;
        Parallelism.ForSlices(written.Length, cols, (s, n) =>
        {
            for (int b = s; b < s + n; b += blockLength)
            {
                int length = Math.Min(blockLength, s + n - b), first = b / cols, rows = length / cols;
                write(b, length);
                fixed (T* y = written.Span) lists.ListRows(first, rows, (float*)y + b);
                if (!Volatile.Read(ref takingFactors)) continue;
                fixed (T* factor0 = factors[0].Span, factor1 = factors[1].Span)
                    if (!lists.TakeFactorValues(first, rows, (float*)factor0 + b, (float*)factor1 + b)
                        || Interlocked.Add(ref entriesListed, lists.NonZeros(first, rows)) > factorValuesUpTo * Interlocked.Add(ref elementsListed, length))
                        Volatile.Write(ref takingFactors, false);
            }
        });
        if (!takingFactors) lists.DropFactorValues(); // some blocks were listed without them
        lists.Seal();
        written.NonZeroRows = lists;
    }

    /// <summary>
    /// The floats of a block that <see cref="WriteListing{T}"/> writes and then lists (32 K: 128 KB a tensor, the written
    /// one and two factors well inside a core's L2): the listing and the factors' values read them from the caches. A
    /// block of whole rows; 64 rows of 512 listed after their write cost what listing a thread's whole slice after it
    /// did (bench/HISTORY.md, "Lists of xy's and dys's non-zeros").
    /// </summary>
    private const int ListingBlock = 1 << 15;

    /// <summary>
    /// Inverted dropout: y (+)= (x ⊙ factor) ⊙ mask, where the mask is 0 with probability p and 1/(1 − p) otherwise; an
    /// empty factor is 1 (x ⊙ mask). Element i of the whole tensor is kept when a hash of (seed, i) reaches p·2³²; x,
    /// factor and y are elements [start, start + length). So the mask is never stored — the backward draws it again from
    /// the seed — any slice is drawn on its own (the same for any thread count), and a vector of elements is decided at once.
    /// The hash is a 32-bit integer mixer (lowbias32) applied twice, keyed by the two halves of the seed.
    /// </summary>
    internal static void Dropout<T>(ulong seed, double p, ReadOnlySpan<T> x, ReadOnlySpan<T> factor, Span<T> y, int start, bool accumulate)
        where T : unmanaged, IFloatingPointIeee754<T> => Dropout(seed, p, x, factor, y, start, accumulate, Simd.Widest);

    /// <summary>Dropout with float32 vectors of <paramref name="width"/> bits (0: the scalar loop alone), the same bits at every width.</summary>
    internal static void Dropout<T>(ulong seed, double p, ReadOnlySpan<T> x, ReadOnlySpan<T> factor, Span<T> y, int start, bool accumulate, int width)
        where T : unmanaged, IFloatingPointIeee754<T> => Dropout(seed, p, x, factor, y, accumulate, default, default, false, start, width, reluFactors: false);

    /// <summary>
    /// Dropout into y, and with the same mask into y2 where y2 is not empty: y2 (+)= (x ⊙ factor2) ⊙ mask, both in one pass.
    /// With <paramref name="reluFactors"/> (two outputs: the gradients of a product of two ReLU outputs), y is stored zero
    /// where factor2 is not positive and y2 where factor is not: each gradient where its own input is.
    /// </summary>
    internal static unsafe void Dropout<T>(ulong seed, double p, ReadOnlySpan<T> x, ReadOnlySpan<T> factor, Span<T> y, bool accumulate,
        ReadOnlySpan<T> factor2, Span<T> y2, bool accumulate2, int start, int width, bool reluFactors) where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (reluFactors && y2.IsEmpty) throw new ArgumentException("dropout masks by the factors only with two outputs");
        if (!factor.IsEmpty && factor.Length != x.Length) throw new ArgumentException("dropout's factor and input differ in length");
        if (!y2.IsEmpty && (factor2.Length != x.Length || y2.Length != x.Length)) throw new ArgumentException("dropout's second factor or output differs in length");
        var key = DropoutKey.For(seed, p, start);
        T scale = T.CreateTruncating(1.0 / (1.0 - p));
        int i = 0;
        if (typeof(T) == typeof(float))
            fixed (T* xP = x, fP = factor, yP = y, f2P = factor2, y2P = y2)
            {
                var second = new SecondOutput((float*)f2P, (float*)y2P, accumulate2, reluFactors);
                i = width switch
                {
                    512 => DropoutVectors<Float512, Vector512<float>>(key, (float*)xP, (float*)fP, (float*)yP, x.Length, accumulate, second),
                    256 => DropoutVectors<Float256, Vector256<float>>(key, (float*)xP, (float*)fP, (float*)yP, x.Length, accumulate, second),
                    128 => DropoutVectors<Float128, Vector128<float>>(key, (float*)xP, (float*)fP, (float*)yP, x.Length, accumulate, second),
                    _ => 0,
                };
            }
        for (; i < x.Length; i++)
        {
            bool kept = key.Keeps((uint)(start + i));
            T product = factor.IsEmpty ? x[i] : x[i] * factor[i];
            T value = kept ? product * scale : T.Zero;
            value = accumulate ? y[i] + value : value;
            y[i] = reluFactors && !(factor2[i] > T.Zero) ? T.Zero : value;
            if (y2.IsEmpty) continue;
            T value2 = kept ? x[i] * factor2[i] * scale : T.Zero;
            value2 = accumulate2 ? y2[i] + value2 : value2;
            y2[i] = reluFactors && !(factor[i] > T.Zero) ? T.Zero : value2;
        }
    }

    /// <summary>What decides Dropout's mask for a slice: its first element's index, the seed's halves, the threshold, and the kept elements' scale.</summary>
    private readonly record struct DropoutKey(uint Start, uint Low, uint High, uint Threshold, float Scale)
    {
        /// <summary>The key of dropout with probability <paramref name="p"/> drawn from <paramref name="seed"/>, for the slice from element <paramref name="start"/>.</summary>
        public static DropoutKey For(ulong seed, double p, int start) =>
            new((uint)start, (uint)seed, (uint)(seed >> 32), (uint)Math.Min(Math.Round(p * 4294967296.0), uint.MaxValue), (float)(1.0 / (1.0 - p)));

        /// <summary>Whether dropout keeps element <paramref name="element"/> of the whole tensor.</summary>
        public bool Keeps(uint element) => Mix(Mix(element + Low) ^ High) >= Threshold;
    }

    /// <summary>Dropout's second factor and output (Output null: none), and whether each output is masked by the other's factor.</summary>
    private readonly unsafe struct SecondOutput(float* factor, float* output, bool accumulate, bool reluFactors)
    {
        public readonly float* Factor = factor, Output = output;
        public readonly bool Accumulate = accumulate, ReluFactors = reluFactors;
    }

    /// <summary>Dropout's whole vectors (factor null: none); returns how many elements it did.</summary>
    private static unsafe int DropoutVectors<W, V>(DropoutKey key, float* x, float* factor, float* y, int length, bool accumulate, SecondOutput second)
        where W : struct, IFloatVector<V> where V : struct
    {
        var scale = W.Create(key.Scale);
        var zero = W.Create(0f);
        int i = 0;
        for (; i <= length - W.Count; i += W.Count)
        {
            var keeps = W.DropoutKeeps(key.Start + (uint)i, key.Low, key.High, key.Threshold);
            var xi = W.Load(x + i);
            var factor1 = factor == null ? default : W.Load(factor + i);
            var product = factor == null ? xi : W.Multiply(xi, factor1);
            var dropped = W.And(W.Multiply(product, scale), keeps);
            var value = accumulate ? W.Add(W.Load(y + i), dropped) : dropped;
            if (second.Output == null)
            {
                W.Store(value, y + i);
                continue;
            }
            var factor2 = W.Load(second.Factor + i);
            var dropped2 = W.And(W.Multiply(W.Multiply(xi, factor2), scale), keeps);
            var value2 = second.Accumulate ? W.Add(W.Load(second.Output + i), dropped2) : dropped2;
            if (second.ReluFactors)
            {
                value = W.And(value, W.GreaterThan(factor2, zero));
                value2 = W.And(value2, W.GreaterThan(factor1, zero));
            }
            W.Store(value, y + i);
            W.Store(value2, second.Output + i);
        }
        return i;
    }

    internal const uint HashMultiplier1 = 0x7feb352d, HashMultiplier2 = 0x846ca68b;

    /// <summary>
    /// lowbias32: a 32-bit integer mixer whose output bits each depend on every input bit. Each vector width has the
    /// same mixer lane by lane (IFloatVector.DropoutKeeps): the vector types expose no generic arithmetic to share it.
    /// </summary>
    private static uint Mix(uint x)
    {
        x ^= x >> 16; x *= HashMultiplier1;
        x ^= x >> 15; x *= HashMultiplier2;
        return x ^ (x >> 16);
    }

    /// <summary>y[i, :] = weight[ids[i], :] for weight [V, D].</summary>
    public static void EmbeddingForward<T>(ReadOnlySpan<T> weight, ReadOnlySpan<int> ids, Span<T> y, int d)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        int vocab = weight.Length / d;
        for (int i = 0; i < ids.Length; i++)
        {
            if ((uint)ids[i] >= (uint)vocab) throw new ArgumentOutOfRangeException(nameof(ids), $"token {ids[i]} outside vocabulary of {vocab}");
            weight.Slice(ids[i] * d, d).CopyTo(y.Slice(i * d, d));
        }
    }

    /// <summary>
    /// dweight[ids[i], :] += dy[i, :] for weight [V, D], in token order (deterministic); a slot that writes is
    /// zeroed first, as a row no token picked has a zero gradient and a row picked twice sums two.
    /// </summary>
    public static void EmbeddingBackward<T>(Tensor<T> dy, int[] ids, GradSlot<T> dWeight) where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (!dWeight.Accumulate) dWeight.Tensor.Span.Clear();
        EmbeddingBackward<T>(dy.Span, ids, dWeight.Tensor.Span, dWeight.Tensor.Shape[^1]);
    }

    internal static void EmbeddingBackward<T>(ReadOnlySpan<T> dy, ReadOnlySpan<int> ids, Span<T> dWeight, int d)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        for (int i = 0; i < ids.Length; i++)
        {
            Span<T> row = dWeight.Slice(ids[i] * d, d);
            TP.Add(row, dy.Slice(i * d, d), row);
        }
    }
}
