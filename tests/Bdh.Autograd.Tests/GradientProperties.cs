using System.Numerics;
using Bdh.Tensors;
using Bdh.Tensors.Kernels;
using FsCheck.Xunit;
using TP = System.Numerics.Tensors.TensorPrimitives;

namespace Bdh.Autograd.Tests;

/// <summary>
/// For every op: (1) the double-precision analytic gradient matches central differences to
/// <see cref="GradCheck.Tolerance"/> (step <see cref="GradCheck.Step"/>), and (2) the float path gives the
/// same value and gradients as the double path to <see cref="FloatTolerance"/>, measured as
/// <c>max |float − double| / max(max |double|, 1)</c> on inputs that are exact in float (so only the
/// arithmetic differs, not the rounding of the inputs). Shapes are drawn by FsCheck and include 1 and
/// odd sizes; a failure names them.
/// </summary>
public class GradientProperties
{
    public const double FloatTolerance = 1e-5;

    private static int Size(byte raw, int max) => 1 + raw % max;

    /// <summary>Checks op on the inputs: scalarised as Σ op(x) ⊙ W with a fixed random W.</summary>
    private static void Verify(string label, Func<Var<double>[], Var<double>> opDouble, Func<Var<float>[], Var<float>> opFloat, params Tensor<double>[] inputs)
    {
        foreach (var input in inputs) TP.ConvertTruncating<float, double>(input.Convert<float>().Span, input.Span); // exact in float
        Tensor<double>? weights = null;
        Var<T> Scalarise<T>(Var<T> y) where T : unmanaged, IFloatingPointIeee754<T>
        {
            weights ??= Tensor<double>.Uniform(new Rng(99), 0.5, 1.5, y.Shape);
            return Ops.Sum(y * Var<T>.Constant(weights.Convert<T>()));
        }
        double[] errors = GradCheck.Errors(x => Scalarise(opDouble(x)), inputs);
        for (int i = 0; i < errors.Length; i++)
            Assert.True(errors[i] <= GradCheck.Tolerance, $"{label}: input {i} {Tensor<double>.Format(inputs[i].Shape)} gradient error {errors[i]:e2}");

        var (valueD, gradsD) = Evaluate(x => Scalarise(opDouble(x)), inputs.Select(t => t.Clone()).ToArray());
        var (valueF, gradsF) = Evaluate(x => Scalarise(opFloat(x)), inputs.Select(t => t.Convert<float>()).ToArray());
        Assert.True(Math.Abs(valueF - valueD) <= FloatTolerance * Math.Max(1, Math.Abs(valueD)), $"{label}: float value {valueF} vs double {valueD}");
        for (int i = 0; i < inputs.Length; i++)
            Assert.True(RelativeError(gradsF[i], gradsD[i]) <= FloatTolerance, $"{label}: input {i} float gradient differs from double by {RelativeError(gradsF[i], gradsD[i]):e2}");
    }

    private static (double Value, double[][] Grads) Evaluate<T>(Func<Var<T>[], Var<T>> f, Tensor<T>[] inputs) where T : unmanaged, IFloatingPointIeee754<T>
    {
        var vars = inputs.Select(Var<T>.Parameter).ToArray();
        var y = f(vars);
        y.Backward();
        double value = double.CreateTruncating(y.Value.Span[0]);
        var grads = vars.Select(v => v.Grad!.Span.ToArray().Select(double.CreateTruncating).ToArray()).ToArray();
        y.ReleaseGraph();
        return (value, grads);
    }

    private static double RelativeError(double[] a, double[] b)
    {
        double worst = 0, scale = 0;
        for (int i = 0; i < a.Length; i++) { worst = Math.Max(worst, Math.Abs(a[i] - b[i])); scale = Math.Max(scale, Math.Abs(b[i])); }
        return worst / Math.Max(scale, 1);
    }

