using System.Reflection;
using System.Runtime.Loader;
using System.Text.RegularExpressions;
using Bdh.Model.Tests;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;

namespace Bdh.Extensions.AI.Tests;

/// <summary>
/// README.md's "Use it from .NET" C# blocks, each compiled as a program of its own (with the usings a
/// <c>dotnet new console</c> project has implicitly) and run on the trained fixture, so the README follows the API.
/// </summary>
public partial class ReadmeTests
{
    /// <summary>The checkpoint path the examples show, replaced by the fixture's to run them.</summary>
    private const string ShownCheckpoint = "\"runs/cpu-<time>\"";

    private const string ImplicitUsings = """
        global using System;
        global using System.Collections.Generic;
        global using System.IO;
        global using System.Linq;
        global using System.Net.Http;
        global using System.Threading;
        global using System.Threading.Tasks;
        """;

    private static readonly Lazy<string[]> Examples = new(() =>
    {
        string readme = File.ReadAllText(Path.Combine(RepositoryRoot(), "README.md"));
        int start = readme.IndexOf("\n## Use it from .NET\n", StringComparison.Ordinal);
        Assert.True(start >= 0, "README.md has no \"Use it from .NET\" section");
        int end = readme.IndexOf("\n## ", start + 1, StringComparison.Ordinal);
        return CSharpBlock().Matches(readme[start..end]).Select(m => m.Groups[1].Value).ToArray();
    });

    [GeneratedRegex(@"```csharp\n(.*?)```", RegexOptions.Singleline)]
    private static partial Regex CSharpBlock();

    private static string RepositoryRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "BdhNative.sln"))) return dir.FullName;
        throw new DirectoryNotFoundException("BdhNative.sln not found above the test binaries");
    }

    [Fact]
    public void TheSectionShowsTheLibraryAndTheChatClient()
    {
        Assert.Equal(2, Examples.Value.Length);
        Assert.Contains("BdhLanguageModel.Load(" + ShownCheckpoint + ")", Examples.Value[0]);
        Assert.Contains("IChatClient client = new BdhChatClient(", Examples.Value[1]);
        Assert.InRange(Examples.Value[0].Split('\n', StringSplitOptions.RemoveEmptyEntries).Length, 8, 16); // "a dozen lines"
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    public void AnExampleCompilesAndRuns(int example)
    {
        string checkpoint = Path.Combine(Shared.Fixtures, "bdh-trained-cpu-tiny-500.safetensors");
        string source = Examples.Value[example].Replace(ShownCheckpoint, SymbolDisplay.FormatLiteral(checkpoint, quote: true), StringComparison.Ordinal);
        var references = ((string)AppContext.GetData("TRUSTED_PLATFORM_ASSEMBLIES")!).Split(Path.PathSeparator).Select(p => MetadataReference.CreateFromFile(p));
        var compilation = CSharpCompilation.Create($"ReadmeExample{example}",
            [CSharpSyntaxTree.ParseText(source, path: "README.md"), CSharpSyntaxTree.ParseText(ImplicitUsings)], references,
            new CSharpCompilationOptions(OutputKind.ConsoleApplication, nullableContextOptions: NullableContextOptions.Enable));
        using var image = new MemoryStream();
        var emitted = compilation.Emit(image);
        Assert.True(emitted.Success, string.Join('\n', emitted.Diagnostics.Where(d => d.Severity >= DiagnosticSeverity.Warning)));

        image.Position = 0;
        var context = new AssemblyLoadContext($"readme-{example}", isCollectible: true);
        var output = new StringWriter();
        var console = Console.Out;
        Console.SetOut(output);
        try { context.LoadFromStream(image).EntryPoint!.Invoke(null, [Array.Empty<string>()]); }
        catch (TargetInvocationException e) { throw e.InnerException!; }
        finally
        {
            Console.SetOut(console);
            context.Unload();
        }
        Assert.True(output.ToString().Trim().Length > 20, $"the example printed only '{output}'");
    }
}
