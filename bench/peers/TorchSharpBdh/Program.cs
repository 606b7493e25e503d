// The TorchSharp peer of bench/compare-torchsharp.sh: the reference BDH on TorchSharp-cpu (LibTorch), checked against
// the fixtures, trained and sampled the way `bdh train` and `bdh sample --mode full` are, and timed the same way.
using System.Diagnostics;
using System.Text;
using TorchSharp;
using TorchSharpBdh;
using static TorchSharp.torch;

const string Usage = """
    torchsharp-bdh check [--fixtures DIR]
        the peer against ../shared/fixtures: float32 and float64 forward, traces, gradients, AdamW steps, greedy
        tokens, the trained model's val loss and greedy text; exit 1 when a group is over its tolerance
    torchsharp-bdh train --data FILE [--preset cpu|paper] [--steps N] [--threads N] [--seed N]
        cpu: 4 layers, D 128, 4 heads, multiplier 16, dropout 0.1, batch 16 x 64 (bdh train's cpu preset)
        paper: 6 layers, D 256, 4 heads, multiplier 128, dropout 0.1, one 512-token sequence per step
        AdamW lr 1e-3, weight decay 0.1, betas 0.9/0.999, eps 1e-8; prints the median step as bdh train does
    torchsharp-bdh generate --checkpoint FILE [--prompt TEXT] [--tokens N] [--threads N]
        greedy continuation by full recompute (each token re-runs the whole sequence), as bdh sample --mode full
    """;

if (args.Length == 0 || args[0] is "-h" or "--help")
{
    Console.WriteLine(Usage);
    return args.Length == 0 ? 2 : 0;
}
var options = new Dictionary<string, string>();
for (int i = 1; i < args.Length; i += 2)
{
    if (!args[i].StartsWith("--") || i + 1 == args.Length)
    {
        Console.Error.WriteLine($"torchsharp-bdh: '{args[i]}' is not an option with a value\n{Usage}");
        return 2;
    }
    options[args[i][2..]] = args[i + 1];
}
string Option(string name, string fallback) => options.Remove(name, out var value) ? value : fallback;

int threads = int.Parse(Option("threads", Environment.ProcessorCount.ToString()));
torch.set_num_threads(threads);
string runtime = $"TorchSharp {typeof(torch).Assembly.GetName().Version!.ToString(3)}, LibTorch {torch.__version__}, {threads} threads";
int status = args[0] switch
{
    "check" => ReferenceCheck.Run(Option("fixtures", "../shared/fixtures")) ? 0 : 1,
    "train" => Train(Option("data", ""), Option("preset", "cpu"), int.Parse(Option("steps", "60")), long.Parse(Option("seed", "1337"))),
    "generate" => Generate(Option("checkpoint", ""), Option("prompt", "ROMEO:"), int.Parse(Option("tokens", "256"))),
    _ => -1,
};
if (status == -1 || options.Count > 0)
{
    Console.Error.WriteLine($"torchsharp-bdh: unknown command or option: {string.Join(" ", options.Keys.Prepend(args[0]))}\n{Usage}");
    return 2;
}
return status;

int Train(string dataPath, string preset, int steps, long seed)
{
    var (config, batch, block) = preset switch
    {
        "cpu" => (new BdhConfig { NLayer = 4, NEmbd = 128, NHead = 4, MlpInternalDimMultiplier = 16 }, 16, 64),
        "paper" => (new BdhConfig(), 1, 512),
        _ => throw new ArgumentException($"--preset: cpu or paper, not '{preset}'"),
    };
    var data = File.ReadAllBytes(dataPath);
    var train = data.AsMemory(0, (int)(data.Length * 0.9)); // the reference's split: the first 90% trains
    using var model = BdhTorch.Create(config, float32, seed);
    using var adamw = optim.AdamW(model.Parameters.Select(p => p.Value), lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.1);
    var random = new Random((int)seed);
    var stepSeconds = new List<double>();
    var losses = new List<double>();
    Console.Error.WriteLine($"training {config} batch {batch} x {block}, {runtime}");
    for (int step = 1; step <= steps; step++)
    {
        var watch = Stopwatch.StartNew();
        using (NewDisposeScope())
        {
            // A batch as the reference's get_batch: offsets uniform in [0, len − T), targets one byte on.
            var inputs = new long[batch * block];
            var targets = new long[batch * block];
            for (int b = 0; b < batch; b++)
            {
                int start = random.Next(train.Length - block);
                for (int t = 0; t < block; t++)
                {
                    inputs[b * block + t] = train.Span[start + t];
                    targets[b * block + t] = train.Span[start + t + 1];
                }
            }
            var (_, loss) = model.Forward(tensor(inputs, [batch, block]), tensor(targets, [batch, block]), training: true);
            foreach (var (_, p) in model.Parameters) p.grad = null; // zero_grad as PyTorch 2's default (set_to_none)
            loss!.backward();
            adamw.step();
            losses.Add(loss.item<float>());
        }
        stepSeconds.Add(watch.Elapsed.TotalSeconds);
        if (step == 1 || step % Math.Max(1, steps / 10) == 0)
            Console.Error.WriteLine($"step {step}/{steps}  loss {losses[^1]:0.0000}  {batch * block / stepSeconds[^1]:0} tok/s");
    }
    double median = stepSeconds.Order().ElementAt(stepSeconds.Count / 2);
    Console.WriteLine($"done: {steps} steps, median step {median * 1000:0.0} ms, {batch * block / median:0} tokens/s, " +
        $"train loss {losses.TakeLast(50).Average():0.0000} (mean of last 50 steps); {runtime}");
    return 0;
}

int Generate(string checkpoint, string prompt, int count)
{
    using var model = BdhTorch.Load(new Safetensors(checkpoint), float32);
    var stdout = Console.OpenStandardOutput();
    stdout.Write(Encoding.UTF8.GetBytes(prompt));
    var watch = Stopwatch.StartNew();
    model.Generate(Encoding.UTF8.GetBytes(prompt).Select(b => (long)b).ToList(), count, token => stdout.WriteByte((byte)token));
    double seconds = watch.Elapsed.TotalSeconds;
    stdout.WriteByte((byte)'\n');
    Console.Error.WriteLine($"{count} tokens in {seconds:0.00} s, {count / seconds:0.0} tokens/s (full recompute; {runtime})");
    return 0;
}
