using System.Buffers.Binary;
using System.IO.Compression;
using System.Text;

namespace Bdh.Cli;

/// <summary>A minimal PNG writer (8-bit RGB, unfiltered rows, zlib) for heatmaps: no imaging library needed.</summary>
public static class Png
{
    /// <summary>The PNG file of values [rows, cols] as a heatmap, one pixel per cell; color maps a value to RGB.</summary>
    public static byte[] Encode(ReadOnlySpan<float> values, int rows, int cols, Func<float, (byte R, byte G, byte B)> color)
    {
        int height = rows;
        var raw = new byte[height * (1 + 3 * cols)];
        for (int y = 0; y < height; y++)
        {
            int offset = y * (1 + 3 * cols); // raw[offset] = 0: filter type None
            for (int x = 0; x < cols; x++)
            {
                var (r, g, b) = color(values[y * cols + x]);
                raw[offset + 1 + 3 * x] = r;
                raw[offset + 2 + 3 * x] = g;
                raw[offset + 3 + 3 * x] = b;
            }
        }
        using var compressed = new MemoryStream();
        using (var z = new ZLibStream(compressed, CompressionLevel.Optimal, leaveOpen: true)) z.Write(raw);

        using var file = new MemoryStream();
        file.Write([0x89, (byte)'P', (byte)'N', (byte)'G', 0x0D, 0x0A, 0x1A, 0x0A]);
        var header = new byte[13];
        BinaryPrimitives.WriteInt32BigEndian(header, cols);
        BinaryPrimitives.WriteInt32BigEndian(header.AsSpan(4), height);
        header[8] = 8;  // bits per channel
        header[9] = 2;  // RGB
        Chunk(file, "IHDR", header);
        Chunk(file, "IDAT", compressed.ToArray());
        Chunk(file, "IEND", []);
        return file.ToArray();
    }

    /// <summary>0 → black, through red and yellow, to white at 1 (for non-negative activations).</summary>
    public static (byte, byte, byte) Heat(float v)
    {
        float x = Math.Clamp(v, 0, 1) * 3;
        return ((byte)(255 * Math.Min(x, 1)), (byte)(255 * Math.Clamp(x - 1, 0, 1)), (byte)(255 * Math.Clamp(x - 2, 0, 1)));
    }

    /// <summary>−1 → blue, 0 → white, +1 → red (for signed weights).</summary>
    public static (byte, byte, byte) Diverging(float v)
    {
        float x = Math.Clamp(v, -1, 1);
        byte fade = (byte)(255 * (1 - Math.Abs(x)));
        return x >= 0 ? ((byte)255, fade, fade) : (fade, fade, (byte)255);
    }

    private static void Chunk(Stream s, string type, byte[] data)
    {
        Span<byte> word = stackalloc byte[4];
        BinaryPrimitives.WriteInt32BigEndian(word, data.Length);
        s.Write(word);
        byte[] typeAndData = [.. Encoding.ASCII.GetBytes(type), .. data];
        s.Write(typeAndData);
        BinaryPrimitives.WriteUInt32BigEndian(word, Crc32(typeAndData));
        s.Write(word);
    }

    private static readonly uint[] CrcTable = Enumerable.Range(0, 256).Select(n =>
    {
        uint c = (uint)n;
        for (int k = 0; k < 8; k++) c = (c & 1) != 0 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        return c;
    }).ToArray();

    private static uint Crc32(ReadOnlySpan<byte> bytes)
    {
        uint c = 0xFFFFFFFFu;
        foreach (byte b in bytes) c = CrcTable[(c ^ b) & 0xFF] ^ (c >> 8);
        return c ^ 0xFFFFFFFFu;
    }
}
