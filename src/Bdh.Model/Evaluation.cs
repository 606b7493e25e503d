namespace Bdh.Model;

public static class Evaluation
{
    /// <summary>The most windows one forward pass reads.</summary>
    public const int Batch = 32;

    /// <summary>The memory one pass may take (<see cref="BdhConfig.StepBytes"/>): more windows take more passes.</summary>
    public const double PassBytes = 1e9;

    /// <summary>
    /// Windows per forward pass: <see cref="Batch"/>, fewer where a pass over them would need more than
    /// <see cref="PassBytes"/>, and at least one. The paper config at T = 512 takes ~0.55 GB a window: 32 in one pass
    /// would need 17.5 GB, so it reads them one at a time; the cpu preset at T = 64 takes 4.5 MB a window, 32 a pass.
    /// </summary>
    public static int WindowsPerPass(BdhConfig config, int block) =>
        (int)Math.Clamp(PassBytes / config.StepBytes(1, block, training: false), 1, Batch);

    /// <summary>
    /// Mean loss over the first <paramref name="windows"/> (default all) non-overlapping block-sized
    /// windows of <paramref name="data"/>, <paramref name="batch"/> (default <see cref="WindowsPerPass"/>) a pass,
    /// without dropout. Every window has the same number of tokens, so this is the token mean (the fixtures' "mean of
    /// batch means"). <paramref name="progress"/>, if given, hears the windows done after each pass.
    /// </summary>
    public static double MeanLoss(BdhModel<float> model, byte[] data, int block, int? windows = null, int? batch = null, Action<int>? progress = null)
    {
        if (windows is < 1) throw new ArgumentOutOfRangeException(nameof(windows), windows, "must be >= 1");
        if (batch is < 1) throw new ArgumentOutOfRangeException(nameof(batch), batch, "must be >= 1");
        int total = Math.Min(windows ?? int.MaxValue, TextData.WindowCount(data, block));
        if (total == 0) throw new ArgumentException($"no window of {block + 1L} bytes fits in {data.Length} bytes");
        int perPass = batch ?? WindowsPerPass(model.Config, block);
        using var _ = NoGrad.Scope();
        double sum = 0;
        for (int first = 0; first < total; first += perPass)
        {
            int count = Math.Min(perPass, total - first);
            var (inputs, targets) = TextData.Windows(data, block, first, count);
            var (logits, loss) = model.Forward(inputs, count, block, targets);
            sum += loss!.Value.Span[0] * (double)count;
            logits.ReleaseGraph();
            loss.ReleaseGraph();
            progress?.Invoke(first + count);
        }
        return sum / total;
    }
}