    private static Tensor<double> Random(Rng rng, params int[] shape) => Tensor<double>.Uniform(rng, -1, 1, shape);

    /// <summary>
    /// Whether a product of x·w (as Verify rounds them, to float) lies within 1e-3 of ReLU's kink, where central
    /// differences would straddle it: the ReLU properties draw again until none does, so every draw is checked.
    /// </summary>
    private static bool NearTheKink(Tensor<double> x, Tensor<double> w)
    {
        using var _ = NoGrad.Scope();
        var product = Ops.MatMul(Var<double>.Constant(x.Convert<float>().Convert<double>()), Var<double>.Constant(w.Convert<float>().Convert<double>()));
        return TP.MinMagnitude<double>(product.Value.Span) < 1e-3;
    }

    [Property(MaxTest = 60)]
    public void MatMul(byte mRaw, byte kRaw, byte nRaw, byte bRaw, byte hRaw, byte form, bool transA, bool transB, int seed)
    {
        int m = Size(mRaw, 7), k = Size(kRaw, 7), n = Size(nRaw, 7), b = Size(bRaw, 3), h = Size(hRaw, 3);
        // 0: plain 2-D; 1: [1,B,·,·]·[H,1,·,·] (x @ encoder, heads leading); 2: [H,B,·,·]·[H,1,·,·] (ln(a) @ encoder_v).
        int[] aBatch = (form % 3) switch { 0 => [], 1 => [1, b], _ => [h, b] }, bBatch = form % 3 == 0 ? [] : [h, 1];
        var rng = new Rng((ulong)seed);
        var a = Random(rng, [.. aBatch, transA ? k : m, transA ? m : k]);
        var w = Random(rng, [.. bBatch, transB ? n : k, transB ? k : n]);
        Verify($"matmul {Tensor<double>.Format(a.Shape)}{(transA ? "ᵀ" : "")}·{Tensor<double>.Format(w.Shape)}{(transB ? "ᵀ" : "")}",
            x => Ops.MatMul(x[0], x[1], transA, transB), x => Ops.MatMul(x[0], x[1], transA, transB), a, w);
    }

    [Property(MaxTest = 60)]
    public void MatMulSummed(byte mRaw, byte kRaw, byte nRaw, byte bRaw, byte hRaw, byte form, int seed)
    {
        // [H,B,m,k]·[H,1,k,n] summed over the heads (the decoder's Σ_h xy_h·decoder_h), over the batch, or over both.
        int m = Size(mRaw, 7), k = Size(kRaw, 7), n = Size(nRaw, 7), b = Size(bRaw, 3), h = Size(hRaw, 4);
        int[] target = (form % 3) switch { 0 => [1, b, m, n], 1 => [h, 1, m, n], _ => [1, 1, m, n] };
        var rng = new Rng((ulong)seed);
        var a = Random(rng, h, b, m, k);
        var w = Random(rng, h, 1, k, n);
        Verify($"matmul_summed {Tensor<double>.Format(a.Shape)}·{Tensor<double>.Format(w.Shape)} → {Tensor<double>.Format(target)}",
            x => Ops.MatMulSummed(x[0], x[1], target), x => Ops.MatMulSummed(x[0], x[1], target), a, w);
    }

    [Property(MaxTest = 60)]
    public void MatMulRelu(byte mRaw, byte kRaw, byte nRaw, byte bRaw, byte hRaw, int seed)
    {
        // [1,B,m,k]·[H,1,k,n], as xs = relu(x·encoder).
        int m = Size(mRaw, 7), k = Size(kRaw, 7), n = Size(nRaw, 7), b = Size(bRaw, 3), h = Size(hRaw, 3);
        var rng = new Rng((ulong)seed);
        Tensor<double> a, w;
        do (a, w) = (Random(rng, 1, b, m, k), Random(rng, h, 1, k, n));
        while (NearTheKink(a, w));
        Verify($"matmul_relu {Tensor<double>.Format(a.Shape)}·{Tensor<double>.Format(w.Shape)}",
            x => Ops.MatMulRelu(x[0], x[1]), x => Ops.MatMulRelu(x[0], x[1]), a, w);
    }

