using System.Text.RegularExpressions;

namespace Bdh.Cli;

/// <summary>System.CommandLine's parse errors as a user reads them: one line, and a value's kind in words, not a .NET type.</summary>
internal static partial class ParseErrors
{
    public static string Readable(string message)
    {
        string line = string.Join(' ', message.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
        return ExpectedType().Replace(line, m => "as " + Kind(m.Groups[1].Value));
    }

    /// <summary>"System.Int32", "System.Nullable`1[System.UInt64]", ... in words.</summary>
    private static string Kind(string type) => Regex.Match(type, @"System\.(\w+)\]?$").Groups[1].Value switch
    {
        "Int32" => "a whole number up to 2147483647",
        "Int64" => "a whole number",
        "UInt32" or "UInt64" => "a whole number >= 0",
        "Double" or "Single" => "a number",
        "Boolean" => "true or false",
        _ => "one of the values --help lists",
    };

    [GeneratedRegex(@"as expected type '([^']+)'")]
    private static partial Regex ExpectedType();
}
