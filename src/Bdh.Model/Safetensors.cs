using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;

namespace Bdh.Model;

/// <summary>A malformed or unsuitable safetensors file; the message says what and where.</summary>
public sealed class SafetensorsException(string message) : InputException(message);

/// <summary>One tensor's entry in a safetensors header: data_offsets are relative to the data section.</summary>
public sealed record SafetensorsEntry(string Name, string DType, int[] Shape, long Begin, long End);

/// <summary>
/// The safetensors format (8-byte little-endian header length, JSON header, raw little-endian data),
/// read defensively: every length, offset, dtype and shape is checked against the file before any
/// buffer is sized from it.
/// </summary>
public sealed class SafetensorsFile
{
    /// <summary>No real header comes near this; a larger claim means a corrupt or hostile file.</summary>
    public const long MaxHeaderBytes = 100L << 20;

    private static readonly Dictionary<string, int> DTypeSizes = new() { ["F64"] = 8, ["F32"] = 4, ["BF16"] = 2, ["F16"] = 2, ["I64"] = 8, ["I32"] = 4 };

    private readonly byte[] _data;
    private readonly long _dataStart;

    public string Path { get; }
    public IReadOnlyDictionary<string, string> Metadata { get; }
    public IReadOnlyDictionary<string, SafetensorsEntry> Entries { get; }

    private SafetensorsFile(string path, byte[] data, long dataStart, Dictionary<string, string> metadata, Dictionary<string, SafetensorsEntry> entries)
    {
        Path = path; _data = data; _dataStart = dataStart; Metadata = metadata; Entries = entries;
    }

    public static SafetensorsFile Read(string path)
    {
        return Parse(path, InputFile.ReadAll(path));
    }

    public static SafetensorsFile Parse(string path, byte[] bytes)
    {
        SafetensorsException Bad(string why) => new($"{path}: not a valid safetensors file: {why}");
        if (bytes.Length < 8) throw Bad($"truncated ({bytes.Length} bytes, the header length alone takes 8)");
        ulong headerLength = BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        if (headerLength > MaxHeaderBytes) throw Bad($"header length {headerLength} exceeds the {MaxHeaderBytes}-byte limit");
        if ((long)headerLength > bytes.Length - 8) throw Bad($"header length {headerLength} runs past the end of the {bytes.Length}-byte file");
        long dataStart = 8 + (long)headerLength;
        long dataLength = bytes.Length - dataStart;

        // JsonDocument checks the structure but leaves strings to be decoded when read: check their UTF-8 here.
        if (!System.Text.Unicode.Utf8.IsValid(bytes.AsSpan(8, (int)headerLength))) throw Bad("header is not valid UTF-8");
        JsonDocument doc;
        try { doc = JsonDocument.Parse(bytes.AsMemory(8, (int)headerLength)); }
        catch (Exception e) when (e is JsonException or ArgumentException) { throw Bad($"header is not JSON ({e.Message})"); }
        using var _ = doc;
        if (doc.RootElement.ValueKind != JsonValueKind.Object) throw Bad("header is not a JSON object");

        var metadata = new Dictionary<string, string>();
        var entries = new Dictionary<string, SafetensorsEntry>();
        foreach (var prop in doc.RootElement.EnumerateObject())
        {
            if (prop.Name == "__metadata__")
            {
                if (prop.Value.ValueKind != JsonValueKind.Object) throw Bad("__metadata__ is not an object");
                foreach (var m in prop.Value.EnumerateObject())
                    metadata[m.Name] = m.Value.ValueKind == JsonValueKind.String ? m.Value.GetString()! : throw Bad($"metadata '{m.Name}' is not a string");
                continue;
            }
            entries[prop.Name] = ParseEntry(prop, dataLength, Bad);
        }
        // Tensors must not share bytes.
        var sorted = entries.Values.Where(e => e.End > e.Begin).OrderBy(e => e.Begin).ToArray();
        for (int i = 1; i < sorted.Length; i++)
            if (sorted[i].Begin < sorted[i - 1].End) throw Bad($"tensors '{sorted[i - 1].Name}' and '{sorted[i].Name}' overlap");
        return new SafetensorsFile(path, bytes, dataStart, metadata, entries);
    }

    private static SafetensorsEntry ParseEntry(JsonProperty prop, long dataLength, Func<string, SafetensorsException> bad)
    {
        var v = prop.Value;
        if (v.ValueKind != JsonValueKind.Object ||
            !v.TryGetProperty("dtype", out var dt) || dt.ValueKind != JsonValueKind.String ||
            !v.TryGetProperty("shape", out var sh) || sh.ValueKind != JsonValueKind.Array ||
            !v.TryGetProperty("data_offsets", out var off) || off.ValueKind != JsonValueKind.Array || off.GetArrayLength() != 2)
            throw bad($"tensor '{prop.Name}' needs dtype, shape and two data_offsets");
        string dtype = dt.GetString()!;
        if (!DTypeSizes.TryGetValue(dtype, out int size)) throw bad($"tensor '{prop.Name}' has unsupported dtype '{dtype}'");
        var shape = new int[sh.GetArrayLength()];
        long count = 1;
        int k = 0;
        foreach (var d in sh.EnumerateArray())
        {
            if (d.ValueKind != JsonValueKind.Number || !d.TryGetInt32(out shape[k]) || shape[k] < 0)
                throw bad($"tensor '{prop.Name}' has an invalid dimension");
            count *= shape[k++];
            if (count > int.MaxValue) throw bad($"tensor '{prop.Name}' has too many elements");
        }
        if (off[0].ValueKind != JsonValueKind.Number || off[1].ValueKind != JsonValueKind.Number ||
            !off[0].TryGetInt64(out long begin) || !off[1].TryGetInt64(out long end) || begin < 0 || end < begin)
            throw bad($"tensor '{prop.Name}' has invalid data_offsets");
        if (end > dataLength) throw bad($"tensor '{prop.Name}' ends at byte {end}, past the {dataLength}-byte data section");
        if (end - begin != count * size)
            throw bad($"tensor '{prop.Name}' has {end - begin} bytes, its shape and {dtype} need {count * size}");
        return new SafetensorsEntry(prop.Name, dtype, shape, begin, end);
    }

