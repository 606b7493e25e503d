namespace Bdh.Model.Tests;

/// <summary>Paths into ../shared beside the repository (fixtures and the corpus).</summary>
public static class Shared
{
    public static string Root { get; } = FindRoot();

    public static string Fixtures => Path.Combine(Root, "fixtures");
    public static string Corpus => Path.Combine(Root, "data", "tinyshakespeare.txt");

    /// <summary>The reference's float32 rope cos/sin (fixtures/torch-float32-trig.safetensors), read once.</summary>
    public static ReferenceTrig Trig => LazyTrig.Value;
    private static readonly Lazy<ReferenceTrig> LazyTrig = new(() => ReferenceTrig.Read(Path.Combine(Fixtures, ReferenceTrig.FileName)));

    /// <summary>Writes <paramref name="trig"/> without <paramref name="angle"/> to <paramref name="path"/>.</summary>
    public static void WriteTrigWithoutAngle(ReferenceTrig trig, float angle, string path)
    {
        var angles = trig.Angles.ToArray();
        var (sin, cos) = (new float[angles.Length], new float[angles.Length]);
        trig.SinCos(angles, sin, cos);
        var keep = Enumerable.Range(0, angles.Length).Where(i => angles[i] != angle).ToArray();
        Assert.Equal(angles.Length - 1, keep.Length);
        float[] Kept(float[] values) => keep.Select(i => values[i]).ToArray();
        SafetensorsFile.Write(path, [("angle", [keep.Length], Kept(angles)), ("cos", [keep.Length], Kept(cos)), ("sin", [keep.Length], Kept(sin))],
            new Dictionary<string, string>());
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
