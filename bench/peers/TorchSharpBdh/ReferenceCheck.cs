using System.Text;
using System.Text.Json;
using static TorchSharp.torch;

namespace TorchSharpBdh;

/// <summary>
/// The peer against the reference's outputs in ../shared/fixtures (README there): forward, every LayerNorm and
/// attention traced, loss and gradients in float32 and float64, two AdamW steps, the greedy tokens; and for the
/// trained model its val loss and greedy text. Each group's error is max |ours − reference| / max |reference|.
/// </summary>
public static class ReferenceCheck
{
    public const double Float32Tolerance = 1e-5;
    public const double Float64Tolerance = 1e-12;
    /// <summary>
    /// AdamW steps taken from our own float32 gradients: a first step moves each weight by lr·g/(|g| + eps), so where
    /// |g| is near eps an absolute gradient error δ (float32 rounding, ~1e-10 here) moves it by up to lr·δ/eps, ~1e-5 of
    /// the weights' scale. The optimizer alone, on the reference's gradients, is held to <see cref="Float32Tolerance"/>.
    /// </summary>
    public const double AdamWTolerance = 1e-4;
    /// <summary>The trained fixture's val loss is given to this absolute precision (its README: "to ~1e-4").</summary>
    public const double ValLossTolerance = 1e-4;

    private sealed record Result(string Group, double Error, double Tolerance)
    {
        public bool Passed => Error <= Tolerance;
        public override string ToString() => $"{(Passed ? "ok  " : "FAIL")} {Group,-50} {Error:0.00e+00} (tol {Tolerance:0e+00})";
    }

    /// <summary>Checks each parity fixture and the trained one; prints a line per group and returns false on any failure.</summary>
    public static bool Run(string fixtures)
    {
        var results = new List<Result>();
        foreach (var name in new[] { "bdh-reference-small", "bdh-reference-wide" })
        {
            var file = new Safetensors(Path.Combine(fixtures, name + ".safetensors"));
            CheckParity(file, results.Add);
        }
        CheckTrained(Path.Combine(fixtures, "bdh-trained-cpu-tiny-500"), results.Add);
        Console.WriteLine("errors: max |ours - reference| / max |reference| unless the group names another");
        foreach (var r in results) Console.WriteLine(r);
        return results.All(r => r.Passed);
    }

    private static double RelativeError(Tensor ours, Tensor reference)
    {
        using var scope = NewDisposeScope();
        var o = ours.detach().to(float64);
        var r = reference.to(float64);
        if (!o.shape.SequenceEqual(r.shape))
            throw new InvalidDataException($"shape [{string.Join(", ", o.shape)}] against the reference's [{string.Join(", ", r.shape)}]");
        return (o - r).abs().max().item<double>() / r.abs().max().item<double>();
    }

    private static void CheckParity(Safetensors file, Action<Result> add)
    {
        string fixture = Path.GetFileNameWithoutExtension(file.Path).Replace("bdh-reference-", "");
        using var scope = NewDisposeScope();
        Tensor idx = file.Read("idx"), targets = file.Read("targets");

        // float32, with every traced tensor
        using var f32 = BdhTorch.Load(file, float32);
        double traced = 0;
        int tracedCount = 0;
        var (logits, loss) = f32.Forward(idx, targets, training: false, trace: (name, value) =>
        {
            traced = Math.Max(traced, RelativeError(value, file.Read(name)));
            tracedCount++;
        });
        add(new Result($"{fixture} f32 trace ({tracedCount} tensors)", traced, Float32Tolerance));
        CheckForwardAndGradients(f32, logits, loss!, file, "", $"{fixture} f32", Float32Tolerance, add);

        using var f64 = BdhTorch.Load(file, float64);
        var (logits64, loss64) = f64.Forward(idx, targets, training: false);
        CheckForwardAndGradients(f64, logits64, loss64!, file, "f64.", $"{fixture} f64", Float64Tolerance, add);

        // AdamW alone: one step on the reference's own gradients (Σ p·g has gradient g, exactly).
        using (var alone = BdhTorch.Load(file, float32))
        using (var optimizer = optim.AdamW(alone.Parameters.Select(p => p.Value), lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.1))
        {
            alone.Parameters.Select(p => (p.Value * file.Read("grad." + p.Name)).sum()).Aggregate((a, b) => a + b).backward();
            optimizer.step();
            add(new Result($"{fixture} adamw step 1 on the reference's gradients", alone.Parameters.Max(p => RelativeError(p.Value, file.Read("adamw.step1." + p.Name))), Float32Tolerance));
        }

        // Two AdamW steps from the float32 gradients above, the second on the second batch.
        using var adamw = optim.AdamW(f32.Parameters.Select(p => p.Value), lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.1);
        adamw.step();
        add(new Result($"{fixture} adamw step 1", f32.Parameters.Max(p => RelativeError(p.Value, file.Read("adamw.step1." + p.Name))), AdamWTolerance));
        adamw.zero_grad();
        var (_, loss2) = f32.Forward(file.Read("idx2"), file.Read("targets2"), training: false);
        add(new Result($"{fixture} loss after step 1", RelativeError(loss2!.view(1), file.Read("loss2")), Float32Tolerance));
        loss2.backward();
        adamw.step();
        add(new Result($"{fixture} adamw step 2", f32.Parameters.Max(p => RelativeError(p.Value, file.Read("adamw.step2." + p.Name))), AdamWTolerance));

        // Greedy tokens with the initial weights: they must be the reference's exactly.
        using var initial = BdhTorch.Load(file, float32);
        var prompt = file.Read("greedy.prompt").data<long>().ToArray();
        var expected = file.Read("greedy.out").data<long>().ToArray();
        var generated = initial.Generate(prompt, expected.Length - prompt.Length);
        int differing = generated.Zip(expected).Count(p => p.First != p.Second);
        add(new Result($"{fixture} greedy {expected.Length - prompt.Length} tokens (tokens differing)", differing, 0));
    }

