using System.Runtime.InteropServices;
using Bdh.Tensors.Kernels;

namespace Bdh.Model.Inference;

/// <summary>
/// The fast stepper: <see cref="PlainStepper{T}"/>'s equations laid out for speed, with attention answered by an
/// <see cref="IAttentionMemory{T}"/> (the synaptic state ρ, or a cache of past queries and inputs). Heads run on
/// the spinning thread team; the encoder product skips the neurons that cannot fire (float: an int8 screen),
/// encoder_v is read only where xs fires, ρ's writes are deferred (<see cref="SynapticState{T}"/>) and a prompt
/// is read by the parallel forward pass. Shapes: nh heads, N neurons per head, D = n_embd, V vocab.
/// It reads the encoders laid out for one token (<see cref="StepperLayouts{T}"/>), made from the model's
/// weights with the stepper or shared by the steppers of one model: train the model further and make new ones.
/// </summary>
public sealed class FastStepper<T> : IBdhStepper<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    private readonly BdhModel<T> _model;
    private readonly int _nh, _n, _d, _v;
    private readonly T _eps = T.CreateTruncating(1e-5);
    private readonly T[] _x, _xs, _q, _a, _ys, _y, _partial, _logits, _rstd;
    private readonly float[] _cos, _sin;
    /// <summary>The encoders' layouts, read-only: steppers of one model may share them.</summary>
    private readonly Task<StepperLayouts<T>> _layouts;

    public IAttentionMemory<T> Memory { get; }
    /// <summary>Position of the next token to be stepped (tokens seen so far).</summary>
    public int Position { get; private set; }
    /// <summary>Sees each layer of every token <see cref="Step"/> reads (not a parallel prefill's), as it leaves the layer.</summary>
    public LayerObserver<T>? Observer { get; set; }

    /// <param name="model">the weights, read only.</param>
    /// <param name="memory">the attention memory this stepper reads and writes (its own).</param>
    /// <param name="position">the position of the first token to step (the tokens <paramref name="memory"/> holds).</param>
    /// <param name="layouts">the model's <see cref="StepperLayouts{T}.Make"/>, shared with other steppers; made here when null.</param>
    public FastStepper(BdhModel<T> model, IAttentionMemory<T> memory, int position = 0, Task<StepperLayouts<T>>? layouts = null)
    {
        _model = model;
        Memory = memory;
        Position = position;
        var c = model.Config;
        (_nh, _n, _d, _v) = (c.NHead, c.N, c.NEmbd, c.VocabSize);
        _x = new T[_d]; _xs = new T[_nh * _n]; _q = new T[_nh * _n]; _a = new T[_nh * _d];
        _ys = new T[_nh * _n]; _y = new T[_d]; _partial = new T[_nh * _d]; _logits = new T[_v]; _rstd = new T[_nh];
        _cos = new float[_n]; _sin = new float[_n];
        _layouts = layouts ?? StepperLayouts<T>.Make(model);
    }

    /// <summary>A stepper at position 0 with an empty synaptic state: constant cost per token.</summary>
    public static FastStepper<T> Recurrent(BdhModel<T> model, Task<StepperLayouts<T>>? layouts = null)
    {
        var c = model.Config;
        return new FastStepper<T>(model, new SynapticState<T>(c.NLayer, c.NHead, c.N, c.NEmbd), layouts: layouts);
    }

    /// <summary>A stepper at position 0 with an empty cache of past queries and inputs: cost ∝ t per token.</summary>
    public static FastStepper<T> Cached(BdhModel<T> model, Task<StepperLayouts<T>>? layouts = null)
    {
        var c = model.Config;
        return new FastStepper<T>(model, new AttentionCache<T>(c.NLayer, c.NHead, c.N, c.NEmbd), layouts: layouts);
    }

    /// <summary>
    /// Logits [V] for <paramref name="token"/> at <see cref="Position"/>; the memory then holds it too.
    /// Heads are independent until the decoder, so they are shared out over the threads (one token
    /// streams all the shared weights: spreading heads over cores uses more memory bandwidth), in equal
    /// runs fixed in advance on the spinning team: a token's work is a few milliseconds, too short for a
    /// thread that sleeps between layers to be woken in time. The decoder sums the heads' partial products
    /// in head order, so results do not depend on threads.
    /// </summary>
    public ReadOnlySpan<T> Step(int token)
    {
        if ((uint)token >= (uint)_v) throw new ArgumentOutOfRangeException(nameof(token), $"token {token} outside vocabulary of {_v}");
        var rope = RopeAt(Position);
        var layouts = _layouts.Result;

        _model.Embed.Value.Span.Slice(token * _d, _d).CopyTo(_x);
        LayerNorm(_x);                                                     // x = ln(embed[token])   [D]
        for (int layer = 0; layer < _model.Config.NLayer; layer++)
        {
            int l = layer, runs = Math.Min(_nh, Parallelism.Threads);
            Parallelism.For(runs, run =>
            {
                for (int h = run * _nh / runs; h < (run + 1) * _nh / runs; h++) StepHead(l, h, rope, layouts);
            });
            Observer?.Invoke(layer, _xs, _ys, Memory);
            _y.AsSpan().Clear();
            for (int h = 0; h < _nh; h++) TP.Add<T>(_y, _partial.AsSpan(h * _d, _d), _y); // y = ln(xy·decoder)  [D]
            LayerNorm(_y);
            TP.Add<T>(_x, _y, _x);                                            // x = ln(x + y)
            LayerNorm(_x);
        }
        Gemv.RowTimesMatrix<T>(_x, _model.LmHead.Value.Span, _logits);      // logits = x·lm_head     [V]
        Position++;
        return _logits;
    }

    /// <summary>Head h of one layer, from the layer input x to its share of xy·decoder.</summary>
    private void StepHead(int layer, int h, RopeTable rope, StepperLayouts<T> layouts)
    {
        Span<T> encoder = _model.Encoder.Value.Span, decoder = _model.Decoder.Value.Span;
        Span<T> xs = _xs.AsSpan(h * _n, _n), q = _q.AsSpan(h * _n, _n), ys = _ys.AsSpan(h * _n, _n), a = _a.AsSpan(h * _d, _d);
        if (layouts.Encoder is null)
        {
            Gemv.RowTimesMatrix<T>(_x, encoder.Slice(h * _d * _n, _d * _n), xs); // xs = relu(x·encoder[h])  [N]
            Elementwise.Relu<T>(xs, xs);
        }
        else layouts.Encoder.Apply(h, MemoryMarshal.Cast<T, float>(_x.AsSpan()), MemoryMarshal.Cast<T, float>(xs)); // the same, reading only the columns of neurons that can fire
        Rope.Forward<T>(xs, q, rope);                                       // q = rope(xs)             [N]
        Memory.ReadThenWrite(layer, h, q, _x, a);                           // a = Σ_{s<t} (q·q_s) x_s   [D]
        Tensors.Kernels.LayerNorm.Forward<T>(a, a, _rstd.AsSpan(h, 1), _d, _eps);
        // ys only where xs fires: ys is used only in xs ⊙ ys, so the other neurons' rows of the by-neuron
        // encoder_v (most of them once trained) are never read.
        Gemv.MatrixTimesVector<T>(layouts.EncoderVByNeuron.AsSpan(h * _n * _d, _n * _d), a, ys, where: xs);
        Elementwise.Relu<T>(ys, ys);                                        // ys = relu(ln(a)·encoder_v[h]) [N]
        TP.Multiply<T>(xs, ys, ys);                                         // xy = xs ⊙ ys              [N]
        Gemv.RowTimesMatrix<T>(ys, decoder.Slice(h * _n * _d, _n * _d), _partial.AsSpan(h * _d, _d)); // head h's rows of xy·decoder
    }

    /// <summary>
    /// The most prompt tokens read in one parallel pass when nothing observes it: its attention scores take
    /// [nh, T, T] per layer, O(T²) memory (4 MB per layer at 512 tokens on the <c>cpu</c> preset, 1 GB at 8192), so a
    /// longer prompt is read in parallel up to here and stepped after, in constant memory.
    /// </summary>
    public const int ParallelPrefillTokens = 512;

    /// <inheritdoc/>
    public ReadOnlySpan<T> Prefill(int[] prompt) => Prefill(prompt, observer: null);

    /// <summary>
    /// Takes in a prompt with the parallel forward pass (at position 0; beyond <see cref="ParallelPrefillTokens"/>,
    /// unless observed, the rest is stepped), the memory absorbing each layer's queries rope(xs) and inputs x as the
    /// pass hands them out, and returns the last token's logits. <paramref name="observer"/> sees that pass, the whole
    /// prompt, as <see cref="BdhModel{T}.Forward"/> hands it out (nothing when stepping from a later position).
    /// </summary>
    public ReadOnlySpan<T> Prefill(int[] prompt, ForwardObserver<T>? observer)
    {
        if (Position == 0 && observer is null && prompt.Length > ParallelPrefillTokens)
        {
            Prefill(prompt[..ParallelPrefillTokens]);
            return Prefill(prompt[ParallelPrefillTokens..]);
        }
        if (Position != 0)
        {
            foreach (int token in prompt[..^1]) Step(token);
            return Step(prompt[^1]);
        }
        int t = prompt.Length;
        var absorb = new ForwardObserver<T>
        {
            Embedded = observer?.Embedded,
            Layer = layer =>
            {
                observer?.Layer?.Invoke(layer);
                Memory.Absorb(layer.Layer, layer.Q, layer.X); // q [nh, 1, T, N], x [1, 1, T, D]
            },
        };
        using (NoGrad.Scope())
        {
            var (logits, _) = _model.Forward(prompt, 1, t, observer: absorb);
            logits.Value.Span.Slice((t - 1) * _v, _v).CopyTo(_logits);
            logits.ReleaseGraph();
        }
        Position = t;
        return _logits;
    }

    /// <summary>The rope table of one position, float32 phases as the reference.</summary>
    private RopeTable RopeAt(int t)
    {
        Rope.Row(_model.Freqs, t, _cos, _sin, _model.RopeSinCos);
        return new RopeTable(_cos, _sin, 1, _n);
    }

    /// <summary>LayerNorm of one row in place.</summary>
    private void LayerNorm(Span<T> row) => Tensors.Kernels.LayerNorm.Forward<T>(row, row, _rstd.AsSpan(0, 1), row.Length, _eps);
}
