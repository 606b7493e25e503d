using System.Runtime.InteropServices;
using Bdh.Tensors.Kernels;

namespace Bdh.Model.Inference;

/// <summary>
/// BDH one token at a time: the same equations as <see cref="BdhModel{T}.Forward"/> for a single
/// position, with attention answered by an <see cref="IAttentionMemory{T}"/> (the synaptic state ρ, or
/// a cache of past queries and inputs). Shapes: nh heads, N neurons per head, D = n_embd, V vocab.
/// A stepper reads the encoders laid out for one token (<see cref="StepperLayouts{T}"/>), made from the model's
/// weights with the stepper or shared by the steppers of one model: train the model further and make new ones.
/// </summary>
public sealed class IncrementalBdh<T> where T : unmanaged, IFloatingPointIeee754<T>
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
    public IncrementalBdh(BdhModel<T> model, IAttentionMemory<T> memory, int position = 0, Task<StepperLayouts<T>>? layouts = null)
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

    /// <summary>A stepper at position 0 with an empty memory of the mode's kind (the full mode has none: it re-runs the model).</summary>
    public static IncrementalBdh<T> Start(BdhModel<T> model, GenerationMode mode, Task<StepperLayouts<T>>? layouts = null)
    {
        var c = model.Config;
        IAttentionMemory<T> memory = mode switch
        {
            GenerationMode.Recurrent => new SynapticState<T>(c.NLayer, c.NHead, c.N, c.NEmbd),
            GenerationMode.Cached => new AttentionCache<T>(c.NLayer, c.NHead, c.N, c.NEmbd),
            _ => throw new ArgumentException($"{mode} generation keeps no memory between tokens", nameof(mode)),
        };
        return new IncrementalBdh<T>(model, memory, layouts: layouts);
    }

    /// <summary>
    /// Logits [V] for <paramref name="token"/> at <see cref="Position"/>; the memory then holds it too.
    /// Heads are independent until the decoder, so they are shared out over the threads (one token
    /// streams all the shared weights: spreading heads over cores uses more memory bandwidth), in equal
    /// runs fixed in advance: with a task per head, a thread that drew fewer heads idled, and the pool put
    /// it to sleep, to be woken late for the next layer (paper config: 24.8 → 21.0 ms per token). The
    /// decoder sums the heads' partial products in head order, so results do not depend on threads.
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
            Parallelism.ForLowLatency(runs, run =>
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
        T[] encoder = _model.Encoder.Value.Array, decoder = _model.Decoder.Value.Array;
        Span<T> xs = _xs.AsSpan(h * _n, _n), q = _q.AsSpan(h * _n, _n), ys = _ys.AsSpan(h * _n, _n), a = _a.AsSpan(h * _d, _d);
        if (layouts.Encoder is null)
        {
            Gemv.RowTimesMatrix<T>(_x, encoder.AsSpan(h * _d * _n, _d * _n), xs); // xs = relu(x·encoder[h])  [N]
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
        Gemv.RowTimesMatrix<T>(ys, decoder.AsSpan(h * _n * _d, _n * _d), _partial.AsSpan(h * _d, _d)); // head h's rows of xy·decoder
    }

    /// <summary>
    /// The most prompt tokens read in one parallel pass when nothing traces it: its attention scores take
    /// [nh, T, T] per layer, O(T²) memory (4 MB per layer at 512 tokens on the <c>cpu</c> preset, 1 GB at 8192), so a
    /// longer prompt is read in parallel up to here and stepped after, in constant memory.
    /// </summary>
    public const int ParallelPrefillTokens = 512;

    /// <summary>
    /// Takes in a prompt with the parallel forward pass (at position 0; beyond <see cref="ParallelPrefillTokens"/>,
    /// unless traced, the rest is stepped), fills the memory from its per-layer queries and inputs, and returns the last
    /// token's logits. <paramref name="trace"/> sees that pass, the whole prompt, as <see cref="BdhModel{T}.Forward"/>'s
    /// trace (nothing when stepping from a later position).
    /// </summary>
    public ReadOnlySpan<T> Prefill(int[] prompt, Action<string, Tensor<T>>? trace = null)
    {
        if (Position == 0 && trace is null && prompt.Length > ParallelPrefillTokens)
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
        var queries = new Tensor<T>[_model.Config.NLayer];
        var inputs = new Tensor<T>[_model.Config.NLayer];
        using (NoGrad.Scope())
        {
            var (logits, _) = _model.Forward(prompt, 1, t, trace: (name, value) =>
            {
                trace?.Invoke(name, value);
                if (!name.StartsWith("attn", StringComparison.Ordinal)) return;
                int layer = BdhModel<T>.TraceLayer(name);
                if (name.EndsWith(".q", StringComparison.Ordinal))
                {
                    queries[layer] = Tensor<T>.Empty(_nh, t, _n);
                    Rope.Forward<T>(value.Span, queries[layer].Span, _model.RopeTableFor(t));
                }
                else if (name.EndsWith(".v", StringComparison.Ordinal))
                    inputs[layer] = value.Clone();
            });
            logits.Value.Span.Slice((t - 1) * _v, _v).CopyTo(_logits);
            logits.ReleaseGraph();
        }
        for (int layer = 0; layer < queries.Length; layer++)
        {
            Memory.Absorb(layer, queries[layer], inputs[layer]);
            queries[layer].Dispose();
            inputs[layer].Dispose();
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

/// <summary>
/// What one layer did with a stepped token: <paramref name="xs"/> [nh·N], the neurons it fired, and <paramref name="xy"/>
/// = xs ⊙ ys [nh·N], the neurons its attention read also fired (ys is computed only where xs fires, as only xs ⊙ ys is
/// used), with <paramref name="memory"/> after the layer took the token. The spans are the stepper's own: read them now.
/// </summary>
public delegate void LayerObserver<T>(int layer, ReadOnlySpan<T> xs, ReadOnlySpan<T> xy, IAttentionMemory<T> memory)
    where T : unmanaged, IFloatingPointIeee754<T>;

/// <summary>
/// The encoders laid out for one token at a time, 72 MB on the paper config: made once per model, read by every
/// stepper of it (they never write it).
/// </summary>
public sealed class StepperLayouts<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    /// <summary>encoder_v by neuron, [nh, N, D]: column n of head h's [D, N] block as a contiguous row, so a token reads only the columns it needs.</summary>
    internal T[] EncoderVByNeuron { get; }
    /// <summary>float only: xs = relu(x·encoder[h]) computing only the neurons that can fire.</summary>
    internal ScreenedReluProduct? Encoder { get; }

    private StepperLayouts(BdhModel<T> model)
    {
        var c = model.Config;
        EncoderVByNeuron = new T[c.NHead * c.N * c.NEmbd];
        Layout.SwapAxes(model.EncoderV.Value, 1, 2, Tensor<T>.From(EncoderVByNeuron, c.NHead, c.N, c.NEmbd), accumulate: false); // [nh, D, N] → [nh, N, D]
        Encoder = model.Encoder.Value is Tensor<float> encoder ? new ScreenedReluProduct(encoder) : null;
    }

    /// <summary>
    /// Made on a pool thread, as ~0.3 s of it (paper config) is first touches of new pages: it overlaps with a
    /// prompt's prefill, and the first step waits.
    /// </summary>
    public static Task<StepperLayouts<T>> Make(BdhModel<T> model) => Task.Run(() => new StepperLayouts<T>(model));
}
