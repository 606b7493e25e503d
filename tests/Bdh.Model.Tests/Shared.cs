namespace Bdh.Model.Tests;

/// <summary>Paths into ../shared beside the repository (fixtures and the corpus).</summary>
public static class Shared
{
    public static string Root { get; } = FindRoot();

    public static string Fixtures => Path.Combine(Root, "fixtures");
    public static string Corpus => Path.Combine(Root, "data", "tinyshakespeare.txt");

    /// <summary>Runs <paramref name="body"/> with <see cref="Bdh.Tensors.Parallelism.Threads"/> set to <paramref name="threads"/>, then restores it.</summary>
    public static TResult OnThreads<TResult>(int threads, Func<TResult> body)
    {
        int saved = Bdh.Tensors.Parallelism.Threads;
        Bdh.Tensors.Parallelism.Threads = threads;
        try { return body(); }
        finally { Bdh.Tensors.Parallelism.Threads = saved; }
    }

    /// <summary>Parity fixtures: every bdh-reference-*.safetensors (other shapes may be added).</summary>
    public static IEnumerable<object[]> ParityFixtures() =>
        Directory.EnumerateFiles(Fixtures, "bdh-reference-*.safetensors").Order().Select(f => new object[] { Path.GetFileName(f) });

    private static string FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            var candidate = Path.Combine(dir.FullName, "shared", "fixtures");
            if (Directory.Exists(candidate) && dir.Name != "shared") return Path.Combine(dir.FullName, "shared");
            if (File.Exists(Path.Combine(dir.FullName, "BdhNative.sln")))
                return Path.GetFullPath(Path.Combine(dir.FullName, "..", "shared"));
        }
        throw new DirectoryNotFoundException("../shared (fixtures and data) not found beside the repository");
    }
}
