namespace Bdh.Model;

public static class Evaluation
{
    /// <summary>Windows per forward pass.</summary>
    public const int Batch = 32;

    /// <summary>
    /// Mean loss over the first <paramref name="windows"/> (default all) non-overlapping block-sized
    /// windows of <paramref name="data"/>, in batches of <paramref name="batch"/>, without dropout. Every
    /// window has the same number of tokens, so this is the token mean (the fixtures' "mean of batch means").
    /// </summary>
    public static double MeanLoss(BdhModel<float> model, byte[] data, int block, int? windows = null, int batch = Batch)
    {
        int total = Math.Min(windows ?? int.MaxValue, TextData.WindowCount(data, block));
        if (total == 0) throw new ArgumentException($"no window of {block + 1L} bytes fits in {data.Length} bytes");
        using var _ = NoGrad.Scope();
        double sum = 0;
        for (int first = 0; first < total; first += batch)
        {
            int count = Math.Min(batch, total - first);
            var (inputs, targets) = TextData.Windows(data, block, first, count);
            var (logits, loss) = model.Forward(inputs, count, block, targets);
            sum += loss!.Value.Span[0] * (double)count;
            logits.ReleaseGraph();
            loss.ReleaseGraph();
        }
        return sum / total;
    }
}
