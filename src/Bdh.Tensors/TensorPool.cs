using System.Numerics;

namespace Bdh.Tensors;

/// <summary>
/// Recycles tensor storage. A training step allocates the same shapes every step, so after the first step every
/// buffer comes from here and the loop makes no garbage. Lengths are rounded up to size classes, four per octave
/// (at most 25% more than asked), so a workload whose shapes change a little at a time (full-recompute generation:
/// one more token per step) reuses the last step's arrays instead of pooling one array per length.
/// The pool never holds more than half again the most bytes that were ever in use at once (rented and not yet
/// returned): the working set's high-water mark. Past that, the arrays of the least recently used classes go to the GC
/// first. Why more than the peak: a step's short-lived arrays (a sparse product's lists, whose lengths follow the
/// data) are never in use at the peak, yet come back every step; bounded by the peak alone, the pool would drop some
/// of them at each step's end and the next step would allocate them again.
/// Arrays let go wait on the large-object heap until a full collection, which the runtime schedules by its own
/// budgets: a workload that keeps changing lengths (full-recompute generation) could hold several times its working
/// set in dead arrays. So once the pool has let go of as many bytes as its peak in use, it asks for a background full
/// collection.
/// Every array is pinned (it never moves) and a cache line longer than its class: its elements from
/// <see cref="AlignedStart"/> on start on a 64-byte boundary, where tensors keep theirs.
/// </summary>
public static class TensorPool<T> where T : unmanaged
{
    private sealed class SizeClass
    {
        public readonly Stack<T[]> Arrays = new();
        public long LastUse;
    }

    /// <summary>
    /// The boundary, in bytes, that tensors' elements start on: a cache line, and the width of a 512-bit vector. A
    /// vector load from an address off it reads two cache lines; on an Ice Lake Xeon, where .NET's arrays start 8–56
    /// bytes past a line, aligning the GEMM's packed operands made every product 1.1–1.3× faster, and the sparse
    /// product's rows of B 2.3× (bench/HISTORY.md, "Vectors that straddle two cache lines").
    /// </summary>
    public const int Alignment = 64;

    /// <summary>Elements past a class's length in each array: room to start on the boundary wherever the array lies.</summary>
    private static readonly int Slack = Alignment / Unsafe.SizeOf<T>();

    /// <summary>How many times the peak in-use bytes the pool may hold.</summary>
    public const double Headroom = 1.5;

    private static readonly Dictionary<int, SizeClass> Free = new();
    private static long _pooledBytes, _inUseBytes, _peakInUseBytes, _clock, _droppedBytes;

    /// <summary>Bytes held for reuse now.</summary>
    public static long PooledBytes { get { lock (Free) return _pooledBytes; } }

    /// <summary>The most bytes ever rented and not yet returned at one time: <see cref="PooledBytes"/> stays within <see cref="Headroom"/> times it.</summary>
    public static long PeakInUseBytes { get { lock (Free) return _peakInUseBytes; } }

    /// <summary>
    /// The length of the class that holds <paramref name="length"/>: exact up to 64, else the next multiple of a
    /// quarter of the octave's base, so (2ᵐ, 2ᵐ⁺¹] rounds up to one of 1.25, 1.5, 1.75 or 2 × 2ᵐ.
    /// </summary>
    internal static int ClassLength(int length)
    {
        if (length <= 64) return length;
        int step = 1 << (BitOperations.Log2((uint)length - 1) - 2);
        long rounded = ((long)length + step - 1) / step * step;
        return rounded <= Array.MaxLength ? (int)rounded : length;
    }

    /// <summary>
    /// An array with at least <paramref name="length"/> elements from <see cref="AlignedStart"/> on (its class's
    /// length), with unspecified contents.
    /// </summary>
    public static T[] Rent(int length)
    {
        int size = ClassLength(length) + Slack; // the slack after rounding: a tensor of 2ᵐ elements keeps the class of 2ᵐ
        long bytes = (long)size * Unsafe.SizeOf<T>();
        lock (Free)
        {
            _inUseBytes += bytes;
            _peakInUseBytes = Math.Max(_peakInUseBytes, _inUseBytes);
            if (Free.TryGetValue(size, out var sizeClass) && sizeClass.Arrays.Count > 0)
            {
                sizeClass.LastUse = ++_clock;
                _pooledBytes -= bytes;
                return sizeClass.Arrays.Pop();
            }
        }
        return GC.AllocateUninitializedArray<T>(size, pinned: true);
    }

    /// <summary>
    /// The index of the first element of <paramref name="array"/> (one of <see cref="Rent"/>'s) on an
    /// <see cref="Alignment"/>-byte boundary. The array is pinned, so its start never changes.
    /// </summary>
    public static unsafe int AlignedStart(T[] array)
    {
        fixed (T* first = array) return (int)((Alignment - (nint)first % Alignment) % Alignment / sizeof(T));
    }

    /// <summary>Takes back an array from <see cref="Rent"/>.</summary>
    public static void Return(T[] array)
    {
        long bytes = (long)array.Length * Unsafe.SizeOf<T>();
        bool collect;
        lock (Free)
        {
            _inUseBytes = Math.Max(_inUseBytes - bytes, 0);
            if (!Free.TryGetValue(array.Length, out var sizeClass)) Free[array.Length] = sizeClass = new SizeClass();
            sizeClass.Arrays.Push(array);
            sizeClass.LastUse = ++_clock;
            _pooledBytes += bytes;
            while (_pooledBytes > Headroom * _peakInUseBytes) DropLeastRecentlyUsed();
            collect = _droppedBytes > _peakInUseBytes;
            if (collect) _droppedBytes = 0;
        }
        if (collect) GC.Collect(2, GCCollectionMode.Forced, blocking: false);
    }

    /// <summary>Leaves one array of the class used longest ago to the GC (called under the lock).</summary>
    private static void DropLeastRecentlyUsed()
    {
        var (length, oldest) = Free.Where(c => c.Value.Arrays.Count > 0).MinBy(c => c.Value.LastUse);
        oldest.Arrays.Pop();
        long bytes = (long)length * Unsafe.SizeOf<T>();
        _pooledBytes -= bytes;
        _droppedBytes += bytes;
        if (oldest.Arrays.Count == 0) Free.Remove(length);
    }
}
