namespace Bdh.Model;

/// <summary>
/// AdamW with PyTorch's semantics (torch.optim.AdamW, single-tensor path): decoupled weight decay on
/// every parameter, bias-corrected moments, <c>p −= lr/bc1 · m / (√v/√bc2 + eps)</c>.
/// </summary>
public sealed class AdamW
{
    private readonly (Tensor<float> Param, Tensor<float> Grad, float[] M, float[] V)[] _state;

    public double LearningRate { get; set; }
    public double WeightDecay { get; }
    public double Beta1 { get; }
    public double Beta2 { get; }
    public double Eps { get; }
    /// <summary>Steps taken so far (PyTorch's state['step']).</summary>
    public int Step { get; private set; }

    public AdamW(IEnumerable<Var<float>> parameters, double lr = 1e-3, double weightDecay = 0.1,
        double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-8)
    {
        _state = parameters.Select(p => (p.Value, p.ZeroedGrad(), new float[p.Value.Length], new float[p.Value.Length])).ToArray();
        (LearningRate, WeightDecay, Beta1, Beta2, Eps) = (lr, weightDecay, beta1, beta2, eps);
    }

    /// <summary>First and second moments of each parameter, in the order given, for checkpoints.</summary>
    internal IReadOnlyList<(float[] M, float[] V)> Moments => _state.Select(s => (s.M, s.V)).ToArray();

    internal void Restore(int step, IReadOnlyList<(float[] M, float[] V)> moments)
    {
        if (moments.Count != _state.Length) throw new ArgumentException("moment count differs from parameter count");
        for (int i = 0; i < _state.Length; i++)
            if (moments[i].M.Length != _state[i].M.Length || moments[i].V.Length != _state[i].V.Length)
                throw new ArgumentException($"moments of parameter {i} have {moments[i].M.Length} and {moments[i].V.Length} values, it has {_state[i].M.Length}");
        for (int i = 0; i < _state.Length; i++)
        {
            moments[i].M.CopyTo(_state[i].M.AsSpan());
            moments[i].V.CopyTo(_state[i].V.AsSpan());
        }
        Step = step;
    }

    public void Update()
    {
        Step++;
        float decay = (float)(1 - LearningRate * WeightDecay);
        float b2 = (float)Beta2, oneMinusB2 = (float)(1 - Beta2), w = (float)(1 - Beta1);
        double bc1 = 1 - Math.Pow(Beta1, Step), bc2Sqrt = Math.Sqrt(1 - Math.Pow(Beta2, Step));
        float stepSize = (float)(LearningRate / bc1), bc2 = (float)bc2Sqrt, eps = (float)Eps;
        foreach (var (param, grad, m, v) in _state)
            Parallelism.ForSlices(param.Length, 1, (start, length) =>
            {
                Span<float> p = param.Span, g = grad.Span;
                for (int j = start; j < start + length; j++) // element by element: any split gives the same bits
                {
                    p[j] *= decay;
                    m[j] = w < 0.5f ? m[j] + w * (g[j] - m[j]) : g[j] - (g[j] - m[j]) * (1 - w);   // torch.lerp
                    v[j] = v[j] * b2 + oneMinusB2 * g[j] * g[j];                                       // addcmul
                    float denom = MathF.Sqrt(v[j]) / bc2 + eps;
                    p[j] += -stepSize * (m[j] / denom);
                }
            });
    }

    /// <summary>Scales all gradients so their global L2 norm is at most <paramref name="maxNorm"/>; returns the norm before.</summary>
    public double ClipGradNorm(double maxNorm)
    {
        double sq = 0;
        foreach (var s in _state) sq += TP.SumOfSquares<float>(s.Grad.Span);
        double norm = Math.Sqrt(sq);
        if (norm > maxNorm)
            foreach (var s in _state) TP.Multiply(s.Grad.Span, (float)(maxNorm / (norm + 1e-6)), s.Grad.Span);
        return norm;
    }

    public void ZeroGrad()
    {
        foreach (var s in _state) Parallelism.ForSlices(s.Grad.Length, 1, (start, length) => s.Grad.Span.Slice(start, length).Clear());
    }
}
