using Bdh.Model;

namespace Bdh.Benchmarks;

/// <summary>
/// `flops [GFLOP/s]`: the floating-point work of one training step, forward and backward, for the workloads the
/// issue times (the `cpu` preset's 16 × 64 tokens, the paper config's one 512-token micro-batch), and how long that work
/// takes at the given rate (the FMA peak that `peak` measures, all cores): a lower bound on the step, since it leaves out
/// every pass that only moves memory (ReLU, RoPE, dropout, LayerNorm, AdamW). Only the products count, each at 2 flops a
/// multiply-add, and the attention only below its diagonal, where its products are not zeros by construction.
/// </summary>
internal static class StepFlops
{
    /// <summary>Flops of a forward and a backward pass over a batch [b, t] (see the class comment).</summary>
    public static (double Forward, double Backward) Count(BdhConfig config, int b, int t)
    {
        double tokens = (double)b * t, d = config.NEmbd, neurons = (double)config.NHead * config.N;
        double pairs = (double)b * config.NHead * t * (t - 1) / 2; // (head, sequence, i, j < i): the scores below the diagonal
        // A layer: x·encoder, ln(a)·encoder_v and xy·decoder, each [tokens, D]·[D, nh·N] in size; the attention's
        // tril(QQᵀ)·x is a dot of length N and a row of x (length D) per pair.
        double products = 3 * 2 * tokens * d * neurons, attention = 2 * pairs * (config.N + d);
        // Backward: each product's two gradients are two products of its size. The attention's: dS = dOut·xᵀ and dx = Sᵀ·dOut
        // per pair (D each), dQ = (dS + dSᵀ)·Q per pair both ways (2 × N).
        double productsBack = 2 * products, attentionBack = 2 * pairs * (2 * d + 2 * config.N);
        double head = 2 * tokens * d * config.VocabSize; // x·lm_head; its backward is two of it
        return (config.NLayer * (products + attention) + head, config.NLayer * (productsBack + attentionBack) + 2 * head);
    }

    public static void Run(double rate)
    {
        Console.WriteLine($"Flops of a training step, and the time they take at {rate:0.0} GFLOP/s");
        foreach (var (name, config, options) in new[] { ("cpu preset", BdhConfig.Cpu, TrainOptions.Cpu), ("paper config", BdhConfig.Paper, TrainOptions.Paper) })
        {
            int b = options.Batch / options.GradAccum, t = options.Block; // one micro-batch: the paper preset's step is 32 of them
            var (forward, backward) = Count(config, b, t);
            Console.WriteLine($"{$"{name}, {b} x {t} tokens",-30} forward {forward / 1e9,7:0.00} GFLOP, backward {backward / 1e9,7:0.00} GFLOP, " +
                $"step {(forward + backward) / 1e9,7:0.00} GFLOP: {(forward + backward) / rate / 1e6,8:0.0} ms");
        }
    }
}
