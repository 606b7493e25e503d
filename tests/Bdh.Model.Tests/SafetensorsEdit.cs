using System.Buffers.Binary;
using System.Text;
using System.Text.Json.Nodes;

namespace Bdh.Model.Tests;

/// <summary>
/// A safetensors file taken apart into its JSON header and its data section, to be changed by a test
/// and put back together: how corrupt or hostile files are made.
/// </summary>
public sealed class SafetensorsEdit
{
    public JsonObject Header { get; }
    public byte[] Data { get; set; }

    public SafetensorsEdit(byte[] file)
    {
        int length = (int)BinaryPrimitives.ReadUInt64LittleEndian(file);
        Header = JsonNode.Parse(file.AsSpan(8, length))!.AsObject();
        Data = file[(8 + length)..];
    }

    public static SafetensorsEdit Of(string path) => new(File.ReadAllBytes(path));

    public JsonObject Metadata => Header["__metadata__"]!.AsObject();

    /// <summary>The data bytes of tensor <paramref name="name"/>, to be changed in place.</summary>
    public Span<byte> Bytes(string name)
    {
        var offsets = Header[name]!["data_offsets"]!.AsArray();
        int begin = offsets[0]!.GetValue<int>(), end = offsets[1]!.GetValue<int>();
        return Data.AsSpan(begin, end - begin);
    }

    public byte[] ToBytes() => Build(Header.ToJsonString(), Data);

    public string Save(string path)
    {
        File.WriteAllBytes(path, ToBytes());
        return path;
    }

    /// <summary>A file from a header (any text) and a data section: the header length is the text's.</summary>
    public static byte[] Build(string header, ReadOnlySpan<byte> data)
    {
        byte[] json = Encoding.UTF8.GetBytes(header);
        var file = new byte[8 + json.Length + data.Length];
        BinaryPrimitives.WriteUInt64LittleEndian(file, (ulong)json.Length);
        json.CopyTo(file, 8);
        data.CopyTo(file.AsSpan(8 + json.Length));
        return file;
    }
}
