using System.Reflection;
using PublicApiGenerator;

namespace Bdh.PublicApi.Tests;

/// <summary>
/// Each library's public surface, as PublicApiGenerator writes it, against the snapshot approved in
/// approved/LIBRARY.txt: any change to the surface fails here with a diff, so it changes only on purpose.
/// After a deliberate change, re-approve every snapshot at once (and commit them):
/// <c>BDH_APPROVE_API=1 dotnet test tests/Bdh.PublicApi.Tests -c Release</c>.
/// </summary>
public class PublicApiTests
{
    public static TheoryData<string> Libraries =>
        ["Bdh.Tensors", "Bdh.Autograd", "Bdh.Model", "Bdh.DirectML", "Bdh.Extensions.AI", "Bdh.Server"];

    private static readonly string ApprovedFolder = typeof(PublicApiTests).Assembly
        .GetCustomAttributes<AssemblyMetadataAttribute>().Single(a => a.Key == "ApprovedFolder").Value!;

    [Theory, MemberData(nameof(Libraries))]
    public void TheSurfaceIsTheApprovedOne(string library)
    {
        // Assembly attributes (InternalsVisibleTo, the target framework) are build settings, not API.
        string current = Lines(Assembly.Load(library).GeneratePublicApi(new ApiGeneratorOptions { IncludeAssemblyAttributes = false }));
        string path = Path.Combine(ApprovedFolder, library + ".txt");
        if (Environment.GetEnvironmentVariable("BDH_APPROVE_API") == "1")
        {
            File.WriteAllText(path, current);
            return;
        }
        string approved = File.Exists(path) ? Lines(File.ReadAllText(path)) : "";
        Assert.True(approved == current,
            $"The public API of {library} differs from {path} (- approved, + current):\n{Diff(approved, current)}\n" +
            "If the change is meant, re-approve: BDH_APPROVE_API=1 dotnet test tests/Bdh.PublicApi.Tests -c Release");
    }

    [Fact]
    public void TheDiffShowsOnlyChangedLinesWithTheirNumbers()
    {
        string diff = Diff("a\nb\nc\nd\n", "a\nB\nc\nd\ne\n");
        Assert.Equal("- 2: b\n+ 2: B\n+ 5: e", diff);
    }

    /// <summary>Text with \n line ends, as PublicApiGenerator writes it on Windows or elsewhere.</summary>
    private static string Lines(string text) => text.ReplaceLineEndings("\n");

    /// <summary>
    /// The lines only in <paramref name="before"/> (-, with their line number there) and only in <paramref name="after"/>
    /// (+, their number there), around a longest common subsequence of lines.
    /// </summary>
    internal static string Diff(string before, string after)
    {
        string[] a = before.Split('\n'), b = after.Split('\n');
        // common[i, j]: the length of the longest common subsequence of a[i..] and b[j..].
        var common = new int[a.Length + 1, b.Length + 1];
        for (int i = a.Length - 1; i >= 0; i--)
            for (int j = b.Length - 1; j >= 0; j--)
                common[i, j] = a[i] == b[j] ? common[i + 1, j + 1] + 1 : Math.Max(common[i + 1, j], common[i, j + 1]);
        var lines = new List<string>();
        int x = 0, y = 0;
        while (x < a.Length || y < b.Length)
        {
            if (x < a.Length && y < b.Length && a[x] == b[y]) { x++; y++; }
            else if (y == b.Length || (x < a.Length && common[x + 1, y] >= common[x, y + 1])) { lines.Add($"- {x + 1}: {a[x]}"); x++; }
            else { lines.Add($"+ {y + 1}: {b[y]}"); y++; }
        }
        return string.Join('\n', lines);
    }
}
