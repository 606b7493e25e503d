namespace Bdh.Tensors.Kernels;

/// <summary>Mean cross-entropy of logits [M, V] against integer targets, via a stable log-softmax.</summary>
public static class CrossEntropy
{
    /// <summary>The mean over rows of <see cref="RowLosses"/>.</summary>
    public static T Forward<T>(ReadOnlySpan<T> logits, ReadOnlySpan<int> targets, int vocab)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        T[] losses = TensorPool<T>.Rent(targets.Length);
        RowLosses(logits, targets, vocab, losses.AsSpan(0, targets.Length));
        T mean = TP.Sum<T>(losses.AsSpan(0, targets.Length)) / T.CreateTruncating(targets.Length);
        TensorPool<T>.Return(losses);
        return mean;
    }

    /// <summary>losses[r] = log Σ exp(logits[r]) − logits[r, targets[r]]: rows are independent, so callers may split them.</summary>
    public static void RowLosses<T>(ReadOnlySpan<T> logits, ReadOnlySpan<int> targets, int vocab, Span<T> losses)
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

    /// <summary>
    /// dlogits (+)= (softmax(logits) − onehot(target)) · scale, where scale is dLoss / M for the mean over M
    /// rows; without <paramref name="accumulate"/>, dlogits is overwritten (it need not be zeroed first).
    /// </summary>
    public static void Backward<T>(ReadOnlySpan<T> logits, ReadOnlySpan<int> targets, int vocab, T scale, Span<T> dLogits, bool accumulate = true)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        T[] probs = TensorPool<T>.Rent(vocab);
        for (int r = 0; r < targets.Length; r++)
        {
            ReadOnlySpan<T> row = logits.Slice(r * vocab, vocab);
            Span<T> p = probs.AsSpan(0, vocab);
            TP.SoftMax(row, p);
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
        T max = TP.Max(row);
        Span<T> shifted = scratch[..row.Length];
        TP.Subtract(row, max, shifted);
        TP.Exp<T>(shifted, shifted);
        return max + T.Log(TP.Sum<T>(shifted));
    }

    private static int CheckTarget(int target, int vocab) =>
        (uint)target < (uint)vocab ? target : throw new ArgumentOutOfRangeException(nameof(target), $"target {target} outside vocabulary of {vocab}");
}
