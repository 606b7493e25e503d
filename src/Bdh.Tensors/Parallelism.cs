using System.Diagnostics;

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

    /// <summary>
    /// Runs body(i0, i1) over the rows [0, <paramref name="rows"/>) of a product's output: one range per thread when
    /// <paramref name="parallel"/>, else one range. A row is computed whole by one thread, so the bits do not depend on
    /// the split.
    /// </summary>
    internal static void ForRowRanges(int rows, bool parallel, Action<int, int> body)
    {
        int chunks = parallel ? Math.Min(rows, _threads) : 1;
        For(chunks, chunk => body((int)((long)chunk * rows / chunks), (int)((long)(chunk + 1) * rows / chunks)));
    }

    /// <summary>
    /// Runs body(i) for i in [0, count), in parallel when there is more than one item and thread: on the
    /// <see cref="Team"/> when it is free, else (a second caller, or a fork inside an item) on the thread pool.
    /// </summary>
    public static void For(int count, Action<int> body)
    {
        if (count == 1 || _threads == 1)
        {
            for (int i = 0; i < count; i++) body(i);
            return;
        }
        if (Team.TryRun(count, Math.Min(count, _threads) - 1, body)) return;
        Parallel.For(0, count, new ParallelOptions { MaxDegreeOfParallelism = _threads }, body);
    }

    /// <summary>
    /// Worker threads that spin for a while between jobs before they sleep. Kernels fork every few hundred
    /// microseconds to a few milliseconds (a training step forks hundreds of times, a generated token once per
    /// layer), and a thread-pool worker that has gone to sleep between forks wakes late or not at all:
    /// with <c>Parallel.For</c>, eight 0.33 ms items forked back to back on 2 threads ran all on the caller in up to
    /// half of the forks, depending on the run (bench/HISTORY.md; the bench's `forks` mode measures it). Spinning keeps
    /// the core ready; after <see cref="SpinTicks"/> without work a worker sleeps, so an idle process costs nothing.
    /// The caller takes items too; items go to whoever asks next, so which thread runs which item
    /// varies, never what an item computes.
    /// </summary>
    private static class Team
    {
        private sealed class Job(int count, int helpers, Action<int> body)
        {
            public readonly int Count = count, Helpers = helpers;
            public readonly Action<int> Body = body;
            public int Next = -1, Done;
            public Exception? Error;

            /// <summary>Runs items until none is left; returns when this thread's last item is done.</summary>
            public void Work()
            {
                for (int i = Interlocked.Increment(ref Next); i < Count; i = Interlocked.Increment(ref Next))
                {
                    try { Body(i); }
                    catch (Exception e) { Interlocked.CompareExchange(ref Error, e, null); }
                    Interlocked.Increment(ref Done);
                }
            }
        }

        private static readonly long SpinTicks = Stopwatch.Frequency / 500; // 2 ms
        private static readonly object Gate = new();
        private static Job? _job;
        private static int _busy, _sleepers, _workers;
        [ThreadStatic] private static bool _inside;

        public static bool TryRun(int count, int helpers, Action<int> body)
        {
            if (_inside || Interlocked.CompareExchange(ref _busy, 1, 0) != 0) return false;
            try
            {
                for (; _workers < helpers; _workers++) Start(_workers);
                var job = new Job(count, helpers, body);
                Interlocked.Exchange(ref _job, job); // a full fence: the store is seen before _sleepers is read
                if (Volatile.Read(ref _sleepers) > 0) lock (Gate) Monitor.PulseAll(Gate);
                _inside = true;
                job.Work();
                for (int spins = 1; Volatile.Read(ref job.Done) < count; spins++)
                    if (spins % 1024 == 0) Thread.Yield(); else Thread.SpinWait(1);
                if (job.Error is { } error) throw new AggregateException(error);
                return true;
            }
            finally
            {
                _inside = false;
                Volatile.Write(ref _busy, 0);
            }
        }

        private static void Start(int index)
        {
            new Thread(() => Serve(index)) { IsBackground = true, Name = $"Bdh.Parallelism worker {index}" }.Start();
        }

        /// <summary>Worker <paramref name="index"/> joins every job that wants more than <paramref name="index"/> helpers.</summary>
        private static void Serve(int index)
        {
            _inside = true;
            Job? last = null;
            while (true)
            {
                var job = WaitForJob(last);
                last = job;
                if (index < job.Helpers) job.Work();
            }
        }

        /// <summary>The next job after <paramref name="last"/>: spins for <see cref="SpinTicks"/>, then sleeps until one is posted.</summary>
        private static Job WaitForJob(Job? last)
        {
            long until = Stopwatch.GetTimestamp() + SpinTicks;
            while (Stopwatch.GetTimestamp() < until)
            {
                for (int i = 0; i < 64; i++)
                {
                    var job = Volatile.Read(ref _job);
                    if (job != last) return job!;
                    Thread.SpinWait(1);
                }
            }
            lock (Gate)
            {
                Interlocked.Increment(ref _sleepers);
                while (Volatile.Read(ref _job) == last) Monitor.Wait(Gate);
                Interlocked.Decrement(ref _sleepers);
                return _job!;
            }
        }
    }
}
