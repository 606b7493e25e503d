namespace Bdh.Tensors;

/// <summary>
/// The one place that decides how many threads kernels use. Every kernel partitions its output
/// (rows, columns, batches) and never splits a reduction across threads, so results are
/// bit-identical for any value of <see cref="Threads"/>.
/// </summary>
public static class Parallelism
{
    private static int _threads = Environment.ProcessorCount;

    public static int Threads
    {
        get => _threads;
        set => _threads = value >= 1 ? value : throw new ArgumentOutOfRangeException(nameof(value), "threads must be >= 1");
    }

    /// <summary>Runs body(i) for i in [0, count), in parallel when there is more than one item and thread.</summary>
    public static void For(int count, Action<int> body)
    {
        if (count == 1 || _threads == 1)
        {
            for (int i = 0; i < count; i++) body(i);
            return;
        }
        Parallel.For(0, count, new ParallelOptions { MaxDegreeOfParallelism = _threads }, body);
    }
}
