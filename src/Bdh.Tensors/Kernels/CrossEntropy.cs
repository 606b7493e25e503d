using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;
using System.Runtime.Intrinsics.X86;

namespace Bdh.Tensors.Kernels;

/// <summary>Mean cross-entropy of logits [M, V] against integer targets, via a stable log-softmax.</summary>
public static class CrossEntropy
{
    /// <summary>
    /// The mean over rows of <see cref="RowLosses"/> for logits [..., V] and one target per row: the rows split
    /// over the cores, then their losses summed in one fixed order (any thread count, same bits).
    /// </summary>
    public static T Forward<T>(Tensor<T> logits, int[] targets) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int vocab = logits.Shape[^1];
        if (logits.Length != targets.Length * vocab) throw new ArgumentException($"{targets.Length} targets for logits {Tensor<T>.Format(logits.Shape)}");
        using var rowLoss = Tensor<T>.Empty(targets.Length);
        Parallelism.ForSlices(logits.Length, vocab, (s, n) =>
            RowLosses<T>(logits.Span.Slice(s, n), targets.AsSpan(s / vocab, n / vocab), vocab, rowLoss.Span.Slice(s / vocab, n / vocab)));
        return TP.Sum<T>(rowLoss.Span) / T.CreateTruncating(targets.Length);
    }

    /// <summary>losses[r] = log Σ exp(logits[r]) − logits[r, targets[r]]: rows are independent, so callers may split them.</summary>
    internal static void RowLosses<T>(ReadOnlySpan<T> logits, ReadOnlySpan<int> targets, int vocab, Span<T> losses)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        T[] scratch = TensorPool<T>.Rent(vocab);
        for (int r = 0; r < targets.Length; r++)
        {
            ReadOnlySpan<T> row = logits.Slice(r * vocab, vocab);
            losses[r] = LogSumExp(row, scratch) - row[CheckTarget(targets[r], vocab)];
        }
        TensorPool<T>.Return(scratch);
    }

    /// <summary>dlogits (+)= (softmax(logits) − onehot(target)) · scale for logits [..., V], rows split over the cores.</summary>
    public static void Backward<T>(Tensor<T> logits, int[] targets, T scale, GradSlot<T> dLogits) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int vocab = logits.Shape[^1];
        Parallelism.ForSlices(logits.Length, vocab, (s, n) =>
            Backward<T>(logits.Span.Slice(s, n), targets.AsSpan(s / vocab, n / vocab), vocab, scale, dLogits.Tensor.Span.Slice(s, n), dLogits.Accumulate));
    }

    /// <summary>
    /// dlogits (+)= (softmax(logits) − onehot(target)) · scale, where scale is dLoss / M for the mean over M
    /// rows; without <paramref name="accumulate"/>, dlogits is overwritten (it need not be zeroed first).
    /// </summary>
    internal static void Backward<T>(ReadOnlySpan<T> logits, ReadOnlySpan<int> targets, int vocab, T scale, Span<T> dLogits, bool accumulate = true)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        T[] probs = TensorPool<T>.Rent(vocab);
        for (int r = 0; r < targets.Length; r++)
        {
            ReadOnlySpan<T> row = logits.Slice(r * vocab, vocab);
            Span<T> p = probs.AsSpan(0, vocab);
            TP.Divide(p, ShiftedExp(row, p).Sum, p); // softmax(row), with one exp per logit
            p[targets[r]] -= T.One;
            Span<T> dRow = dLogits.Slice(r * vocab, vocab);
            if (accumulate) TP.MultiplyAdd(p, scale, dRow, dRow);
            else TP.Multiply(p, scale, dRow);
        }
        TensorPool<T>.Return(probs);
    }

    /// <summary>log Σ exp(row), shifted by the max so nothing overflows; <paramref name="scratch"/> holds ≥ row.Length.</summary>
    public static T LogSumExp<T>(ReadOnlySpan<T> row, Span<T> scratch) where T : unmanaged, IFloatingPointIeee754<T>
    {
        var (max, sum) = ShiftedExp(row, scratch[..row.Length]);
        return max + T.Log(sum);
    }

    /// <summary>shifted = exp(row − max(row)), every exponent ≤ 0 so nothing overflows; returns the max and Σ shifted.</summary>
    private static (T Max, T Sum) ShiftedExp<T>(ReadOnlySpan<T> row, Span<T> shifted) where T : unmanaged, IFloatingPointIeee754<T>
    {
        T max = TP.Max(row);
        TP.Subtract(row, max, shifted);
        // TensorPrimitives.Exp is built on fused multiply-adds, which x64 without FMA (the JIT held below AVX2) emulates
        // in software lane by lane: there the scalar loop is several times faster.
        if (Vector128.IsHardwareAccelerated && !Fma.IsSupported && !AdvSimd.IsSupported)
            foreach (ref T v in shifted) v = T.Exp(v);
        else
            TP.Exp<T>(shifted, shifted);
        return (max, TP.Sum<T>(shifted));
    }

    private static int CheckTarget(int target, int vocab) =>
        (uint)target < (uint)vocab ? target : throw new ArgumentOutOfRangeException(nameof(target), $"target {target} outside vocabulary of {vocab}");
}
