using Bdh.Tensors;

namespace Bdh.Testing;

/// <summary>
/// Runs test code on a given <see cref="Parallelism.Threads"/>, restoring it afterwards (also when the code throws). The
/// setting is the process's and xUnit runs test classes in parallel: one body at a time holds it, or another class's body
/// could run at this one's thread count (a test of the parallel path then takes the serial one). Each test project that
/// sets the thread count compiles this file in.
/// </summary>
internal static class Threads
{
    private static readonly object Gate = new();

    public static T On<T>(int threads, Func<T> body)
    {
        lock (Gate)
        {
            int saved = Parallelism.Threads;
            Parallelism.Threads = threads;
            try { return body(); }
            finally { Parallelism.Threads = saved; }
        }
    }

    public static void On(int threads, Action body) => On(threads, () => { body(); return 0; });
}