    public SafetensorsEntry Entry(string name) =>
        Entries.TryGetValue(name, out var e) ? e : throw new SafetensorsException($"{Path}: no tensor named '{name}'");

    private ReadOnlySpan<byte> Bytes(SafetensorsEntry e) => _data.AsSpan((int)(_dataStart + e.Begin), (int)(e.End - e.Begin));

    /// <summary>A floating-point tensor converted to <typeparamref name="T"/> (from F64, F32, BF16 or F16).</summary>
    public Tensor<T> ReadTensor<T>(string name) where T : unmanaged, IFloatingPointIeee754<T>
    {
        var e = Entry(name);
        var bytes = Bytes(e);
        var t = Tensor<T>.Empty(e.Shape);
        var dst = t.Span;
        switch (e.DType)
        {
            case "F32":
                var f32 = Float32(bytes, dst.Length);
                TP.ConvertTruncating<float, T>(f32, dst);
                break;
            case "F64":
                for (int i = 0; i < dst.Length; i++) dst[i] = T.CreateTruncating(BinaryPrimitives.ReadDoubleLittleEndian(bytes[(8 * i)..]));
                break;
            case "BF16":
                for (int i = 0; i < dst.Length; i++) dst[i] = T.CreateTruncating(BitConverter.Int32BitsToSingle(BinaryPrimitives.ReadUInt16LittleEndian(bytes[(2 * i)..]) << 16));
                break;
            case "F16":
                for (int i = 0; i < dst.Length; i++) dst[i] = T.CreateTruncating((float)BinaryPrimitives.ReadHalfLittleEndian(bytes[(2 * i)..]));
                break;
            default:
                t.Dispose();
                throw new SafetensorsException($"{Path}: tensor '{name}' is {e.DType}, not floating point");
        }
        return t;
    }

    private static ReadOnlySpan<float> Float32(ReadOnlySpan<byte> bytes, int count) =>
        BitConverter.IsLittleEndian ? MemoryMarshal.Cast<byte, float>(bytes)[..count]
            : throw new PlatformNotSupportedException("big-endian hosts are not supported");

    /// <summary>An integer tensor (I64 or I32) as int values.</summary>
    public int[] ReadInts(string name)
    {
        var e = Entry(name);
        var bytes = Bytes(e);
        int size = DTypeSizes[e.DType];
        if (e.DType is not ("I64" or "I32")) throw new SafetensorsException($"{Path}: tensor '{name}' is {e.DType}, not an integer type");
        var result = new int[bytes.Length / size];
        for (int i = 0; i < result.Length; i++)
        {
            long value = size == 8 ? BinaryPrimitives.ReadInt64LittleEndian(bytes[(8 * i)..]) : BinaryPrimitives.ReadInt32LittleEndian(bytes[(4 * i)..]);
            result[i] = value is >= int.MinValue and <= int.MaxValue ? (int)value
                : throw new SafetensorsException($"{Path}: tensor '{name}' holds {value} at element {i}, outside the range of int");
        }
        return result;
    }

    /// <summary>
    /// Writes float32 tensors atomically: to a temporary file beside <paramref name="path"/>, flushed to
    /// disk, then renamed over it — a kill at any moment leaves the old file whole.
    /// </summary>
    public static void Write(string path, IEnumerable<(string Name, int[] Shape, ReadOnlyMemory<float> Data)> tensors, IReadOnlyDictionary<string, string> metadata)
    {
        var list = tensors.ToList();
        var header = new Dictionary<string, object> { ["__metadata__"] = metadata };
        long offset = 0;
        foreach (var (name, shape, data) in list)
        {
            long bytes = (long)Tensor<float>.ShapeLength(shape) * 4;
            if (data.Length * 4L < bytes) throw new ArgumentException($"tensor '{name}' has fewer values than its shape");
            header[name] = new { dtype = "F32", shape, data_offsets = new[] { offset, offset + bytes } };
            offset += bytes;
        }
        byte[] json = Encoding.UTF8.GetBytes(JsonSerializer.Serialize(header));
        int padded = (json.Length + 7) / 8 * 8; // align the data section to 8 bytes, padding with spaces

        string directory = System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(path))!;
        string temp = System.IO.Path.Combine(directory, $".{System.IO.Path.GetFileName(path)}.{Environment.ProcessId}.tmp");
        try
        {
            using (var fs = new FileStream(temp, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20))
            {
                Span<byte> len = stackalloc byte[8];
                BinaryPrimitives.WriteUInt64LittleEndian(len, (ulong)padded);
                fs.Write(len);
                fs.Write(json);
                for (int i = json.Length; i < padded; i++) fs.WriteByte((byte)' ');
                foreach (var (_, shape, data) in list)
                    fs.Write(MemoryMarshal.AsBytes(data.Span[..Tensor<float>.ShapeLength(shape)]));
                fs.Flush(flushToDisk: true);
            }
            File.Move(temp, path, overwrite: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // The temporary file is ours, not the user's: the message names the file they asked for.
            throw new IOException($"{path}: cannot write: {e.Message.Replace(temp, path)}", e);
        }
        finally
        {
            if (File.Exists(temp)) File.Delete(temp);
        }
    }
}