    [Property(MaxTest = 40)]
    public void ReluOutputsReadByRopeAndADroppedProduct(byte bRaw, byte tRaw, byte halfNRaw, byte kRaw, int seed)
    {
        // BDH's pattern: xs = relu(x·W) read by rope and, with ys = relu(x·W2), by dropout(xs ⊙ ys). Their backward passes
        // apply the ReLUs' masks as they store dxs and dys, and MatMulRelu then skips its own pass: the gradients must be
        // the plain ops' all the same.
        int b = Size(bRaw, 2), t = Size(tRaw, 5), n = 2 * Size(halfNRaw, 9), k = Size(kRaw, 5);
        var rng = new Rng((ulong)seed);
        Tensor<double> x, w, w2;
        do (x, w, w2) = (Random(rng, 1, b, t, k), Random(rng, 1, 1, k, n), Random(rng, 1, 1, k, n));
        while (NearTheKink(x, w) || NearTheKink(x, w2));
        var table = Tensors.Kernels.Rope.Table(Tensors.Kernels.Rope.Frequencies(n), t);
        Var<T> Layer<T>(Var<T>[] v) where T : unmanaged, IFloatingPointIeee754<T>
        {
            var xs = Ops.MatMulRelu(v[0], v[1]);
            return Ops.Rope(xs, table) + Ops.DropoutOfProduct(xs, Ops.MatMulRelu(v[0], v[2]), 0.3, new Rng(7));
        }
        Verify($"rope(xs) + dropout(xs ⊙ ys), x {Tensor<double>.Format(x.Shape)}, W {Tensor<double>.Format(w.Shape)}", Layer, Layer, x, w, w2);
    }

    [Property(MaxTest = 40)]
    public void ReluComputedWhereAnotherFiresAndADecodedProduct(byte bRaw, byte tRaw, byte hRaw, byte nRaw, byte kRaw, bool dropout, bool w2AsRows, int seed)
    {
        // BDH's layer from xs to the decoder: ys = relu(x·W2) computed only where xs fires, dropout(xs ⊙ ys) (or xs ⊙ ys),
        // and Σ_h xy_h·decoder_h, whose backward computes xy's gradient only where xy is not 0. Both shortcuts leave the
        // gradients of every input as the plain ops give them. W2 is given as it is stored, or (as the model gives
        // encoder_v) transposed once into its columns as rows and multiplied as op(B) = Bᵀ.
        int b = Size(bRaw, 2), t = Size(tRaw, 5), h = Size(hRaw, 3), n = Size(nRaw, 9), k = Size(kRaw, 5);
        var rng = new Rng((ulong)seed);
        Tensor<double> x, w, w2, decoder = Random(rng, h, 1, n, k);
        do (x, w, w2) = (Random(rng, 1, b, t, k), Random(rng, h, 1, k, n), Random(rng, h, 1, k, n));
        while (NearTheKink(x, w) || NearTheKink(x, w2));
        Var<T> Layer<T>(Var<T>[] v) where T : unmanaged, IFloatingPointIeee754<T>
        {
            var xs = Ops.MatMulRelu(v[0], v[1]);
            var ys = w2AsRows ? Ops.MatMulRelu(v[0], Ops.Transpose(v[2], 2, 3), where: xs, transB: true) : Ops.MatMulRelu(v[0], v[2], where: xs);
            var xy = Ops.DropoutOfProduct(xs, ys, dropout ? 0.3 : 0, new Rng(7));
            return Ops.MatMulSummed(xy, v[3], 1, b, t, k);
        }
        Verify($"xs ⊙ relu(x·W2 where xs fires)·decoder, x {Tensor<double>.Format(x.Shape)}, W {Tensor<double>.Format(w.Shape)}, dropout {dropout}, W2 as rows {w2AsRows}",
            Layer, Layer, x, w, w2, decoder);
    }

