using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

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

    /// <summary>
    /// One step: a single pass over each parameter's value, gradient and moments, a vector at a time (element by element
    /// the square root and two divisions kept the scalar loop well below memory speed: 82 ms of the paper config's step,
    /// 18 ms vectorized).
    /// </summary>
    public void Update()
    {
        Step++;
        var step = new StepConstants(this);
        foreach (var (param, grad, m, v) in _state)
            Parallelism.ForSlices(param.Length, 1, (start, length) =>
            {
                Span<float> ps = param.Span.Slice(start, length), gs = grad.Span.Slice(start, length), ms = m.AsSpan(start, length), vs = v.AsSpan(start, length);
                int whole = length / Vector<float>.Count;
                Span<Vector<float>> pv = MemoryMarshal.Cast<float, Vector<float>>(ps), mv = MemoryMarshal.Cast<float, Vector<float>>(ms),
                    vv = MemoryMarshal.Cast<float, Vector<float>>(vs);
                ReadOnlySpan<Vector<float>> gv = MemoryMarshal.Cast<float, Vector<float>>(gs);
                for (int j = 0; j < whole; j++) step.Apply(ref pv[j], ref mv[j], ref vv[j], gv[j]);
                // The last few elements go through the same arithmetic in one vector padded with zeros.
                int done = whole * Vector<float>.Count, rest = length - done;
                if (rest == 0) return;
                Span<float> tail = stackalloc float[4 * Vector<float>.Count];
                Span<float> tp = tail[..rest], tm = tail.Slice(Vector<float>.Count, rest), tv = tail.Slice(2 * Vector<float>.Count, rest);
                ps[done..].CopyTo(tp); ms[done..].CopyTo(tm); vs[done..].CopyTo(tv); gs[done..].CopyTo(tail.Slice(3 * Vector<float>.Count, rest));
                Span<Vector<float>> t = MemoryMarshal.Cast<float, Vector<float>>(tail);
                step.Apply(ref t[0], ref t[1], ref t[2], t[3]);
                tp.CopyTo(ps[done..]); tm.CopyTo(ms[done..]); tv.CopyTo(vs[done..]);
            });
    }

    /// <summary>One step's constants, and its arithmetic on a vector of elements.</summary>
    private readonly struct StepConstants(AdamW adam)
    {
        private readonly float _decay = (float)(1 - adam.LearningRate * adam.WeightDecay), _w = (float)(1 - adam.Beta1),
            _b2 = (float)adam.Beta2, _oneMinusB2 = (float)(1 - adam.Beta2), _eps = (float)adam.Eps,
            _stepSize = (float)(adam.LearningRate / (1 - Math.Pow(adam.Beta1, adam.Step))),
            _bc2 = (float)Math.Sqrt(1 - Math.Pow(adam.Beta2, adam.Step));

        /// <summary>
        /// Element by element, each operation rounded on its own in PyTorch's order (no fused multiply-adds): any split
        /// of the elements, and any vector width, gives the same bits.
        /// </summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public void Apply(ref Vector<float> p, ref Vector<float> m, ref Vector<float> v, Vector<float> g)
        {
            p *= _decay;
            m = _w < 0.5f ? m + _w * (g - m) : g - (g - m) * (1 - _w);   // torch.lerp
            v = v * _b2 + _oneMinusB2 * g * g;                          // addcmul
            var denom = Vector.SquareRoot(v) / _bc2 + new Vector<float>(_eps);
            p += -_stepSize * (m / denom);
        }
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
