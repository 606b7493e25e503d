namespace Bdh.Model;

/// <summary>
/// A byte-level corpus split as the reference does: the first 90% of the bytes train, the rest validate.
/// </summary>
public sealed class TextData
{
    public byte[] Train { get; }
    public byte[] Val { get; }

    public TextData(byte[] bytes, double trainFraction = 0.9)
    {
        int split = (int)(bytes.Length * trainFraction);
        Train = bytes[..split];
        Val = bytes[split..];
    }

    public static TextData Load(string path) => new(File.ReadAllBytes(path));

    /// <summary>
    /// A random batch as the reference's get_batch: B offsets uniform in [0, len − T), inputs
    /// data[i..i+T), targets data[i+1..i+T+1]. Both are [B, T] row-major.
    /// </summary>
    public static (int[] Inputs, int[] Targets) RandomBatch(byte[] data, int batch, int block, Rng rng)
    {
        if (data.Length <= block) throw new ArgumentException($"the text ({data.Length} bytes) is shorter than block + 1 = {block + 1}");
        var inputs = new int[batch * block];
        var targets = new int[batch * block];
        for (int b = 0; b < batch; b++)
        {
            int start = rng.NextInt(data.Length - block);
            for (int t = 0; t < block; t++)
            {
                inputs[b * block + t] = data[start + t];
                targets[b * block + t] = data[start + t + 1];
            }
        }
        return (inputs, targets);
    }

    /// <summary>Number of non-overlapping windows data[i·T .. i·T + T + 1) that fit.</summary>
    public static int WindowCount(byte[] data, int block) => Math.Max(0, (data.Length - 1) / block);

    /// <summary>Windows [first, first + count) as a batch of inputs and targets.</summary>
    public static (int[] Inputs, int[] Targets) Windows(byte[] data, int block, int first, int count)
    {
        var inputs = new int[count * block];
        var targets = new int[count * block];
        for (int w = 0; w < count; w++)
            for (int t = 0; t < block; t++)
            {
                inputs[w * block + t] = data[(first + w) * block + t];
                targets[w * block + t] = data[(first + w) * block + t + 1];
            }
        return (inputs, targets);
    }
}
