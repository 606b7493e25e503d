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

    /// <summary>Below this many elements an element-wise kernel runs inline: the fork costs more than it saves.</summary>
    private const int MinSliceLength = 1 << 15;

    /// <summary>
    /// Runs body(start, count) over [0, <paramref name="length"/>) cut into one slice per thread, each
    /// a whole number of <paramref name="unit"/>s (a row, for kernels that work row by row). For
    /// element-wise kernels whose elements are independent: the result is the same for any thread count.
    /// </summary>
    public static void ForSlices(int length, int unit, Action<int, int> body)
    {
        int units = length / unit;
        int slices = length >= MinSliceLength ? Math.Min(_threads, units) : 1;
        if (slices <= 1)
        {
            body(0, length);
            return;
        }
        For(slices, s =>
        {
            int u0 = (int)((long)s * units / slices), u1 = (int)((long)(s + 1) * units / slices);
            body(u0 * unit, (u1 - u0) * unit);
        });
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
