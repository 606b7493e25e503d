namespace Bdh.Tensors.Tests;

/// <summary>Runs test code on a given <see cref="Parallelism.Threads"/>, restoring it afterwards (also when the code throws).</summary>
internal static class Threads
{
    public static T On<T>(int threads, Func<T> body)
    {
        int saved = Parallelism.Threads;
        Parallelism.Threads = threads;
        try { return body(); }
        finally { Parallelism.Threads = saved; }
    }

    public static void On(int threads, Action body) => On(threads, () => { body(); return 0; });
}
