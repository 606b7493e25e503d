using System.Runtime.InteropServices;

namespace Bdh.DirectML.Onnx;

/// <summary>ONNX element types (TensorProto.DataType) the export uses.</summary>
internal enum OnnxType { Float = 1, Int64 = 7 }

/// <summary>
/// An ONNX graph being built node by node, and its writer (ModelProto, IR version 8, opset 17).
/// Field numbers are onnx.proto's. Nodes are added in topological order, as ONNX requires.
/// </summary>
internal sealed class OnnxGraph(string name)
{
    public const long IrVersion = 8;
    public const long Opset = 17;

    /// <summary>A constant tensor of the graph; its bytes go inline (raw_data) or to the external data file.</summary>
    private sealed record Initializer(string Name, OnnxType Type, long[] Dims, byte[] Data);

    private readonly List<ProtoMessage> _nodes = [], _inputs = [], _outputs = [];
    private readonly List<Initializer> _initializers = [];
    private readonly List<string> _opTypes = [];
    private int _unnamed;

    /// <summary>The operator of every node, in order (tests check the export stays within what DirectML runs).</summary>
    public IReadOnlyList<string> OpTypes => _opTypes;

    public long InitializerBytes => _initializers.Sum(i => (long)i.Data.Length);

    /// <summary>A graph input. A dimension is a size (int) or a name (string) for a size known only at run time.</summary>
    public string Input(string value, OnnxType type, params object[] dims)
    {
        _inputs.Add(ValueInfo(value, type, dims));
        return value;
    }

    /// <summary>Declares a value computed by the graph as one of its outputs.</summary>
    public void Output(string value, OnnxType type, params object[] dims) => _outputs.Add(ValueInfo(value, type, dims));

    public string Weight(string value, ReadOnlySpan<float> data, params long[] dims) =>
        AddInitializer(value, OnnxType.Float, dims, MemoryMarshal.AsBytes(data).ToArray());

    /// <summary>A small int64 constant: a shape, axes, indices; rank 0 when <paramref name="dims"/> is empty.</summary>
    public string Int64s(string value, long[] data, params long[] dims) =>
        AddInitializer(value, OnnxType.Int64, dims, MemoryMarshal.AsBytes(data.AsSpan()).ToArray());

    private string AddInitializer(string value, OnnxType type, long[] dims, byte[] data)
    {
        _initializers.Add(new Initializer(value, type, dims, data));
        return value;
    }

    /// <summary>Adds one node and returns the name of its (single) output: <paramref name="output"/>, or a fresh one.</summary>
    public string Node(string op, string[] inputs, string? output = null, params ProtoMessage[] attributes)
    {
        output ??= $"{op}_{_unnamed++}";
        var node = new ProtoMessage();
        foreach (var input in inputs) node.String(1, input);
        node.String(2, output).String(3, $"{op}:{output}").String(4, op);
        foreach (var attribute in attributes) node.Message(5, attribute);
        _nodes.Add(node);
        _opTypes.Add(op);
        return output;
    }

    // AttributeProto: name 1, f 2, i 3, floats 7, ints 8, type 20 (FLOAT 1, INT 2, INTS 7).
    public static ProtoMessage Attribute(string name, long value) => new ProtoMessage().String(1, name).Int(3, value).Int(20, 2);

    public static ProtoMessage Attribute(string name, float value) => new ProtoMessage().String(1, name).Float(2, value).Int(20, 1);

    public static ProtoMessage Attribute(string name, long[] values)
    {
        var attribute = new ProtoMessage().String(1, name);
        foreach (long v in values) attribute.Int(8, v);
        return attribute.Int(20, 7);
    }

    /// <summary>
    /// Writes the model to <paramref name="path"/>. When the initializers total more than
    /// <paramref name="externalDataAbove"/> bytes, their data goes to <c>path.data</c> beside it
    /// (ONNX external data: a protobuf file may not pass 2 GB), each tensor at a 4 KiB-aligned offset
    /// so runtimes can map it. Constants under 1 KiB (shapes, axes) stay inline: shape inference reads them. Both files are written under temporary names and renamed into place.
    /// </summary>
    public void Save(string path, IReadOnlyDictionary<string, string> metadata, long externalDataAbove)
    {
        string dataPath = path + ".data";
        try { Write(path, dataPath, metadata, externalDataAbove); }
        finally
        {
            // After a failure (a full disk), no half-written temporary is left beside the export.
            File.Delete(path + ".tmp");
            File.Delete(dataPath + ".tmp");
        }
    }

