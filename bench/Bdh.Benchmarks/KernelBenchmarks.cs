using BenchmarkDotNet.Attributes;
using Bdh.Tensors;
using Bdh.Tensors.Kernels;

namespace Bdh.Benchmarks;

/// <summary>
/// Each non-GEMM kernel on the `cpu` preset's shapes, one call on one thread (the trainer splits the
/// element-wise ones over the cores): activations [nh 4, B 16, T 64, N 512] = 2M floats, x [B·T 1024, D 128],
/// logits [1024, 256]; and one position's rope row at the paper config's N (each generated token computes one).
/// </summary>
[SimpleJob(launchCount: 1, warmupCount: 3, iterationCount: 10)]
public class KernelBenchmarks
{
    private const int Heads = 4, Batch = 16, T = 64, N = 512, D = 128, Vocab = 256;
    private Tensor<float> _xs = null!, _ys = null!, _dys = null!, _x = null!, _xNorm = null!, _dx = null!, _rstd = null!, _a = null!, _scores = null!, _logits = null!, _dq = null!, _dv = null!;
    private RopeTable _rope = null!;
    private int[] _targets = null!;
    private readonly float[] _paperFreqs = Rope.Frequencies(8192), _cos = new float[8192], _sin = new float[8192];

    [GlobalSetup]
    public void Setup()
    {
        Parallelism.Threads = 1;
        var rng = new Rng(1);
        _xs = Tensor<float>.Uniform(rng, -1, 1, Heads, Batch, T, N);
        _ys = Tensor<float>.Empty(Heads, Batch, T, N);
        _dys = Tensor<float>.Uniform(rng, -1, 1, Heads, Batch, T, N);
        _x = Tensor<float>.Uniform(rng, -1, 1, 1, Batch, T, D);
        _xNorm = Tensor<float>.Empty(1, Batch, T, D);
        _dx = Tensor<float>.Zeros(1, Batch, T, D);
        _rstd = Tensor<float>.Empty(Batch * T);
        _a = Tensor<float>.Empty(Heads, Batch, T, D);
        _scores = Tensor<float>.Empty(Heads, Batch, T, T);
        _dq = Tensor<float>.Empty(Heads, Batch, T, N);
        _dv = Tensor<float>.Empty(1, Batch, T, D);
        _logits = Tensor<float>.Uniform(rng, -3, 3, Batch * T, Vocab);
        _targets = Enumerable.Range(0, Batch * T).Select(i => i * 7 % Vocab).ToArray();
        _rope = Rope.Table(Rope.Frequencies(N), T);
        CausalLinearAttention.Forward(_xs, _x, _scores, _a); // the scores and output the backward reads
    }

    [Benchmark] public void Relu() => Elementwise.Relu<float>(_xs.Span, _ys.Span);

    [Benchmark] public void ReluBackward() => Elementwise.ReluBackward(_xs, _dys, new GradSlot<float>(_ys, Accumulate: true));

    /// <summary>BDH's xy = dropout(xs ⊙ ys), one pass.</summary>
    [Benchmark] public void DropoutOfProduct() => Elementwise.Dropout(42, 0.1, _xs, _dys, _ys);

    [Benchmark] public void RopeForward() => Rope.Forward<float>(_xs.Span, _ys.Span, _rope);

    [Benchmark] public void RopeRowPaper() => Rope.Row(_paperFreqs, 1000, _cos, _sin);

    [Benchmark] public void LayerNormForward() => LayerNorm.Forward<float>(_x.Span, _xNorm.Span, _rstd.Span, D, 1e-5f);

    [Benchmark] public void LayerNormBackward() => LayerNorm.Backward(_x, _xNorm, _rstd, new GradSlot<float>(_dx, Accumulate: true));

    [Benchmark] public void AttentionForward() => CausalLinearAttention.Forward(_xs, _x, _scores, _a);

    /// <summary>From the forward's scores (as the trainer has them), dOut = _a: dQ and dV written fresh.</summary>
    [Benchmark] public void AttentionBackward() =>
        CausalLinearAttention.Backward(_xs, _x, _scores, _a, new GradSlot<float>(_dq, Accumulate: false), new GradSlot<float>(_dv, Accumulate: false));

    [Benchmark] public float CrossEntropyForward() => CrossEntropy.Forward(_logits, _targets);
}
