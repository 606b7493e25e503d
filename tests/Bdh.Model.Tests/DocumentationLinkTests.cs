using System.Text.RegularExpressions;

namespace Bdh.Model.Tests;

/// <summary>
/// The documents' links into the repository: README.md, docs/*.md, bench/*.md and tests/README.md. Every relative link
/// must reach an existing file or folder, an anchor (<c>#heading</c>) must name a heading of its Markdown file, and a
/// link to a source file whose text is a symbol (<c>[`BdhModel.Forward`](src/Bdh.Model/BdhModel.cs)</c>) must name one
/// that file holds: each dotted part occurs in it as a whole word. A rename or a move that leaves a document behind
/// fails here, naming the document and the link.
/// </summary>
public partial class DocumentationLinkTests
{
    /// <summary>[text](target) and ![alt](target); the text may hold one level of brackets.</summary>
    [GeneratedRegex(@"!?\[((?:[^\[\]]|\[[^\]]*\])*)\]\(([^)\s]+)\)")]
    private static partial Regex Link();

    /// <summary>A fenced code block: its lines are neither links nor headings.</summary>
    [GeneratedRegex(@"^(```|~~~).*?^\1[ \t]*$", RegexOptions.Multiline | RegexOptions.Singleline)]
    private static partial Regex Fence();

    [GeneratedRegex(@"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")]
    private static partial Regex DottedName();

    [GeneratedRegex(@"^#{1,6}[ \t]+(.+?)[ \t]*#*[ \t]*$", RegexOptions.Multiline)]
    private static partial Regex Heading();

    private static readonly string[] NotSource = [".md", ".png", ".svg", ".json", ".txt"];

    private static string RepositoryRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "BdhNative.sln"))) return dir.FullName;
        throw new DirectoryNotFoundException("BdhNative.sln not found above the test binaries");
    }

    private static IEnumerable<string> Documents(string root) =>
        new[] { Path.Combine(root, "README.md"), Path.Combine(root, "tests", "README.md") }
            .Concat(Directory.EnumerateFiles(Path.Combine(root, "docs"), "*.md"))
            .Concat(Directory.EnumerateFiles(Path.Combine(root, "bench"), "*.md"))
            .Order();

    /// <summary>The links of one Markdown text outside its code blocks: (text, target).</summary>
    private static IEnumerable<(string Text, string Target)> Links(string markdown) =>
        Link().Matches(Fence().Replace(markdown, "")).Select(m => (m.Groups[1].Value, m.Groups[2].Value));

    /// <summary>GitHub's anchor of a heading: lower case, punctuation dropped, spaces as hyphens.</summary>
    private static string Anchor(string heading) =>
        string.Concat(heading.Replace("`", "").ToLowerInvariant().Where(c => char.IsLetterOrDigit(c) || c is ' ' or '-' or '_')).Replace(' ', '-');

    private static HashSet<string> Anchors(string markdown) =>
        Heading().Matches(Fence().Replace(markdown, "")).Select(m => Anchor(m.Groups[1].Value)).ToHashSet();

    /// <summary>What is wrong with the links of <paramref name="markdown"/>, the text of the document at <paramref name="path"/>.</summary>
    public static List<string> Problems(string path, string markdown)
    {
        var problems = new List<string>();
        foreach (var (text, target) in Links(markdown))
        {
            if (Regex.IsMatch(target, "^[a-z][a-z0-9+.-]*:", RegexOptions.IgnoreCase)) continue; // https:, mailto:
            string where = $"{Path.GetFileName(path)}: [{text}]({target})";
            int hash = target.IndexOf('#');
            string file = Uri.UnescapeDataString(hash < 0 ? target : target[..hash]);
            if (file.Length == 0) // an anchor in this document
            {
                if (!Anchors(markdown).Contains(target[1..])) problems.Add($"{where}: no heading with anchor {target}");
                continue;
            }
            string resolved = Path.GetFullPath(Path.Combine(Path.GetDirectoryName(path)!, file));
            if (!File.Exists(resolved) && !Directory.Exists(resolved))
            {
                problems.Add($"{where}: {file} does not exist");
                continue;
            }
            if (hash >= 0 && resolved.EndsWith(".md", StringComparison.OrdinalIgnoreCase)
                && !Anchors(File.ReadAllText(resolved)).Contains(target[(hash + 1)..]))
                problems.Add($"{where}: no heading with anchor #{target[(hash + 1)..]}");

            string symbol = text.Trim().Trim('`');
            bool source = File.Exists(resolved) && !NotSource.Any(e => resolved.EndsWith(e, StringComparison.OrdinalIgnoreCase));
            if (!source || symbol == Path.GetFileName(resolved) || !DottedName().IsMatch(symbol)) continue;
            string code = File.ReadAllText(resolved);
            foreach (string part in symbol.Split('.'))
                if (!Regex.IsMatch(code, $@"\b{part}\b"))
                    problems.Add($"{where}: {part} does not occur in {file}");
        }
        return problems;
    }

    [Fact]
    public void EveryLinkInTheDocumentsReachesAFileAndTheSymbolItNames()
    {
        string root = RepositoryRoot();
        var problems = Documents(root).SelectMany(d => Problems(d, File.ReadAllText(d))).ToList();
        Assert.True(problems.Count == 0, string.Join('\n', problems));
    }

    [Fact]
    public void TheReadmeAndTheWalkthroughNameTheCodeTheyDescribe()
    {
        string root = RepositoryRoot();
        int SymbolLinks(string document) => Links(File.ReadAllText(Path.Combine(root, document)))
            .Count(l => l.Target.Contains("src/", StringComparison.Ordinal) && DottedName().IsMatch(l.Text.Trim('`')));
        Assert.True(SymbolLinks("README.md") >= 8, $"README.md links {SymbolLinks("README.md")} symbols");
        Assert.True(SymbolLinks(Path.Combine("docs", "walkthrough.md")) >= 20, $"docs/walkthrough.md links {SymbolLinks(Path.Combine("docs", "walkthrough.md"))} symbols");
    }

    [Fact]
    public void AMissingFileSymbolOrHeadingIsReported()
    {
        string root = RepositoryRoot();
        string document = Path.Combine(root, "docs", "example.md");
        string markdown = """
            # Some heading

            [`BdhModel.Forward`](../src/Bdh.Model/BdhModel.cs) is there, and so is [this heading](#some-heading).
            [`BdhModel.Backward`](../src/Bdh.Model/BdhModel.cs), [`Gone`](../src/Bdh.Model/Gone.cs) and
            [a heading](../README.md#no-such-heading) are not. [The paper](https://arxiv.org/abs/2509.26507) is not checked.

            ```text
            [in a code block](nowhere.md)
            ```
            """;
        var problems = Problems(document, markdown);
        Assert.Equal(3, problems.Count);
        Assert.Contains(problems, p => p.Contains("Backward does not occur in ../src/Bdh.Model/BdhModel.cs", StringComparison.Ordinal));
        Assert.Contains(problems, p => p.Contains("../src/Bdh.Model/Gone.cs does not exist", StringComparison.Ordinal));
        Assert.Contains(problems, p => p.Contains("no heading with anchor #no-such-heading", StringComparison.Ordinal));
    }
}