    private void Write(string path, string dataPath, IReadOnlyDictionary<string, string> metadata, long externalDataAbove)
    {
        bool external = InitializerBytes > externalDataAbove;
        var graph = new ProtoMessage();
        foreach (var node in _nodes) graph.Message(1, node);
        graph.String(2, name);
        if (external)
        {
            using var data = File.Create(dataPath + ".tmp");
            foreach (var i in _initializers)
                graph.Message(5, Tensor(i, i.Data.Length < 1024 ? null : WriteExternal(data, i.Data, Path.GetFileName(dataPath))));
        }
        else
        {
            foreach (var i in _initializers) graph.Message(5, Tensor(i, null));
        }
        foreach (var input in _inputs) graph.Message(11, input);
        foreach (var output in _outputs) graph.Message(12, output);

        // ModelProto: ir_version 1, producer_name 2, producer_version 3, graph 7, opset_import 8, metadata_props 14.
        var model = new ProtoMessage()
            .Int(1, IrVersion)
            .String(2, "BdhNative")
            .String(3, typeof(OnnxGraph).Assembly.GetName().Version?.ToString() ?? "0")
            .Message(7, graph)
            .Message(8, new ProtoMessage().Int(2, Opset));
        foreach (var (key, value) in metadata) model.Message(14, new ProtoMessage().String(1, key).String(2, value));
        using (var file = File.Create(path + ".tmp")) model.WriteTo(file);

        if (external) File.Move(dataPath + ".tmp", dataPath, overwrite: true);
        else File.Delete(dataPath); // a stale data file from an earlier, larger export would mislead
        File.Move(path + ".tmp", path, overwrite: true);
    }

    /// <summary>Appends a tensor's bytes to the data file; returns its external_data entries.</summary>
    private static ProtoMessage[] WriteExternal(FileStream data, byte[] bytes, string location)
    {
        long offset = (data.Position + 4095) / 4096 * 4096;
        data.SetLength(offset);
        data.Position = offset;
        data.Write(bytes);
        return [Entry("location", location), Entry("offset", offset.ToString()), Entry("length", bytes.Length.ToString())];
    }

    private static ProtoMessage Entry(string key, string value) => new ProtoMessage().String(1, key).String(2, value);

    /// <summary>TensorProto: dims 1, data_type 2, name 8, raw_data 9, external_data 13, data_location 14 (EXTERNAL = 1).</summary>
    private static ProtoMessage Tensor(Initializer i, ProtoMessage[]? external)
    {
        var tensor = new ProtoMessage();
        foreach (long d in i.Dims) tensor.Int(1, d);
        tensor.Int(2, (long)i.Type).String(8, i.Name);
        if (external is null) return tensor.Bytes(9, i.Data);
        foreach (var entry in external) tensor.Message(13, entry);
        return tensor.Int(14, 1);
    }

    /// <summary>ValueInfoProto { name 1, type 2: TypeProto { tensor_type 1 { elem_type 1, shape 2 { dim 1 { dim_value 1 | dim_param 2 } } } } }.</summary>
    private static ProtoMessage ValueInfo(string value, OnnxType type, object[] dims)
    {
        var shape = new ProtoMessage();
        foreach (var d in dims)
            shape.Message(1, d switch
            {
                int size => new ProtoMessage().Int(1, size),
                string symbol => new ProtoMessage().String(2, symbol),
                _ => throw new ArgumentException($"dimension {d}: a size (int) or a name (string)"),
            });
        var tensorType = new ProtoMessage().Int(1, (long)type).Message(2, shape);
        return new ProtoMessage().String(1, value).Message(2, new ProtoMessage().Message(1, tensorType));
    }
}
