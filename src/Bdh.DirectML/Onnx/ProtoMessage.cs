using System.Buffers.Binary;
using System.Text;

namespace Bdh.DirectML.Onnx;

/// <summary>
/// A protocol-buffers message being built: its fields in order, written once with their lengths.
/// ONNX files are protobuf; this is the whole of the wire format they need (varints, 32-bit floats,
/// length-delimited bytes and nested messages), so the export has no generated code and no native
/// dependency. Repeated scalars are written unpacked, one tag per value, which every parser accepts.
/// </summary>
internal sealed class ProtoMessage
{
    private enum WireType { Varint = 0, Fixed32 = 5, LengthDelimited = 2 }

    private readonly List<(int Field, WireType Type, object Value)> _fields = [];
    private long? _length;

    public ProtoMessage Int(int field, long value) => Add(field, WireType.Varint, value);

    public ProtoMessage Float(int field, float value) => Add(field, WireType.Fixed32, value);

    public ProtoMessage Bytes(int field, byte[] value) => Add(field, WireType.LengthDelimited, value);

    public ProtoMessage String(int field, string value) => Bytes(field, Encoding.UTF8.GetBytes(value));

    public ProtoMessage Message(int field, ProtoMessage value) => Add(field, WireType.LengthDelimited, value);

    private ProtoMessage Add(int field, WireType type, object value)
    {
        _fields.Add((field, type, value));
        _length = null;
        return this;
    }

    /// <summary>The encoded size in bytes (a nested message is prefixed with it).</summary>
    public long Length => _length ??= _fields.Sum(f => VarintSize(Tag(f.Field, f.Type)) + f.Type switch
    {
        WireType.Varint => VarintSize((ulong)(long)f.Value),
        WireType.Fixed32 => 4,
        _ => VarintSize((ulong)PayloadLength(f.Value)) + PayloadLength(f.Value),
    });

    public void WriteTo(Stream stream)
    {
        Span<byte> fixed32 = stackalloc byte[4];
        foreach (var (field, type, value) in _fields)
        {
            WriteVarint(stream, Tag(field, type));
            switch (value)
            {
                case long v: WriteVarint(stream, (ulong)v); break;
                case float f: BinaryPrimitives.WriteSingleLittleEndian(fixed32, f); stream.Write(fixed32); break;
                case byte[] bytes: WriteVarint(stream, (ulong)bytes.Length); stream.Write(bytes); break;
                case ProtoMessage message: WriteVarint(stream, (ulong)message.Length); message.WriteTo(stream); break;
            }
        }
    }

    private static long PayloadLength(object value) => value is ProtoMessage m ? m.Length : ((byte[])value).Length;

    private static ulong Tag(int field, WireType type) => (ulong)field << 3 | (ulong)type;

    /// <summary>7 bits per byte, low first; a negative int64 takes all 10 bytes (two's complement), as protobuf specifies.</summary>
    private static int VarintSize(ulong value)
    {
        int size = 1;
        while ((value >>= 7) != 0) size++;
        return size;
    }

    private static void WriteVarint(Stream stream, ulong value)
    {
        while (value >= 0x80)
        {
            stream.WriteByte((byte)(value | 0x80));
            value >>= 7;
        }
        stream.WriteByte((byte)value);
    }
}
