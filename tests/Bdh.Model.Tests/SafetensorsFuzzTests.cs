using System.Diagnostics;
using System.Text.Json.Nodes;

namespace Bdh.Model.Tests;

/// <summary>
/// Seeded malformed safetensors files: each either loads as a model or fails with a
/// <see cref="SafetensorsException"/>, never another exception, and never allocates more than a small
/// multiple of its own size. CI runs 400 cases of seed 21 in well under 20 s; a longer run outside CI sets
/// BDH_FUZZ_CASES and BDH_FUZZ_SEED (see tests/README.md).
/// </summary>
public class SafetensorsFuzzTests
{
    private static readonly BdhConfig Tiny = new() { NLayer = 2, NEmbd = 8, NHead = 2, MlpInternalDimMultiplier = 4 };

    /// <summary>What loading a file may allocate beyond its own bytes: the model (its size again), JSON parsing, the RoPE frequencies.</summary>
    private static long AllowedBytes(int fileLength) => 16L * fileLength + (1 << 20);

    [Fact]
    public void MalformedFilesLoadOrFailWithOurErrorWithinBoundedMemory()
    {
        using var dir = new TempDir();
        string path = Path.Combine(dir.Path, "m.safetensors");
        Checkpoint.Save(BdhModel<float>.Create(Tiny, 5), path);
        byte[] valid = File.ReadAllBytes(path);
        Load(valid); // warm up: the first call JIT-compiles and fills pools
        int cases = int.TryParse(Environment.GetEnvironmentVariable("BDH_FUZZ_CASES"), out int n) ? n : 400;
        var rng = new Random(int.TryParse(Environment.GetEnvironmentVariable("BDH_FUZZ_SEED"), out int seed) ? seed : 21);
        var watch = Stopwatch.StartNew();
        int loaded = 0, refused = 0;
        for (int i = 0; i < cases; i++)
        {
            byte[] file = Mutate(valid, rng);
            long before = GC.GetAllocatedBytesForCurrentThread();
            try
            {
                Load(file);
                loaded++;
            }
            catch (SafetensorsException) { refused++; }
            catch (Exception e)
            {
                Assert.Fail($"case {i}: {e.GetType().Name}: {e.Message}\nheader: {HeaderText(file)}");
            }
            long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
            Assert.True(allocated <= AllowedBytes(file.Length), $"case {i}: allocated {allocated} bytes for a {file.Length}-byte file\nheader: {HeaderText(file)}");
        }
        Assert.True(refused > cases * 3 / 4 && loaded > 0, $"{loaded} loaded, {refused} refused: the generator should make mostly broken files and some valid ones");
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(20) * (cases / 400.0), $"took {watch.Elapsed}");
    }

    private static void Load(byte[] file)
    {
        var st = SafetensorsFile.Parse("fuzz.safetensors", file);
        foreach (var entry in st.Entries.Values)
        {
            if (entry.DType is "I32" or "I64") st.ReadInts(entry.Name);
            else st.ReadTensor<float>(entry.Name).Dispose();
        }
        Checkpoint.LoadModel<float>(st);
    }

    private static string HeaderText(byte[] file) => file.Length <= 8 ? $"{file.Length} bytes" : System.Text.Encoding.UTF8.GetString(file, 8, Math.Min(file.Length - 8, 600));

    /// <summary>One of several kinds of damage, each drawn with its own values.</summary>
    private static byte[] Mutate(byte[] valid, Random rng)
    {
        var edit = new SafetensorsEdit(valid);
        var names = edit.Header.Select(p => p.Key).Where(k => k != "__metadata__").ToArray();
        var tensor = edit.Header[names[rng.Next(names.Length)]]!.AsObject();
        JsonNode Value() => rng.Next(9) switch
        {
            0 => "abc",
            1 => JsonValue.Create(-rng.Next(1, 100)),
            2 => JsonValue.Create(1L << rng.Next(31, 62)),
            3 => JsonValue.Create(rng.NextDouble() * 10),
            4 => new JsonArray(),
            5 => new JsonObject { ["x"] = 1 },
            6 => JsonValue.Create(true),
            7 => JsonValue.Create(int.MaxValue),
            _ => JsonValue.Create(rng.Next(0, 1 << 12)),
        };
        var config = JsonNode.Parse(edit.Metadata["config"]!.GetValue<string>())!.AsObject();
        switch (rng.Next(12))
        {
            case 0: // a byte of the header or the data changed
                byte[] flipped = edit.ToBytes();
                for (int k = rng.Next(1, 4); k > 0; k--) flipped[rng.Next(flipped.Length)] ^= (byte)(1 << rng.Next(8));
                return flipped;
            case 1: // cut short
                byte[] whole = edit.ToBytes();
                return whole[..rng.Next(0, whole.Length)];
            case 2:
                tensor["data_offsets"]!.AsArray()[rng.Next(2)] = Value();
                break;
            case 3:
                tensor["shape"]!.AsArray()[rng.Next(tensor["shape"]!.AsArray().Count)] = Value();
                break;
            case 4:
                tensor["shape"] = new JsonArray(Value(), Value());
                break;
            case 5:
                tensor["dtype"] = rng.Next(2) == 0 ? Value() : new[] { "F64", "I64", "I32", "BF16", "F16", "U8" }[rng.Next(6)];
                break;
            case 6:
                tensor.Remove(new[] { "dtype", "shape", "data_offsets" }[rng.Next(3)]);
                break;
            case 7: // a config that claims sizes the file does not hold
                config[new[] { "n_layer", "n_embd", "n_head", "mlp_internal_dim_multiplier", "vocab_size", "dropout" }[rng.Next(6)]] = Value();
                edit.Metadata["config"] = config.ToJsonString();
                break;
            case 8: // huge N, and no attn.freqs to bound it
                config["mlp_internal_dim_multiplier"] = 1 << rng.Next(10, 28);
                edit.Metadata["config"] = config.ToJsonString();
                edit.Header.Remove("attn.freqs");
                break;
            case 9:
                edit.Metadata[rng.Next(2) == 0 ? "config" : "format"] = Value();
                break;
            case 10: // a weight that is NaN or infinite
                BitConverter.TryWriteBytes(edit.Bytes(names[rng.Next(names.Length)])[(4 * rng.Next(4))..], rng.Next(2) == 0 ? float.NaN : float.NegativeInfinity);
                break;
            default: // a tensor removed, or unchanged: such files load
                if (rng.Next(2) == 0) edit.Header.Remove(names[rng.Next(names.Length)]);
                break;
        }
        return edit.ToBytes();
    }
}
