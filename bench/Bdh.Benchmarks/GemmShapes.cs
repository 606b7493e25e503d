using Bdh.Tensors;

namespace Bdh.Benchmarks;

/// <summary>
/// The products of one BDH layer at the `cpu` preset's batch (B·T = 1024 tokens, D = 128, N = 512 a head, nh·N = 2048),
/// forward and backward: first as the equations write them, every head at once, then as a step runs them, one head at
/// a time (the "_h" rows; four of each a layer: BdhModel multiplies per head and sums the decoder's outputs).
/// ᵀ marks an operand read transposed.
/// </summary>
public sealed record GemmShape(string Name, int M, int N, int K, bool TransA, bool TransB)
{
    public static readonly GemmShape[] Bdh =
    [
        new("x·encoder        [1024x128]·[128x2048]", 1024, 2048, 128, false, false),
        new("xy·decoder       [1024x2048]·[2048x128]", 1024, 128, 2048, false, false),
        new("dW = xᵀ·dY        [128x1024]ᵀ·[1024x2048]", 128, 2048, 1024, true, false),
        new("dX = dY·Wᵀ        [1024x2048]·[128x2048]ᵀ", 1024, 128, 2048, false, true),
        new("x·encoder_h      [1024x128]·[128x512]", 1024, 512, 128, false, false),
        new("xy_h·decoder_h   [1024x512]·[512x128]", 1024, 128, 512, false, false),
        new("dW_h = xᵀ·dY_h    [128x1024]ᵀ·[1024x512]", 128, 512, 1024, true, false),
        new("dX_h = dY_h·W_hᵀ  [1024x512]·[128x512]ᵀ", 1024, 128, 512, false, true),
        new("square           [1024x1024]·[1024x1024]", 1024, 1024, 1024, false, false),
    ];

    public double Flops => 2.0 * M * N * K;

    /// <summary>Operands filled with uniform values; the output buffer for C. Tensors, as a step's are (on a cache line).</summary>
    internal (MatrixRef<float> A, MatrixRef<float> B, MatrixRef<float> C) Operands()
    {
        var rng = new Rng(1);
        var (a, b) = (Tensor<float>.Uniform(rng, -1, 1, M * K), Tensor<float>.Uniform(rng, -1, 1, K * N));
        return (a.Matrix(0, TransA ? M : K, TransA), b.Matrix(0, TransB ? K : N, TransB), Tensor<float>.Empty(M * N).Matrix(0, N));
    }

    public override string ToString() => Name;
}