    private static void CheckForwardAndGradients(BdhTorch model, Tensor logits, Tensor loss, Safetensors file, string prefix, string label,
        double tolerance, Action<Result> add)
    {
        add(new Result($"{label} logits", RelativeError(logits, file.Read(prefix + "logits")), tolerance));
        add(new Result($"{label} loss", RelativeError(loss.view(1), file.Read(prefix + "loss")), tolerance));
        loss.backward();
        foreach (var (name, p) in model.Parameters)
            add(new Result($"{label} grad {name}", RelativeError(p.grad!, file.Read(prefix + "grad." + name)), tolerance));
    }

    /// <summary>The trained model's mean loss on its fixed val windows, and its 200-token greedy text.</summary>
    private static void CheckTrained(string stem, Action<Result> add)
    {
        var file = new Safetensors(stem + ".safetensors");
        using var expected = JsonDocument.Parse(File.ReadAllText(stem + ".json"));
        using var scope = NewDisposeScope();
        using var model = BdhTorch.Load(file, float32);

        // val = the last 10% of tiny Shakespeare's bytes; windows val[i·64 .. i·64 + 65) for i < 256; mean of 8 batch means of 32.
        var data = File.ReadAllBytes(Path.Combine(Path.GetDirectoryName(stem)!, "..", "data", "tinyshakespeare.txt"));
        var val = data.AsSpan((int)(data.Length * 0.9));
        const int block = 64, windows = 256, batch = 32;
        double sum = 0;
        using (no_grad())
            for (int first = 0; first < windows; first += batch)
            {
                using var batchScope = NewDisposeScope();
                var inputs = new long[batch * block];
                var targets = new long[batch * block];
                for (int w = 0; w < batch; w++)
                    for (int t = 0; t < block; t++)
                    {
                        inputs[w * block + t] = val[(first + w) * block + t];
                        targets[w * block + t] = val[(first + w) * block + t + 1];
                    }
                var (_, loss) = model.Forward(tensor(inputs, [batch, block]), tensor(targets, [batch, block]), training: false);
                sum += loss!.item<float>();
            }
        double valLoss = sum / (windows / batch);
        add(new Result("trained val loss (abs err)", Math.Abs(valLoss - expected.RootElement.GetProperty("val_loss").GetDouble()), ValLossTolerance));

        string greedy = expected.RootElement.GetProperty("greedy_200").GetString()!;
        string prompt = expected.RootElement.GetProperty("greedy_prompt").GetString()!;
        var tokens = model.Generate(Encoding.UTF8.GetBytes(prompt).Select(b => (long)b).ToList(), 200);
        string text = Encoding.UTF8.GetString(tokens.Select(t => (byte)t).ToArray());
        int differing = text.Zip(greedy).Count(p => p.First != p.Second) + Math.Abs(text.Length - greedy.Length);
        add(new Result("trained greedy 200 (chars differing)", differing, 0));
    }
}