    [Property(MaxTest = 60)]
    public void AddAndMulBroadcast(byte bRaw, byte hRaw, byte dRaw, byte form, int seed)
    {
        int b = Size(bRaw, 3), h = Size(hRaw, 3), d = Size(dRaw, 7);
        int[] other = (form % 4) switch { 0 => [b, h, d], 1 => [b, 1, d], 2 => [d], _ => [h, 1] };
        var rng = new Rng((ulong)seed);
        var x = Random(rng, b, h, d);
        var y = Random(rng, other);
        string shapes = $"{Tensor<double>.Format(x.Shape)} with {Tensor<double>.Format(y.Shape)}";
        Verify("add " + shapes, v => v[0] + v[1], v => v[0] + v[1], x, y);
        Verify("mul " + shapes, v => v[0] * v[1], v => v[0] * v[1], x.Clone(), y.Clone());
    }

    [Property(MaxTest = 60)]
    public void Relu(byte rowsRaw, byte dRaw, int seed)
    {
        // Inputs kept at |x| >= 0.1, far from the kink compared with the step 1e-6.
        var rng = new Rng((ulong)seed);
        var x = Tensor<double>.Empty(Size(rowsRaw, 5), Size(dRaw, 9));
        var s = x.Span;
        for (int i = 0; i < s.Length; i++) s[i] = (rng.NextDouble() < 0.5 ? -1 : 1) * (0.1 + rng.NextDouble());
        Verify($"relu {Tensor<double>.Format(x.Shape)}", v => Ops.Relu(v[0]), v => Ops.Relu(v[0]), x);
    }

    [Property(MaxTest = 60)]
    public void LayerNormIncludingAZeroVarianceRow(byte rowsRaw, byte dRaw, int seed)
    {
        int rows = Size(rowsRaw, 4) + 1, d = Size(dRaw, 9) + 1;
        // Random rows spread by a ramp: a row of nearly equal values is ill-conditioned in float (its
        // centred values cancel), which would test float rounding, not the op.
        var x = Tensor<double>.Uniform(new Rng((ulong)seed), -0.1, 0.1, rows, d);
        for (int i = 0; i < x.Length; i++) x.Span[i] += 0.3 * (i % d) * (i / d % 2 == 0 ? 1 : -1);
        x.Span[..d].Clear(); // row 0 all zeros, as attention's output at t = 0
        Verify($"layernorm {Tensor<double>.Format(x.Shape)}", v => Ops.LayerNorm(v[0], 1e-5), v => Ops.LayerNorm(v[0], 1e-5), x);
    }

    [Property(MaxTest = 60)]
    public void Rope(byte bRaw, byte tRaw, byte halfNRaw, int seed)
    {
        int b = Size(bRaw, 3), t = Size(tRaw, 9), n = 2 * Size(halfNRaw, 5);
        var table = Tensors.Kernels.Rope.Table(Tensors.Kernels.Rope.Frequencies(n), t);
        var x = Random(new Rng((ulong)seed), b, 1, t, n);
        Verify($"rope {Tensor<double>.Format(x.Shape)}", v => Ops.Rope(v[0], table), v => Ops.Rope(v[0], table), x);
    }

    [Property(MaxTest = 60)]
    public void CausalLinearAttention(byte bRaw, byte hRaw, byte tRaw, byte nRaw, byte dRaw, bool vPerHead, int seed)
    {
        int b = Size(bRaw, 2), h = Size(hRaw, 3), t = Size(tRaw, 7), n = Size(nRaw, 6), d = Size(dRaw, 5);
        var rng = new Rng((ulong)seed);
        var q = Random(rng, h, b, t, n);
        var v = Random(rng, vPerHead ? h : 1, b, t, d);
        Verify($"attention q {Tensor<double>.Format(q.Shape)} v {Tensor<double>.Format(v.Shape)}",
            x => Ops.CausalLinearAttention(x[0], x[1]), x => Ops.CausalLinearAttention(x[0], x[1]), q, v);
    }

