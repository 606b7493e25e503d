namespace Bdh.Tensors;

/// <summary>
/// Recycles tensor storage by exact length. A training step allocates the same shapes every step,
/// so after the first step every buffer comes from here and the loop makes no garbage.
/// Pooled bytes are capped so a workload of ever-changing shapes (generation) cannot grow it without bound.
/// </summary>
public static class TensorPool<T> where T : unmanaged
{
    private static readonly Dictionary<int, Stack<T[]>> Free = new();
    private static long _pooledBytes;

    /// <summary>Most bytes kept for reuse; arrays returned beyond it are left to the GC.</summary>
    public static long CapBytes { get; set; } = 8L << 30;

    /// <summary>An array of exactly <paramref name="length"/> elements with unspecified contents.</summary>
    public static T[] Rent(int length)
    {
        lock (Free)
        {
            if (Free.TryGetValue(length, out var stack) && stack.Count > 0)
            {
                _pooledBytes -= (long)length * Unsafe.SizeOf<T>();
                return stack.Pop();
            }
        }
        return GC.AllocateUninitializedArray<T>(length);
    }

    public static void Return(T[] array)
    {
        long bytes = (long)array.Length * Unsafe.SizeOf<T>();
        lock (Free)
        {
            if (_pooledBytes + bytes > CapBytes) return;
            if (!Free.TryGetValue(array.Length, out var stack)) Free[array.Length] = stack = new Stack<T[]>();
            stack.Push(array);
            _pooledBytes += bytes;
        }
    }

    /// <summary>Drops every pooled array (e.g. after training, before generation).</summary>
    public static void Clear()
    {
        lock (Free)
        {
            Free.Clear();
            _pooledBytes = 0;
        }
    }
}
