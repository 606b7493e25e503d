using System.Text;

namespace Bdh.Model.Text;

/// <summary>Text as tokens: the vocabulary is the 256 byte values, and text is UTF-8.</summary>
public static class ByteTokens
{
    public const int VocabSize = 256;

    public static int[] Encode(string text) => Encoding.UTF8.GetBytes(text).Select(b => (int)b).ToArray();

    /// <summary>Tokens as text; bytes that are not valid UTF-8 become U+FFFD.</summary>
    public static string Decode(IEnumerable<int> tokens) => Encoding.UTF8.GetString(tokens.Select(t => (byte)t).ToArray());
}