    [Property(MaxTest = 40)]
    public void AttentionOfRotatedQueries(byte bRaw, byte hRaw, byte tRaw, byte halfNRaw, byte kRaw, bool reluQueries, bool vPerHead, int seed)
    {
        // BDH's tril(rope(xs)·rope(xs)ᵀ, −1)·x with rope(xs) made inside the attention a sequence at a time, never stored;
        // when the queries are a ReLU's output (xs = relu(x·W)) its backward folds the ReLU's mask into the rotation back.
        // The gradients check, and they and the value are the bits of rope and then the attention.
        int b = Size(bRaw, 2), h = Size(hRaw, 3), t = Size(tRaw, 7), n = 2 * Size(halfNRaw, 5), k = Size(kRaw, 5);
        var rng = new Rng((ulong)seed);
        var v = Random(rng, vPerHead ? h : 1, b, t, k);
        Tensor<double>[] queries; // q [H, B, T, N], or x [1, B, T, k] and W [H, 1, k, N] for q = relu(x·W)
        do queries = reluQueries ? [Random(rng, 1, b, t, k), Random(rng, h, 1, k, n)] : [Random(rng, h, b, t, n)];
        while (reluQueries && NearTheKink(queries[0], queries[1]));
        var table = Tensors.Kernels.Rope.Table(Tensors.Kernels.Rope.Frequencies(n), t);
        Var<T> Queries<T>(Var<T>[] i) where T : unmanaged, IFloatingPointIeee754<T> => reluQueries ? Ops.MatMulRelu(i[0], i[1]) : i[0];
        Var<T> Inside<T>(Var<T>[] i) where T : unmanaged, IFloatingPointIeee754<T> => Ops.CausalLinearAttention(Queries(i), i[^1], table);
        Var<T> Apart<T>(Var<T>[] i) where T : unmanaged, IFloatingPointIeee754<T> => Ops.CausalLinearAttention(Ops.Rope(Queries(i), table), i[^1]);
        Tensor<double>[] inputs = [.. queries, v];
        Verify($"attention of rope(q), q {(reluQueries ? "relu(x·W) " : "")}[{h}, {b}, {t}, {n}], v {Tensor<double>.Format(v.Shape)}", Inside, Inside, inputs);
        var weights = Var<float>.Constant(Tensor<float>.Uniform(new Rng(99), 0.5, 1.5, h, b, t, k));
        var inside = Evaluate(i => Ops.Sum(Inside(i) * weights), [.. inputs.Select(x => x.Convert<float>())]);
        var apart = Evaluate(i => Ops.Sum(Apart(i) * weights), [.. inputs.Select(x => x.Convert<float>())]);
        Assert.Equal(apart.Value, inside.Value);
        for (int i = 0; i < inputs.Length; i++) Assert.Equal(apart.Grads[i], inside.Grads[i]);
    }

    [Property(MaxTest = 40)]
    public void ReshapeAndTranspose(byte aRaw, byte bRaw, byte cRaw, int seed)
    {
        int a = Size(aRaw, 3), b = Size(bRaw, 4), c = Size(cRaw, 5);
        var x = Random(new Rng((ulong)seed), a, b, c);
        // A non-uniform op after the reshape, so a wrong gradient layout would show.
        Verify($"reshape {Tensor<double>.Format(x.Shape)}", v => Ops.Reshape(v[0], a * b, c) * Ops.Reshape(v[0], a * b, c),
            v => Ops.Reshape(v[0], a * b, c) * Ops.Reshape(v[0], a * b, c), x);
        Verify($"transpose {Tensor<double>.Format(x.Shape)}", v => Ops.Transpose(v[0], 0, 2), v => Ops.Transpose(v[0], 0, 2), x.Clone());
    }

