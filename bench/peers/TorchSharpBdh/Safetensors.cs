using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text.Json;
using static TorchSharp.torch;

namespace TorchSharpBdh;

/// <summary>
/// A safetensors file read whole: an 8-byte little-endian header length, a JSON header naming each tensor's dtype,
/// shape and byte range, then the data. Only what the fixtures hold: F32, F64 and I64.
/// </summary>
public sealed class Safetensors
{
    private readonly byte[] _bytes;
    private readonly int _dataStart;
    private readonly Dictionary<string, (string Dtype, long[] Shape, int Begin, int End)> _entries = [];

    public string Path { get; }
    public IReadOnlyDictionary<string, string> Metadata { get; }

    public Safetensors(string path)
    {
        Path = path;
        _bytes = File.ReadAllBytes(path);
        int headerLength = checked((int)BinaryPrimitives.ReadUInt64LittleEndian(_bytes));
        _dataStart = 8 + headerLength;
        using var header = JsonDocument.Parse(_bytes.AsMemory(8, headerLength));
        var metadata = new Dictionary<string, string>();
        foreach (var entry in header.RootElement.EnumerateObject())
        {
            if (entry.Name == "__metadata__")
            {
                foreach (var m in entry.Value.EnumerateObject()) metadata[m.Name] = m.Value.GetString()!;
                continue;
            }
            var offsets = entry.Value.GetProperty("data_offsets");
            _entries[entry.Name] = (entry.Value.GetProperty("dtype").GetString()!,
                entry.Value.GetProperty("shape").EnumerateArray().Select(s => s.GetInt64()).ToArray(),
                offsets[0].GetInt32(), offsets[1].GetInt32());
        }
        Metadata = metadata;
    }

    /// <summary>The tensor as stored (float32, float64 or int64).</summary>
    public Tensor Read(string name)
    {
        if (!_entries.TryGetValue(name, out var e)) throw new KeyNotFoundException($"{Path}: no tensor '{name}'");
        var bytes = _bytes.AsSpan(_dataStart + e.Begin, e.End - e.Begin);
        return e.Dtype switch
        {
            "F32" => tensor(MemoryMarshal.Cast<byte, float>(bytes).ToArray(), e.Shape),
            "F64" => tensor(MemoryMarshal.Cast<byte, double>(bytes).ToArray(), e.Shape),
            "I64" => tensor(MemoryMarshal.Cast<byte, long>(bytes).ToArray(), e.Shape),
            _ => throw new NotSupportedException($"{Path}: '{name}' is {e.Dtype}; F32, F64 and I64 are read"),
        };
    }

    /// <summary>The model's config from the header's <c>__metadata__.config</c> JSON.</summary>
    public BdhConfig Config() =>
        JsonSerializer.Deserialize<BdhConfig>(Metadata.TryGetValue("config", out var json) ? json : throw new InvalidDataException($"{Path}: no config in __metadata__"))!;
}