    [Property(MaxTest = 40)]
    public void EmbeddingWithRepeatedIds(byte vocabRaw, byte dRaw, byte countRaw, int seed)
    {
        int vocab = Size(vocabRaw, 6), d = Size(dRaw, 5), count = Size(countRaw, 9);
        var rng = new Rng((ulong)seed);
        var ids = Enumerable.Range(0, count).Select(_ => rng.NextInt(vocab)).ToArray();
        var w = Random(rng, vocab, d);
        Verify($"embedding [{vocab}, {d}] × {count} ids", x => Ops.Embedding(x[0], ids, count), x => Ops.Embedding(x[0], ids, count), w);
    }

    [Property(MaxTest = 40)]
    public void DropoutWithAFixedMask(byte rowsRaw, byte dRaw, int seed)
    {
        var x = Random(new Rng((ulong)seed), Size(rowsRaw, 5), Size(dRaw, 9));
        Verify($"dropout {Tensor<double>.Format(x.Shape)}", v => Ops.Dropout(v[0], 0.3, new Rng(7)), v => Ops.Dropout(v[0], 0.3, new Rng(7)), x);
    }

    [Property(MaxTest = 40)]
    public void DropoutOfAProductWithAFixedMask(byte rowsRaw, byte dRaw, int seed)
    {
        var rng = new Rng((ulong)seed);
        int rows = Size(rowsRaw, 5), d = Size(dRaw, 9);
        var (a, b) = (Random(rng, rows, d), Random(rng, rows, d));
        Verify($"dropout of a product {Tensor<double>.Format(a.Shape)}", v => Ops.DropoutOfProduct(v[0], v[1], 0.3, new Rng(7)),
            v => Ops.DropoutOfProduct(v[0], v[1], 0.3, new Rng(7)), a, b);
    }

    [Property(MaxTest = 60)]
    public void CrossEntropy(byte rowsRaw, byte vocabRaw, int seed)
    {
        int rows = Size(rowsRaw, 6), vocab = Size(vocabRaw, 9);
        var rng = new Rng((ulong)seed);
        var targets = Enumerable.Range(0, rows).Select(_ => rng.NextInt(vocab)).ToArray();
        var logits = Tensor<double>.Uniform(rng, -3, 3, rows, vocab);
        Verify($"cross-entropy [{rows}, {vocab}]", x => Ops.CrossEntropy(x[0], targets), x => Ops.CrossEntropy(x[0], targets), logits);
    }

    [Property(MaxTest = 40)]
    public void SumTo(byte hRaw, byte bRaw, byte dRaw, byte form, int seed)
    {
        // [H,B,D] summed over the heads (the decoder's Σ_h), over the batch, or over all leading dims.
        int h = Size(hRaw, 4), b = Size(bRaw, 3), d = Size(dRaw, 7);
        int[] target = (form % 3) switch { 0 => [1, b, d], 1 => [h, 1, d], _ => [1, 1, d] };
        var x = Random(new Rng((ulong)seed), h, b, d);
        Verify($"sum_to {Tensor<double>.Format(x.Shape)} → {Tensor<double>.Format(target)}",
            v => Ops.SumTo(v[0], target), v => Ops.SumTo(v[0], target), x);
    }

    [Property(MaxTest = 40)]
    public void SumAndMean(byte rowsRaw, byte dRaw, int seed)
    {
        var x = Random(new Rng((ulong)seed), Size(rowsRaw, 5), Size(dRaw, 9));
        Verify($"mean {Tensor<double>.Format(x.Shape)}", v => Ops.Mean(v[0] * v[0]), v => Ops.Mean(v[0] * v[0]), x);
        Verify($"sum {Tensor<double>.Format(x.Shape)}", v => Ops.Sum(v[0] * v[0]), v => Ops.Sum(v[0] * v[0]), x.Clone());
    }
}
